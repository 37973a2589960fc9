"""The serial link helper: open any pyserial URL with one error type, and close it without hanging.

``socket://host:port`` reaches a simulator or a network device (a receipt printer on TCP 9100),
``/dev/ttyUSB0`` a real serial port, ``spy://`` logs the traffic; the driver never knows which.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Self, TypeVar

import serial
from serial.threaded import Protocol, ReaderThread

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

_log = logging.getLogger("device_kit.link")

P = TypeVar("P", bound=Protocol)


class Closing:
    """A device handle used as a context manager: ``with Driver.open(url) as d:`` closes it on the way out."""

    def close(self) -> None:
        """Release the device (subclasses; idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LinkError(OSError):
    """The link cannot be opened or broke (the message names the URL)."""


def open_link(
    url: str, *, baudrate: int = 115200, timeout: float = 1.0, write_timeout: float | None = None
) -> serial.SerialBase:
    """Open ``url`` with pyserial; LinkError (chained) when it cannot be opened."""
    if not url:
        raise LinkError("no device URL given (e.g. /dev/ttyUSB0 or socket://127.0.0.1:9100)")
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=write_timeout)
    except (serial.SerialException, OSError, ValueError) as err:
        raise LinkError(f"cannot open {url}: {err}") from err


def read_exactly(port: serial.SerialBase, count: int) -> bytes:
    """Up to ``count`` bytes within the port's timeout (fewer means the device went quiet)."""
    data = b""
    while len(data) < count:
        chunk = bytes(port.read(count - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def close_link(port: serial.SerialBase, *, wait: bool = True) -> None:
    """Close a port; ``wait=False`` closes on a thread, since pyserial's socket:// close sleeps 0.3 s."""
    if not wait:
        threading.Thread(target=close_link, args=(port,), name="link-close", daemon=True).start()
        return
    if hasattr(port, "cancel_read"):
        with contextlib.suppress(OSError, serial.SerialException):
            port.cancel_read()
    try:
        port.close()
    except (OSError, serial.SerialException):
        _log.debug("closing %s failed", getattr(port, "port", "?"), exc_info=True)


#: Read timeout on transports without ``cancel_read`` (socket://), so closing stops the reader soon.
READ_POLL = 0.05


class LinkReaderThread(ReaderThread):  # type: ignore[misc]
    """pyserial's ReaderThread that closes quickly on socket:// and treats a read failure as a lost link.

    Stock ReaderThread forces a 1 s read timeout on transports that cannot cancel a read, so every
    close waited up to a second; this one keeps a short poll, reads the whole backlog at once (socket://
    reports ``in_waiting`` as 0 or 1) and hands the protocol ``connection_lost(error)`` without re-raising.
    """

    alive: bool

    def run(self) -> None:
        """Read until stopped or the link fails, feeding the protocol."""
        if not hasattr(self.serial, "cancel_read"):
            self.serial.timeout = READ_POLL
            self.serial.cancel_read = lambda: None
        self.protocol = self.protocol_factory()
        self.protocol.connection_made(self)
        self._connection_made.set()
        error: BaseException | None = None
        while self.alive and self.serial.is_open:
            try:
                data = self._read_available()
            except Exception as err:
                error = err
                break
            if data:
                try:
                    self.protocol.data_received(data)
                except Exception:
                    _log.exception("link reader: handling received data failed")
        self.alive = False
        self.protocol.connection_lost(error)

    def _read_available(self) -> bytes:
        """Wait for one byte, then take everything already received in one go."""
        waiting = self.serial.in_waiting
        if waiting > 1:
            return bytes(self.serial.read(waiting))
        first = bytes(self.serial.read(1))
        if not first:
            return first
        timeout = self.serial.timeout
        self.serial.timeout = 0
        try:
            return first + bytes(self.serial.read(4096))
        finally:
            self.serial.timeout = timeout


def start_reader(port: serial.SerialBase, factory: Callable[[], P]) -> tuple[LinkReaderThread, P]:
    """Start a reader thread on ``port``; returns it and the protocol instance it feeds."""
    thread = LinkReaderThread(port, factory)
    thread.start()
    _transport, protocol = thread.connect()
    return thread, protocol
