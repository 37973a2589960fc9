"""Value types of the receipt printer: its status, and a receipt as a list of printable items."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias


class Align(IntEnum):
    """ESC a n."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


class QrErrorLevel(IntEnum):
    """GS ( k function 069: error correction level (n = 48 + level)."""

    L = 48
    M = 49
    Q = 50
    H = 51


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer's DLE EOT answers say (transmit real-time status, n = 1, 2, 3, 4)."""

    online: bool = True
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    #: Cutter or unrecoverable error (DLE EOT 3).
    error: bool = False

    @property
    def ready(self) -> bool:
        """True when a slip can be printed now (paper near end still prints)."""
        return self.online and not (self.cover_open or self.paper_out or self.error)

    def problems(self) -> tuple[str, ...]:
        """Codes for logs, heartbeats and the technician CLI; empty when all is well."""
        names = ("cover_open", "paper_out", "paper_near_end", "error")
        codes = [name for name in names if getattr(self, name)]
        if not self.online and not codes:
            codes.append("offline")
        return tuple(codes)


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text (Chinese or not); a line wider than the paper wraps, as the printer does."""

    text: str
    align: Align = Align.LEFT
    bold: bool = False
    double: bool = False


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR code printed by the printer itself (GS ( k), model 2."""

    data: str
    module_dots: int = 6
    level: QrErrorLevel = QrErrorLevel.M
    align: Align = Align.CENTER


@dataclass(frozen=True, slots=True)
class Raster:
    """A 1-bit image (GS v 0): rows of ``width_bytes`` bytes, most significant bit first, 1 = black."""

    width_bytes: int
    height: int
    data: bytes
    align: Align = Align.CENTER


@dataclass(frozen=True, slots=True)
class Feed:
    """Blank lines."""

    lines: int = 1


ReceiptItem: TypeAlias = TextLine | QrCode | Raster | Feed


@dataclass(frozen=True, slots=True)
class Receipt:
    """One slip, top to bottom; the driver adds init before and a partial cut after."""

    items: tuple[ReceiptItem, ...]


@dataclass(frozen=True, slots=True)
class PrintReport:
    """A slip that came out whole: the status before and after, and how long it took."""

    before: PrinterStatus
    after: PrinterStatus
    bytes_sent: int
    elapsed_s: float
