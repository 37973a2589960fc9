"""Exceptions of the receipt_printer package: one root, a few leaves a caller can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receipt_printer.models import PrinterStatus


class PrinterError(Exception):
    """Root of every error raised by the receipt_printer package."""


class PrinterOfflineError(PrinterError):
    """The printer cannot be reached: the port does not open, the link broke, or no status answer in time."""


class PrinterNotReadyError(PrinterError):
    """The printer answered but cannot print (or could not finish); ``status`` says why."""

    def __init__(self, message: str, status: PrinterStatus) -> None:
        super().__init__(message)
        self.status = status


class CoverOpenError(PrinterNotReadyError):
    """The paper cover is open."""


class PaperOutError(PrinterNotReadyError):
    """No paper: before the slip, or mid-slip (``mid_slip``: part of it came out, the rest was lost)."""

    def __init__(self, message: str, status: PrinterStatus, *, mid_slip: bool = False) -> None:
        super().__init__(message, status)
        self.mid_slip = mid_slip


class ProtocolError(PrinterError):
    """The printer sent something that is not an ESC/POS status answer (wrong device or a firmware fault)."""


class EscPosSyntaxError(ProtocolError):
    """A malformed ESC/POS byte stream (the simulator's parser): unknown command or bad parameter at ``offset``."""

    def __init__(self, message: str, offset: int, parsed: tuple[object, ...] = ()) -> None:
        super().__init__(f"{message} (byte {offset})")
        self.offset = offset
        #: Commands decoded before the error, in order (the parser goes on after the bad byte).
        self.parsed = parsed
