"""Driver for an ESC/POS receipt printer at any pyserial URL: serial, ``socket://`` (simulator), network.

A network printer is ``socket://192.168.1.60:9100`` (raw TCP on port 9100). Each slip is checked by
DLE EOT before (a printer without paper or with the cover open gets nothing) and after (paper that ran
out mid-slip is reported, not taken for a printed slip). The printer answers a status query when it
reaches it in its input, so the answer after the slip also says the slip has been printed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Self

import serial

from device_kit.link import Closing, LinkError, close_link, open_link, read_exactly
from receipt_printer import protocol
from receipt_printer.errors import CoverOpenError, PaperOutError, PrinterNotReadyError, PrinterOfflineError
from receipt_printer.models import Align, PrinterStatus, PrintReport, Receipt, TextLine
from receipt_printer.protocol import StatusKind

_log = logging.getLogger("receipt_printer.driver")

BAUDRATE = 115200
_STATUS_KINDS = (StatusKind.PRINTER, StatusKind.OFFLINE_CAUSE, StatusKind.ERROR, StatusKind.PAPER)


class ReceiptPrinter(Closing):
    """A connected printer; build it with ``ReceiptPrinter.open(url)``. Thread-safe (one slip at a time)."""

    def __init__(self, url: str, port: serial.SerialBase, *, timeout: float, print_timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.print_timeout = print_timeout
        self._port = port
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, timeout: float = 1.0, print_timeout: float = 20.0, baudrate: int = BAUDRATE) -> Self:
        """Open the printer at ``url``.

        Args:
            url: ``/dev/ttyUSB0``, ``socket://127.0.0.1:9100``, ``spy:///dev/ttyS0`` ...
            timeout: seconds to wait for a status answer when nothing is printing.
            print_timeout: seconds to wait for the answer after a slip (the time to print it).
            baudrate: for a serial port (ignored by socket://).

        Raises:
            PrinterOfflineError: the port cannot be opened.

        """
        if timeout <= 0 or print_timeout <= 0:
            raise ValueError(f"printer timeouts must be above 0, got {timeout}/{print_timeout}")
        try:
            port = open_link(url, baudrate=baudrate, timeout=timeout, write_timeout=print_timeout)
        except LinkError as err:
            raise PrinterOfflineError(str(err)) from err
        return cls(url, port, timeout=timeout, print_timeout=print_timeout)

    def close(self) -> None:
        """Close the link."""
        close_link(self._port)

    # ------------------------------------------------------------ commands

    def status(self) -> PrinterStatus:
        """Online, cover, paper near end / out and error, from DLE EOT 1-4."""
        with self._lock:
            return self._status(self.timeout)

    def print_receipt(self, receipt: Receipt) -> PrintReport:
        """Print one slip (init, items, partial cut) with a status check before and after.

        Raises:
            CoverOpenError, PaperOutError: before the slip (nothing printed) or after it (``mid_slip``).
            PrinterOfflineError: no answer, before or after.

        """
        return self.print_raw(protocol.encode_receipt(receipt))

    def print_raw(self, data: bytes) -> PrintReport:
        """Send raw ESC/POS bytes (a slip, or a technician's file) between two status checks."""
        with self._lock:
            started = time.monotonic()
            before = self._status(self.timeout)
            _raise_if_not_ready(before, mid_slip=False)
            self._write(data)
            after = self._status(self.print_timeout)
            _raise_if_not_ready(after, mid_slip=True)
            elapsed = time.monotonic() - started
        _log.info("slip printed: %d bytes in %.2f s%s", len(data), elapsed, " (paper near end)" * after.paper_near_end)
        return PrintReport(before, after, len(data), elapsed)

    def test_page(self) -> PrintReport:
        """A short page in Chinese and English with the time: proves paper, font, GB18030 and the cutter."""
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        items = (
            TextLine("打印测试 / Test page", Align.CENTER, bold=True, double=True),
            TextLine("中文 GB18030: 评标专家签到凭证", Align.LEFT),
            TextLine("ASCII: 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ", Align.LEFT),
            TextLine(now, Align.RIGHT),
        )
        return self.print_receipt(Receipt(items))

    # ------------------------------------------------------------ internals

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as err:
            raise PrinterOfflineError(f"printer link to {self.url} broke while sending: {err}") from err

    def _status(self, first_timeout: float) -> PrinterStatus:
        """Ask DLE EOT 1-4 in one write and read the four answers (the first may wait for printing)."""
        try:
            self._port.reset_input_buffer()  # a late answer to an earlier, timed-out query is not this one's
            self._port.write(b"".join(protocol.status_request(kind) for kind in _STATUS_KINDS))
            self._port.timeout = first_timeout
            first = read_exactly(self._port, 1)
            self._port.timeout = self.timeout
            rest = read_exactly(self._port, len(_STATUS_KINDS) - 1) if first else b""
        except (serial.SerialException, OSError) as err:
            raise PrinterOfflineError(f"printer link to {self.url} broke: {err}") from err
        answers = first + rest
        if len(answers) < len(_STATUS_KINDS):
            raise PrinterOfflineError(
                f"printer at {self.url} did not answer its status within {first_timeout:g} s "
                f"({len(answers)} of {len(_STATUS_KINDS)} bytes)"
            )
        return protocol.decode_status(dict(zip(_STATUS_KINDS, answers, strict=True)))


def _raise_if_not_ready(status: PrinterStatus, *, mid_slip: bool) -> None:
    when = "after the slip" if mid_slip else "before the slip"
    if status.cover_open:
        raise CoverOpenError(f"printer cover open ({when})", status)
    if status.paper_out:
        raise PaperOutError(f"printer out of paper ({when})", status, mid_slip=mid_slip)
    if not status.ready:
        raise PrinterNotReadyError(f"printer not ready ({when}): {', '.join(status.problems())}", status)
