"""The serial link helper: open any pyserial URL with one error type, and close it without hanging.

``socket://host:port`` reaches a simulator or a network device (a receipt printer on TCP 9100),
``/dev/ttyUSB0`` a real serial port, ``spy://`` logs the traffic; the driver never knows which.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import serial

_log = logging.getLogger("device_kit.link")


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
