"""PC/SC access through pyscard's scard layer: find a reader, wait for a card, exchange APDUs.

Bank card and wristband readers sit on top of this; it translates every PC/SC return code into
pcsc errors, and handles the ISO 7816-4 T=0 transport rules (61xx, 6Cxx) in one place.
Which pcscd it talks to is decided by libpcsclite: PCSCLITE_CSOCK_NAME, or /run/pcscd/pcscd.comm.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from smartcard import scard

from device_kit.link import Closing
from pcsc.errors import (
    CardAbsentError,
    CardTransmitError,
    CardUnresponsiveError,
    CardWaitTimeoutError,
    PcscError,
    PcscServiceUnavailableError,
    ReaderNotFoundError,
    WaitCancelledError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("pcsc")

#: Longest T=0 GET RESPONSE chain we follow before calling the card broken.
MAX_GET_RESPONSE: Final = 64
CANCEL_SLICE_MS: Final = 500  # the longest a cancel racing the start of a wait goes unseen
_UNSIGNED: Final = 0x1_0000_0000

_SERVICE_DOWN: Final = frozenset({scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED})
_ABSENT: Final = frozenset({scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD})
_UNRESPONSIVE: Final = frozenset({scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD})


def _code(hresult: int) -> int:
    return hresult + _UNSIGNED if hresult < 0 else hresult


def describe(hresult: int) -> str:
    """PC/SC's text for a return code, with the code in hex."""
    return f"{scard.SCardGetErrorMessage(_code(hresult))} (0x{_code(hresult):08X})"


def _raise_for(hresult: int, doing: str) -> None:
    hresult = _code(hresult)
    if hresult == scard.SCARD_S_SUCCESS:
        return
    text = f"{doing}: {describe(hresult)}"
    if hresult in _SERVICE_DOWN:
        raise PcscServiceUnavailableError(f"PC/SC服务不可用 / PC/SC service unavailable: {text}", hresult=hresult)
    if hresult in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_NO_READERS_AVAILABLE):
        raise ReaderNotFoundError(text, hresult=hresult)
    if hresult == scard.SCARD_E_TIMEOUT:
        raise CardWaitTimeoutError(text, hresult=hresult)
    if hresult == scard.SCARD_E_CANCELLED:
        raise WaitCancelledError(text, hresult=hresult)
    if hresult in _ABSENT:
        raise CardAbsentError(text, hresult=hresult)
    if hresult in _UNRESPONSIVE:
        raise CardUnresponsiveError(text, hresult=hresult)
    raise CardTransmitError(text, hresult=hresult)


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """A card's answer: data and the two status bytes."""

    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        """SW1 SW2 as one number, e.g. 0x9000."""
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        """True for 90 00."""
        return self.sw == 0x9000


def resolve_reader_name(wanted: str | None, available: list[str]) -> str:
    """The reader to use: an exact name, else the one name containing `wanted` (case-insensitive)."""
    if not available:
        raise ReaderNotFoundError("没有连接读卡器 / no PC/SC reader is connected")
    if wanted is None:
        if len(available) == 1:
            return available[0]
        raise ReaderNotFoundError(f"several readers are connected; name one of: {', '.join(available)}")
    if wanted in available:
        return wanted
    matches = [name for name in available if wanted.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ReaderNotFoundError(f"no reader named {wanted!r}; readers: {', '.join(available)}")
    raise ReaderNotFoundError(f"{wanted!r} matches several readers: {', '.join(matches)}")


class PcscContext(Closing):
    """One PC/SC context: list readers, wait for cards, connect. cancel() may be called from any thread."""

    def __init__(self) -> None:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _raise_for(hresult, "SCardEstablishContext")
        self._context: Any = context
        self._closed = False
        self._lock = threading.Lock()
        # SCardCancel reaches only a wait already in SCardGetStatusChange: a cancel just before it starts
        # would be lost for the whole timeout. The flag catches it (see _wait).
        self._cancelled = threading.Event()

    def close(self) -> None:
        """Release the context (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                scard.SCardReleaseContext(self._context)

    def cancel(self) -> None:
        """Abort a wait_for_card()/wait_for_removal() running (or about to run) in another thread."""
        self._cancelled.set()
        with self._lock:
            if not self._closed:
                scard.SCardCancel(self._context)

    def reader_names(self) -> list[str]:
        """The readers pcscd knows, in its order (an empty list when none)."""
        hresult, names = scard.SCardListReaders(self._context, [])
        if _code(hresult) == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _raise_for(hresult, "SCardListReaders")
        return [str(n) for n in names]

    def resolve(self, wanted: str | None) -> str:
        """resolve_reader_name() against the readers there are now."""
        return resolve_reader_name(wanted, self.reader_names())

    def card_state(self, reader: str) -> tuple[bool, bytes]:
        """(a card is present, its ATR) right now."""
        hresult, states = scard.SCardGetStatusChange(self._context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        _raise_for(hresult, f"SCardGetStatusChange({reader})")
        _name, event, atr = states[0]
        return bool(event & scard.SCARD_STATE_PRESENT), bytes(atr or b"")

    def _wait(self, readers: list[str], timeout: float, *, present: bool) -> tuple[str, bytes]:
        deadline = time.monotonic() + timeout
        states = [(r, scard.SCARD_STATE_UNAWARE) for r in readers]
        while True:
            if self._cancelled.is_set():
                raise WaitCancelledError("the wait was cancelled", hresult=scard.SCARD_E_CANCELLED)
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            # In slices: a cancel that came between the check above and the call is seen within one.
            hresult, new_states = scard.SCardGetStatusChange(self._context, min(remaining_ms, CANCEL_SLICE_MS), states)
            if _code(hresult) == scard.SCARD_E_TIMEOUT:
                if time.monotonic() < deadline:
                    continue
                raise CardWaitTimeoutError(
                    f"no card {'arrived in' if present else 'left'} {', '.join(readers)} within {timeout:.1f} s"
                )
            _raise_for(hresult, "SCardGetStatusChange")
            for name, event, atr in new_states:
                if event & scard.SCARD_STATE_UNKNOWN:
                    raise ReaderNotFoundError(f"reader {name!r} disappeared")
                is_present = bool(event & scard.SCARD_STATE_PRESENT)
                if present and is_present:
                    if event & scard.SCARD_STATE_MUTE:
                        raise CardUnresponsiveError(f"the card in {name} does not answer reset (mute)")
                    return str(name), bytes(atr or b"")
                if not present and not is_present:
                    return str(name), b""
            # Past the deadline the next call waits 0 ms and times out (above).
            states = [(name, event & ~scard.SCARD_STATE_CHANGED) for name, event, _atr in new_states]

    def wait_for_card(self, reader: str | None, timeout: float) -> tuple[str, bytes]:
        """Wait until a card is in `reader` (None: in any reader); return (reader, ATR)."""
        readers = [self.resolve(reader)] if reader is not None else self.reader_names()
        if not readers:
            raise ReaderNotFoundError("没有连接读卡器 / no PC/SC reader is connected")
        return self._wait(readers, timeout, present=True)

    def wait_for_removal(self, reader: str, timeout: float) -> None:
        """Wait until `reader` holds no card."""
        self._wait([self.resolve(reader)], timeout, present=False)

    def connect(self, reader: str) -> CardChannel:
        """Connect (shared) to the card in `reader`, T=0 or T=1 as the card offers."""
        hresult, card, protocol = scard.SCardConnect(
            self._context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        _raise_for(hresult, f"SCardConnect({reader})")
        hresult, _name, _state, _proto, atr = scard.SCardStatus(card)
        _raise_for(hresult, f"SCardStatus({reader})")
        return CardChannel(card, int(protocol), reader, bytes(atr))


class CardChannel(Closing):
    """A connection to one card: raw transmit() and ISO 7816-4 exchange() with T=0 chaining."""

    def __init__(self, handle: Any, protocol: int, reader: str, atr: bytes) -> None:
        self._handle = handle
        self.protocol = protocol
        self.reader = reader
        self.atr = atr
        self._closed = False

    @property
    def protocol_name(self) -> str:
        """'T=0' or 'T=1'."""
        return "T=0" if self.protocol == scard.SCARD_PROTOCOL_T0 else "T=1"

    def transmit(self, apdu: bytes) -> ResponseApdu:
        """Send one APDU as is and return the card's answer."""
        pci = scard.SCARD_PCI_T0 if self.protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        hresult, response = scard.SCardTransmit(self._handle, pci, list(apdu))
        _raise_for(hresult, f"SCardTransmit({self.reader})")
        raw = bytes(response)
        if len(raw) < 2:
            raise CardTransmitError(f"the card in {self.reader} answered {len(raw)} byte(s), without a status word")
        return ResponseApdu(raw[:-2], raw[-2], raw[-1])

    def exchange(self, apdu: bytes) -> ResponseApdu:
        """transmit() plus the T=0 rules (see t0_exchange)."""
        return t0_exchange(self.transmit, apdu, where=self.reader)

    def close(self, *, unpower: bool = False) -> None:
        """Disconnect, leaving the card powered unless `unpower` (idempotent, never raises)."""
        if self._closed:
            return
        self._closed = True
        disposition = scard.SCARD_UNPOWER_CARD if unpower else scard.SCARD_LEAVE_CARD
        hresult = scard.SCardDisconnect(self._handle, disposition)
        if hresult != scard.SCARD_S_SUCCESS:
            log.debug("SCardDisconnect(%s): %s", self.reader, describe(hresult))


def t0_exchange(transmit: Callable[[bytes], ResponseApdu], apdu: bytes, *, where: str = "the reader") -> ResponseApdu:
    """ISO 7816-4 T=0 transport rules: on 6Cxx resend with Le=xx; on 61xx collect GET RESPONSE data."""
    response = transmit(apdu)
    if response.sw1 == 0x6C and len(apdu) >= 5:
        # Wrong Le: the card tells the right one; resend the same command with it.
        response = transmit(apdu[:-1] + bytes([response.sw2]))
    data = bytearray(response.data)
    rounds = 0
    while response.sw1 == 0x61:
        rounds += 1
        if rounds > MAX_GET_RESPONSE:
            raise CardTransmitError(f"the card in {where} kept answering 61xx after {MAX_GET_RESPONSE} GET RESPONSEs")
        response = transmit(bytes([apdu[0] & 0x03, 0xC0, 0x00, 0x00, response.sw2]))
        data += response.data
    return ResponseApdu(bytes(data), response.sw1, response.sw2)


def list_readers() -> list[str]:
    """The PC/SC readers there are, or PcscServiceUnavailableError when pcscd is not reachable."""
    with PcscContext() as context:
        return context.reader_names()


__all__ = [
    "CardChannel",
    "PcscContext",
    "PcscError",
    "ResponseApdu",
    "list_readers",
    "resolve_reader_name",
    "t0_exchange",
]
