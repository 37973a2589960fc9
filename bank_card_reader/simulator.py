"""Virtual bank cards that speak EMV/PBOC from the card's side, for the real pcscd through vpcd.

Each card answers SELECT (PSE, PPSE, AID), GET PROCESSING OPTIONS and READ RECORD like a real
card of its kind, checks the command bytes it is sent (wrong PDOL length → 6700, unknown SFI →
6A83), and is plugged into a slot with pcsc.VirtualCardSlot.insert(card).

- UnionPayDebitCard: PSE (contact) or PPSE (contactless), PDOL, GPO format 2, PAN in 5A and 57.
- OtherLayoutCard: no directory at all (the reader must try the AID list), no PDOL, GPO format 1,
  records over two files with long (81) lengths, PAN only in track 2 equivalent data (57), no name.
- ChainingCard: a T=0 card that answers with 61xx (GET RESPONSE in small pieces) and 6Cxx.
- DeadCard: answers reset, then 6F00 to everything.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from bank_card_reader.protocol import (
    PPSE,
    PSE,
    Tag,
    encode_tlv,
    parse_dol,
)


def _atr(historical: bytes, *, contactless: bool) -> bytes:
    """An ATR: T=0 for a contact card; the PC/SC part 3 form (T=1 over 14443-4) for contactless."""
    if contactless:
        body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
        tck = 0
        for b in body:
            tck ^= b
        return b"\x3b" + body + bytes([tck])
    return bytes([0x3B, 0x60 | len(historical), 0x00, 0x00]) + historical


SW_OK: Final = b"\x90\x00"
SW_FILE_NOT_FOUND: Final = b"\x6a\x82"
SW_RECORD_NOT_FOUND: Final = b"\x6a\x83"
SW_WRONG_LENGTH: Final = b"\x67\x00"
SW_CONDITIONS: Final = b"\x69\x85"
SW_INS_NOT_SUPPORTED: Final = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED: Final = b"\x6e\x00"
SW_NO_DIAGNOSIS: Final = b"\x6f\x00"


def _bcd_pan(pan: str) -> bytes:
    digits = pan + ("F" if len(pan) % 2 else "")
    return bytes.fromhex(digits)


def _track2(pan: str, yymm: str, service_code: str = "220") -> bytes:
    text = f"{pan}D{yymm}{service_code}0000000000"
    return bytes.fromhex(text + ("F" if len(text) % 2 else ""))


class EmvVirtualCard:
    """Shared EMV card behaviour: a file system of directory records, FCIs and application records."""

    def __init__(
        self,
        *,
        aid: bytes,
        label: str,
        atr: bytes,
        pdol: bytes,
        records: dict[tuple[int, int], bytes],
        afl: bytes,
        gpo_format: int,
        supports_pse: bool,
        supports_ppse: bool,
    ) -> None:
        self.aid = aid
        self.label = label
        self._atr = atr
        self.pdol = pdol
        self.records = records
        self.afl = afl
        self.gpo_format = gpo_format
        self.supports_pse = supports_pse
        self.supports_ppse = supports_ppse
        self.selected: bytes | None = None
        #: Every command header received (CLA INS P1 P2), for tests that check the reader's sequence.
        self.log: list[bytes] = []

    @property
    def atr(self) -> bytes:
        """The answer to reset."""
        return self._atr

    def reset(self) -> None:
        """Power-up: nothing selected."""
        self.selected = None

    # --- the card's answers ---------------------------------------------------------------------

    def _directory_entry(self) -> bytes:
        return encode_tlv(
            Tag.APPLICATION_TEMPLATE,
            encode_tlv(Tag.AID, self.aid)
            + encode_tlv(Tag.LABEL, self.label.encode())
            + encode_tlv(Tag.PRIORITY, b"\x01"),
        )

    def _fci_pse(self) -> bytes:
        return encode_tlv(
            Tag.FCI, encode_tlv(Tag.DF_NAME, PSE) + encode_tlv(Tag.FCI_PROPRIETARY, encode_tlv(Tag.SFI, b"\x01"))
        )

    def _fci_ppse(self) -> bytes:
        return encode_tlv(
            Tag.FCI,
            encode_tlv(Tag.DF_NAME, PPSE)
            + encode_tlv(Tag.FCI_PROPRIETARY, encode_tlv(Tag.FCI_ISSUER_DISCRETIONARY, self._directory_entry())),
        )

    def _fci_app(self) -> bytes:
        proprietary = encode_tlv(Tag.LABEL, self.label.encode()) + encode_tlv(Tag.PRIORITY, b"\x01")
        if self.pdol:
            proprietary += encode_tlv(Tag.PDOL, self.pdol)
        return encode_tlv(Tag.FCI, encode_tlv(Tag.DF_NAME, self.aid) + encode_tlv(Tag.FCI_PROPRIETARY, proprietary))

    def transmit(self, apdu: bytes) -> bytes:  # noqa: PLR0911 - one answer per command kind
        """Answer one command APDU."""
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        self.log.append(apdu[:4])
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if len(apdu) > 5 and len(body) != apdu[4]:
            return SW_WRONG_LENGTH
        if ins == 0xA4 and cla == 0x00 and p1 == 0x04:
            return self._select(body)
        if ins == 0xB2 and cla == 0x00:
            return self._read_record(p1, p2)
        if ins == 0xA8 and cla == 0x80:
            return self._gpo(body)
        if cla not in (0x00, 0x80):
            return SW_CLA_NOT_SUPPORTED
        return SW_INS_NOT_SUPPORTED

    def _select(self, name: bytes) -> bytes:
        if name == PSE and self.supports_pse:
            self.selected = PSE
            return self._fci_pse() + SW_OK
        if name == PPSE and self.supports_ppse:
            self.selected = PPSE
            return self._fci_ppse() + SW_OK
        if name and self.aid.startswith(name):  # partial AID selection is allowed (EMV Book 1, 12.3.3)
            self.selected = self.aid
            return self._fci_app() + SW_OK
        return SW_FILE_NOT_FOUND

    def _read_record(self, record: int, p2: int) -> bytes:
        if p2 & 0x07 != 0x04:
            return b"\x6a\x86"  # incorrect P1 P2
        sfi = p2 >> 3
        if self.selected == PSE and sfi == 1 and record == 1:
            return encode_tlv(Tag.RECORD_TEMPLATE, self._directory_entry()) + SW_OK
        if self.selected != self.aid:
            return SW_CONDITIONS
        data = self.records.get((sfi, record))
        if data is None:
            return SW_RECORD_NOT_FOUND
        return encode_tlv(Tag.RECORD_TEMPLATE, data) + SW_OK

    def _gpo(self, body: bytes) -> bytes:
        if self.selected != self.aid:
            return SW_CONDITIONS
        expected = sum(length for _tag, length in parse_dol(self.pdol))
        if body[:1] != b"\x83" or len(body) < 2 or body[1] != expected or len(body) != 2 + expected:
            return SW_WRONG_LENGTH
        aip = b"\x7c\x00"
        if self.gpo_format == 1:
            return encode_tlv(Tag.GPO_FORMAT_1, aip + self.afl) + SW_OK
        return encode_tlv(Tag.GPO_FORMAT_2, encode_tlv(Tag.AIP, aip) + encode_tlv(Tag.AFL, self.afl)) + SW_OK


#: PDOL of the project's UnionPay card (qPBOC style): TTQ, amount, unpredictable number, currency, date, type.
UNIONPAY_PDOL: Final = bytes.fromhex("9F66049F02069F37045F2A029A039C01")


class UnionPayDebitCard(EmvVirtualCard):
    """A UnionPay debit card (AID A000000333010101) with PSE (contact) or PPSE (contactless)."""

    def __init__(
        self,
        pan: str = "6212345678901232",
        *,
        expiry_yymm: str = "3012",
        holder_name: str | None = "ZHANG/WEIMIN",
        contactless: bool = False,
        aid: str = "A000000333010101",
        label: str = "UnionPay Debit",
    ) -> None:
        self.pan = pan
        expiry = dt.datetime.strptime(expiry_yymm, "%y%m").date()  # noqa: DTZ007 - a date, no time zone
        sfi1 = encode_tlv(Tag.TRACK2, _track2(pan, expiry_yymm))
        if holder_name:
            sfi1 += encode_tlv(Tag.HOLDER_NAME, holder_name.encode("ascii"))
        sfi2 = (
            encode_tlv(Tag.PAN, _bcd_pan(pan))
            + encode_tlv(Tag.EXPIRY, bytes.fromhex(expiry.strftime("%y%m") + "31"))
            + encode_tlv(Tag.PAN_SEQUENCE, b"\x01")
            + encode_tlv(0x5F28, b"\x01\x56")  # issuer country: China
        )
        cvm = encode_tlv(0x8E, bytes.fromhex("000000000000000042031E031F03"))
        super().__init__(
            aid=bytes.fromhex(aid),
            label=label,
            atr=_atr(b"UPDEBIT" if not contactless else b"UPQPBOC", contactless=contactless),
            pdol=UNIONPAY_PDOL,
            records={(1, 1): sfi1, (2, 1): sfi2, (2, 2): cvm},
            afl=bytes.fromhex("0801010010010201"),
            gpo_format=2,
            supports_pse=not contactless,
            supports_ppse=contactless,
        )


class OtherLayoutCard(EmvVirtualCard):
    """A card laid out differently: no PSE/PPSE, international AID, GPO format 1, PAN only in tag 57."""

    def __init__(
        self,
        pan: str = "4761739001010010",
        *,
        expiry_yymm: str = "2912",
        aid: str = "A0000000031010",
        label: str = "VISA CREDIT",
    ) -> None:
        self.pan = pan
        # A record long enough to need the 81 length form, as certificate records are.
        certificate = encode_tlv(0x90, bytes(range(144)))
        records = {
            (1, 1): certificate,
            (1, 2): encode_tlv(0x9F32, b"\x03") + encode_tlv(0x8F, b"\x09"),
            (3, 1): encode_tlv(Tag.TRACK2, _track2(pan, expiry_yymm, "201")) + encode_tlv(0x9F1F, b"0000"),
        }
        super().__init__(
            aid=bytes.fromhex(aid),
            label=label,
            atr=_atr(b"OTHERLY", contactless=False),
            pdol=b"",
            records=records,
            afl=bytes.fromhex("0801020118010100"),
            gpo_format=1,
            supports_pse=False,
            supports_ppse=False,
        )


class ChainingCard:
    """A T=0 UnionPay card that sends its data in pieces: 61xx + GET RESPONSE, and 6Cxx for a wrong Le."""

    def __init__(self, pan: str = "6228480402564890018", *, chunk: int = 24, **kwargs: str | None) -> None:
        self.inner = UnionPayDebitCard(pan, **kwargs)  # type: ignore[arg-type]
        self.pan = pan
        self.chunk = chunk
        self._pending = b""
        #: Counts of the T=0 answers sent, so tests can see the chaining really happened.
        self.get_responses = 0
        self.wrong_le = 0

    @property
    def atr(self) -> bytes:
        """T=0 ATR."""
        return self.inner.atr

    def reset(self) -> None:
        """Power-up: forget pending data."""
        self._pending = b""
        self.inner.reset()

    def _chained(self, data: bytes) -> bytes:
        self._pending = data
        return bytes([0x61, min(len(data), self.chunk)])

    def transmit(self, apdu: bytes) -> bytes:  # noqa: PLR0911 - one answer per T=0 case
        """Answer with 61xx/6Cxx the way a T=0 card does."""
        if len(apdu) == 5 and apdu[:4] == b"\x00\xc0\x00\x00":
            if not self._pending:
                return b"\x6f\x00"
            length = apdu[4] or 256
            piece, self._pending = self._pending[:length], self._pending[length:]
            self.get_responses += 1
            if self._pending:
                return piece + bytes([0x61, min(len(self._pending), self.chunk)])
            return piece + SW_OK
        self._pending = b""
        answer = self.inner.transmit(apdu)
        data, sw = answer[:-2], answer[-2:]
        if sw != SW_OK or not data:
            return answer
        if apdu[1] == 0xB2:  # READ RECORD is case 2: a wrong Le gets 6C with the right one
            le = apdu[4] if len(apdu) == 5 else 0
            if le != len(data):
                self.wrong_le += 1
                return bytes([0x6C, len(data) & 0xFF])
            return answer
        return self._chained(data)


class DeadCard:
    """A card whose chip answers reset and then nothing useful (6F00: no precise diagnosis)."""

    def __init__(self) -> None:
        self.commands = 0

    @property
    def atr(self) -> bytes:
        """A plain T=0 ATR."""
        return _atr(b"DEAD", contactless=False)

    def reset(self) -> None:
        """Nothing to forget."""

    def transmit(self, apdu: bytes) -> bytes:
        """6F00 to everything."""
        _ = apdu
        self.commands += 1
        return SW_NO_DIAGNOSIS
