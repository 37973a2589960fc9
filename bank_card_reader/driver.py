"""Bank card reader over PC/SC: directory (PSE/PPSE) or AID list, GPO with a filled PDOL, READ RECORD over the AFL."""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import TYPE_CHECKING, Final, Protocol

from bank_card_reader.errors import (
    CardDataError,
    CardRemovedError,
    CardUnreadableError,
    NoCardPresentError,
    NoSupportedApplicationError,
    ReaderUnavailableError,
)
from bank_card_reader.protocol import (
    KNOWN_AIDS,
    PPSE,
    PSE,
    Tag,
    Tlv,
    build_dol_data,
    card_data_from_records,
    decode_tlv,
    find_tag,
    gpo_apdu,
    parse_directory,
    parse_dol,
    parse_gpo_response,
    read_record_apdu,
    select_apdu,
    terminal_values,
)
from pcsc.session import CancellableContext, pcsc_errors_as

if TYPE_CHECKING:
    from collections.abc import Callable

    from bank_card_reader.models import BankCardData, CardSource
    from pcsc.client import ResponseApdu

log = logging.getLogger("bank_card_reader")

SW_OK: Final = 0x9000
SW_FILE_NOT_FOUND: Final = 0x6A82
SW_RECORD_NOT_FOUND: Final = 0x6A83
SW_NO_DIAGNOSIS: Final = 0x6F00
#: PSE directory records we read at most (EMV allows a handful; a card that never says 6A83 is broken).
MAX_DIRECTORY_RECORDS: Final = 16


class ApduChannel(Protocol):
    """Anything that exchanges APDUs with T=0 handling: a PC/SC CardChannel, or a test fake."""

    def exchange(self, apdu: bytes) -> ResponseApdu:
        """Send one command, return the complete answer."""
        ...


def is_contactless_atr(atr: bytes) -> bool:
    """True for the ATR a PC/SC reader synthesises for a contactless card (3B 8n 80 01 ...)."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


class EmvSession:
    """One card read: which applications the card has, and reading the chosen one's records."""

    def __init__(self, channel: ApduChannel, *, today: dt.date, unpredictable: bytes) -> None:
        self.channel = channel
        self.terminal = terminal_values(today, unpredictable)
        self.answered = False  # the card gave at least one meaningful answer (not 6F00)

    def _send(self, apdu: bytes) -> ResponseApdu:
        response = self.channel.exchange(apdu)
        log.debug("APDU %s -> SW %04X, %d byte(s)", apdu[:4].hex(" ").upper(), response.sw, len(response.data))
        if response.sw != SW_NO_DIAGNOSIS:
            self.answered = True
        return response

    def _directory(self, name: bytes) -> list[bytes]:
        response = self._send(select_apdu(name))
        if not response.ok:
            return []
        fci = decode_tlv(response.data)
        if name == PPSE:
            return [entry.aid for entry in parse_directory(fci)]
        sfi_raw = find_tag(fci, Tag.SFI)
        sfi = sfi_raw[0] if sfi_raw else 1
        records: list[Tlv] = []
        for number in range(1, MAX_DIRECTORY_RECORDS + 1):
            record = self._send(read_record_apdu(sfi, number))
            if not record.ok:
                break
            records += decode_tlv(record.data)
        return [entry.aid for entry in parse_directory(records)]

    def candidates(self, *, contactless: bool) -> list[bytes]:
        """AIDs to try: from the card's directory (PPSE first when tapped), else our known list."""
        order = (PPSE, PSE) if contactless else (PSE, PPSE)
        for name in order:
            aids = self._directory(name)
            if aids:
                return aids
        # No directory: the terminal tries every AID it supports (EMV Book 1, 12.3.3).
        return [bytes.fromhex(aid) for aid in KNOWN_AIDS]

    def read_application(self, aid: bytes, *, source: CardSource) -> BankCardData | None:
        """Select one application and read its card data; None if the card does not have it."""
        selected = self._send(select_apdu(aid))
        if not selected.ok:
            return None
        fci = decode_tlv(selected.data)
        real_aid = find_tag(fci, Tag.DF_NAME) or aid
        pdol = find_tag(fci, Tag.PDOL) or b""
        gpo = self._send(gpo_apdu(build_dol_data(parse_dol(pdol), self.terminal)))
        if not gpo.ok:
            log.info("application %s refused GET PROCESSING OPTIONS (SW %04X)", real_aid.hex().upper(), gpo.sw)
            return None
        _aip, afl, items = parse_gpo_response(gpo.data)
        collected = list(items)
        for entry in afl:
            for number in entry.records():
                record = self._send(read_record_apdu(entry.sfi, number))
                if not record.ok:
                    raise CardDataError(
                        f"the card lists record {number} of file {entry.sfi} but answers SW {record.sw:04X}"
                    )
                collected += decode_tlv(record.data)
        return card_data_from_records(collected, source=source, aid=real_aid.hex().upper())


def read_emv_card(
    channel: ApduChannel, *, atr: bytes, today: dt.date, unpredictable: bytes | None = None
) -> BankCardData:
    """Read the card number from a connected EMV/PBOC card (PSE/PPSE → AID → GPO → records)."""
    contactless = is_contactless_atr(atr)
    source: CardSource = "contactless" if contactless else "chip"
    session = EmvSession(channel, today=today, unpredictable=unpredictable or os.urandom(4))
    for aid in session.candidates(contactless=contactless):
        data = session.read_application(aid, source=source)
        if data is not None:
            return data
    if not session.answered:
        raise CardUnreadableError("银行卡芯片无应答 / the card's chip answers nothing useful (6F00 to every command)")
    raise NoSupportedApplicationError(
        "未找到支持的银行卡应用 / the card has no UnionPay or international payment application we accept"
    )


class BankCardReader:
    """Reads a bank card inserted or tapped on a PC/SC reader; read_card() is the kiosk's call."""

    def __init__(
        self,
        reader: str | None = None,
        *,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.reader = reader
        self._today = today
        self._session = CancellableContext()

    def cancel(self) -> None:
        """Abort a read_card() waiting in another thread (it raises NoCardPresentError)."""
        self._session.cancel()

    def read_card(self, timeout: float) -> BankCardData:
        """Wait up to `timeout` s for a card, then read its number (Luhn-checked)."""
        with (
            pcsc_errors_as(
                no_card=lambda _err: NoCardPresentError(f"未检测到银行卡 / no bank card within {timeout:.1f} s"),
                unavailable=lambda err: ReaderUnavailableError(f"银行卡读卡器不可用 / card reader unavailable: {err}"),
                removed=lambda _err: CardRemovedError("银行卡在读取过程中被取出 / the card was removed while reading"),
                failed=lambda err: CardUnreadableError(f"无法读取银行卡 / the card could not be read: {err}"),
            ),
            self._session.open() as context,
        ):
            reader, atr = context.wait_for_card(self.reader, timeout)
            with context.connect(reader) as channel:
                data = read_emv_card(channel, atr=atr, today=self._today())
        log.info("read bank card %s (%s, AID %s)", data.masked, data.source, data.aid)
        return data
