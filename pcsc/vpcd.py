"""Virtual cards on the real pcscd: the vsmartcard vpcd wire protocol, spoken from the card's side.

Debian's vpcd driver (libifdvpcd.so, loaded by pcscd) listens on a TCP port per slot and treats
whatever connects as the card in that slot. Every message is a 2-byte big-endian length and a
payload; a 1-byte payload is a control code (0 power off, 1 power on, 2 reset, 4 send the ATR),
anything longer is a C-APDU that the card answers with an R-APDU. A closed socket is a removed card.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, Self, runtime_checkable

from pcsc.errors import VirtualCardError

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger("pcsc.vpcd")
wire_log = logging.getLogger("pcsc.vpcd.wire")


class VpcdControl(enum.IntEnum):
    """vpcd control codes (vpcd.h)."""

    POWER_OFF = 0
    POWER_ON = 1
    RESET = 2
    GET_ATR = 4


@runtime_checkable
class VirtualCard(Protocol):
    """What a virtual card must do: give its ATR, reset, and answer APDUs."""

    @property
    def atr(self) -> bytes:
        """The answer to reset."""
        ...

    def reset(self) -> None:
        """Power-up or reset: forget the selected application and any pending data."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Answer one C-APDU with data ‖ SW1 SW2."""
        ...


#: How long insert() keeps trying to reach a vpcd port that is not listening yet (pcscd starting).
CONNECT_TIMEOUT: Final = 5.0
#: How long insert(wait=True) waits for pcscd to read the new card's ATR. pcscd polls each vpcd
#: slot about every 0.4-0.5 s; see docs/technician-card-readers.md.
SEEN_TIMEOUT: Final = 3.0
_QUICKACK: Final = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Link:
    """One TCP connection to vpcd carrying one card, served by its own thread."""

    def __init__(self, sock: socket.socket, card: VirtualCard, port: int) -> None:
        self.sock = sock
        self.card = card
        self.port = port
        self.closed = threading.Event()
        self.seen = threading.Event()  # pcscd has powered the card and read its ATR
        self._powered = False
        self.thread = threading.Thread(target=self._serve, name=f"vpcd-{port}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def hang_up(self) -> None:
        """Drop the link: vpcd's next presence poll (or the command in flight) finds the card gone.

        (Answering vpcd with an empty message instead hangs Debian's vpcd 3.3 in its receive.)
        """
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        sock = self.sock
        try:
            while True:
                header = self._recv(2)
                if header is None:
                    return
                payload = self._recv(int.from_bytes(header, "big"))
                if payload is None:
                    return
                if len(payload) == 1:
                    reply = self._control(payload[0])
                else:
                    wire_log.debug("%d >>> %s", self.port, payload[:5].hex(" ").upper())
                    reply = self.card.transmit(payload)
                    # Only the status word: card answers may carry a PAN (tags 57/5A).
                    wire_log.debug("%d <<< %d byte(s), SW %s", self.port, len(reply), reply[-2:].hex().upper())
                if reply is not None:
                    sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return
        except Exception:
            # A bug in a virtual card must not pass silently: log it; the dropped link shows as removal.
            log.exception("virtual card on port %d failed", self.port)
        finally:
            sock.close()
            self.closed.set()

    def _recv(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            if _QUICKACK is not None:
                # vpcd writes a command's length and its bytes in two writes under Nagle: the second
                # waits for our ACK, which Linux delays by 40 ms. ACK at once (re-armed before each
                # recv), or every APDU of a virtual card costs ~44 ms that no real card has.
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def _control(self, code: int) -> bytes | None:
        if code == VpcdControl.GET_ATR:
            if self._powered:
                # pcscd asks ATR, powers up, asks ATR again, then publishes "card present".
                self.seen.set()
            return self.card.atr
        if code in (VpcdControl.POWER_ON, VpcdControl.RESET):
            self._powered = True
            self.card.reset()
        return None


class VirtualCardSlot:
    """One vpcd slot (host, port): insert(card) connects a card to it, remove() takes it out.

    Thread-safe and idempotent: inserting the card already in the slot does nothing, inserting
    another one swaps them (vpcd accepts the new card only after its next poll has ejected the old
    one, so readers see a removal, then a new card), removing an empty slot does nothing. Neither
    call waits for pcscd unless asked: pcscd notices a change at its next presence poll of the slot
    (measured in docs/technician-card-readers.md).
    """

    _instances: ClassVar[dict[tuple[str, int], VirtualCardSlot]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls, host: str, port: int, **_kwargs: float) -> Self:
        """The slot object for (host, port), created on first use."""
        # One object per vpcd slot in a process: two objects on one port would each think they
        # hold the card, and a swap made through one would be invisible to the other.
        with cls._instances_lock:
            existing = cls._instances.get((host, port))
            if isinstance(existing, cls):
                return existing
            instance = super().__new__(cls)
            cls._instances[(host, port)] = instance
            return instance

    def __init__(self, host: str, port: int, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        if getattr(self, "_initialised", False):
            return
        self._initialised = True
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._link: _Link | None = None

    def __repr__(self) -> str:
        card = self.card
        return f"VirtualCardSlot({self.host}:{self.port}, card={type(card).__name__ if card else None})"

    @property
    def card(self) -> VirtualCard | None:
        """The card in the slot, if any."""
        link = self._link
        return None if link is None else link.card

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def insert(self, card: VirtualCard, *, wait: bool = False, timeout: float = SEEN_TIMEOUT) -> None:
        """Put `card` into the slot; with wait=True, return once pcscd has read its ATR."""
        with self._lock:
            link = self._link
            if link is not None and link.card is card and not link.closed.is_set():
                pass
            else:
                self._remove_locked()
                link = _Link(self._connect(), card, self.port)
                self._link = link
                link.start()
                log.info("virtual card %s inserted in vpcd slot %s:%d", type(card).__name__, self.host, self.port)
        if wait and not link.seen.wait(timeout):
            raise VirtualCardError(f"pcscd did not poll vpcd slot {self.host}:{self.port} within {timeout:.1f} s")

    def remove(self) -> None:
        """Take the card out (no-op when empty); pcscd sees it gone at its next poll."""
        with self._lock:
            self._remove_locked()

    def _remove_locked(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        link.hang_up()
        link.closed.wait(timeout=2)
        log.info("virtual card %s removed from vpcd slot %s:%d", type(link.card).__name__, self.host, self.port)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            except OSError as err:
                if time.monotonic() + delay > deadline:
                    raise VirtualCardError(f"cannot reach vpcd at {self.host}:{self.port}: {err}") from err
                # pcscd may still be starting: back off (bounded) and try again.
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
