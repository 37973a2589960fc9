"""ESC/POS as Chinese kiosk printers speak it: encoding a receipt, parsing a byte stream, status bytes.

Pure: no I/O. python-escpos builds the commands it gets right (print mode, alignment, the QR code's
GS ( k functions, the GS v 0 raster image, the partial cut) through its in-memory ``Dummy`` printer.
Chinese text is ours: python-escpos encodes text through single-byte code pages, while Chinese
printers take GB18030 double-byte text between ``FS &`` (Chinese mode on) and ``FS .`` (off); the
encoder does that, and only the encoder knows it (docs/technician-printer.md).

The parser is the printer's side of the same stream, for the simulator: incremental (bytes may
arrive split anywhere), strict (an unknown command or a bad parameter is an EscPosSyntaxError
naming the byte), and it resynchronises after the bad byte so one error does not lose the rest.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final, TypeAlias

from receipt_printer.errors import EscPosSyntaxError, ProtocolError
from receipt_printer.models import Align, Feed, PrinterStatus, QrCode, Raster, Receipt, TextLine

if TYPE_CHECKING:
    from collections.abc import Iterator

    from PIL import Image


@contextmanager
def _escpos_import_without_side_effects() -> Iterator[None]:
    """Import python-escpos without what its import does to the whole process.

    On import it makes a ``mkdtemp()`` directory it never removes (one more directory in /tmp for
    every process that prints slips; made even when ``ESCPOS_CAPABILITIES_PICKLE_DIR`` names
    another), pickles its printer database there, and calls ``logging.basicConfig()``, after which
    our own ``basicConfig`` is silently ignored (``-v`` showed nothing). Here ``mkdtemp()`` makes
    its directory inside one removed right after the import (the database is in memory by then),
    and the root logger has a placeholder handler during the import so ``basicConfig`` does nothing.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        with tempfile.TemporaryDirectory(prefix="escpos-import-") as scratch:
            default_tempdir = tempfile.tempdir
            tempfile.tempdir = scratch
            try:
                yield
            finally:
                tempfile.tempdir = default_tempdir
    finally:
        root.removeHandler(placeholder)


with _escpos_import_without_side_effects():
    from escpos.printer import Dummy

ESC: Final = 0x1B
GS: Final = 0x1D
FS: Final = 0x1C
DLE: Final = 0x10
LF: Final = 0x0A
CR: Final = 0x0D
HT: Final = 0x09
EOT: Final = 0x04

#: Dots across an 80 mm head at 203 dpi (72 mm printable).
PAPER_DOTS: Final = 576
MAX_RASTER_WIDTH_BYTES: Final = PAPER_DOTS // 8
MAX_RASTER_HEIGHT: Final = 2303
MAX_QR_BYTES: Final = 7089


class StatusKind(IntEnum):
    """DLE EOT n: which real-time status byte is asked for."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR = 3
    PAPER = 4


# Status byte bits (Epson ESC/POS reference, DLE EOT). Bits 1 and 4 are always 1, 0 and 7 always 0.
_FIXED: Final = 0x12
_FIXED_MASK: Final = 0x93
_PRINTER_OFFLINE: Final = 0x08
_COVER_OPEN: Final = 0x04
_STOPPED_BY_PAPER_END: Final = 0x20
_ERROR_OCCURRED: Final = 0x40
_CUTTER_ERROR: Final = 0x08
_UNRECOVERABLE: Final = 0x20
_PAPER_NEAR_END: Final = 0x0C
_PAPER_END: Final = 0x60


def status_request(kind: StatusKind) -> bytes:
    """DLE EOT n."""
    return bytes((DLE, EOT, kind))


def status_byte(kind: StatusKind, status: PrinterStatus) -> int:
    """The byte a printer in ``status`` answers to DLE EOT ``kind`` (the simulator's side)."""
    value = _FIXED
    if kind is StatusKind.PRINTER and not status.ready:
        value |= _PRINTER_OFFLINE
    elif kind is StatusKind.OFFLINE_CAUSE:
        value |= (_COVER_OPEN if status.cover_open else 0) | (_STOPPED_BY_PAPER_END if status.paper_out else 0)
        value |= _ERROR_OCCURRED if status.error else 0
    elif kind is StatusKind.ERROR:
        value |= _UNRECOVERABLE | _CUTTER_ERROR if status.error else 0
    elif kind is StatusKind.PAPER:
        value |= (_PAPER_NEAR_END if status.paper_near_end or status.paper_out else 0) | (
            _PAPER_END if status.paper_out else 0
        )
    return value


def decode_status(answers: dict[StatusKind, int]) -> PrinterStatus:
    """The printer's status from its answers to DLE EOT 1, 2, 3 and 4; ProtocolError for a foreign byte."""
    for kind, value in answers.items():
        if value & _FIXED_MASK != _FIXED:
            raise ProtocolError(f"answer {value:#04x} to DLE EOT {int(kind)} is not an ESC/POS status byte")
    offline_cause = answers.get(StatusKind.OFFLINE_CAUSE, _FIXED)
    error = answers.get(StatusKind.ERROR, _FIXED)
    paper = answers.get(StatusKind.PAPER, _FIXED)
    paper_out = bool(paper & _PAPER_END) or bool(offline_cause & _STOPPED_BY_PAPER_END)
    return PrinterStatus(
        online=not answers.get(StatusKind.PRINTER, _FIXED) & _PRINTER_OFFLINE,
        cover_open=bool(offline_cause & _COVER_OPEN),
        paper_near_end=bool(paper & _PAPER_NEAR_END) and not paper_out,
        paper_out=paper_out,
        error=bool(error & (_UNRECOVERABLE | _CUTTER_ERROR)) or bool(offline_cause & _ERROR_OCCURRED),
    )


# ------------------------------------------------------------------------------------------ encoding


def encode_text(text: str) -> bytes:
    """One line's characters: ASCII as is; anything else in GB18030 between FS & and FS . (Chinese mode)."""
    if any(ch in text for ch in "\x00\n\r\x1b\x1c\x1d\x10"):
        raise ValueError(f"receipt text must not contain control characters: {text!r}")
    if text.isascii():
        return text.encode("ascii")
    try:
        body = text.encode("gb18030")
    except UnicodeEncodeError as err:  # pragma: no cover - GB18030 covers all of Unicode
        raise ValueError(f"receipt text cannot be encoded in GB18030: {text!r}") from err
    return bytes((FS, ord("&"))) + body + bytes((FS, ord(".")))


def encode_receipt(receipt: Receipt) -> bytes:
    """The whole slip: ESC @, every item, a feed and a partial cut."""
    out = Dummy()
    out.hw("INIT")
    for item in receipt.items:
        if isinstance(item, TextLine):
            out.set(
                align=item.align.name.lower(),
                bold=item.bold,
                double_height=item.double,
                double_width=item.double,
                normal_textsize=not item.double,
            )
            out._raw(encode_text(item.text) + b"\n")  # noqa: SLF001 - Dummy's raw write is its documented buffer
        elif isinstance(item, QrCode):
            out.set(align=item.align.name.lower(), normal_textsize=True, bold=False)
            ec = {48: 0, 49: 1, 50: 2, 51: 3}[int(item.level)]
            out.qr(item.data, ec=ec, size=item.module_dots, native=True)
        elif isinstance(item, Raster):
            out.set(align=item.align.name.lower(), normal_textsize=True, bold=False)
            out._raw(raster_command(item))  # noqa: SLF001
        elif isinstance(item, Feed):
            out._raw(bytes((ESC, ord("d"), item.lines)))  # noqa: SLF001
    out.set(align="left", bold=False, normal_textsize=True)
    out.cut(mode="PART", feed=True)
    return bytes(out.output)


def raster_command(raster: Raster) -> bytes:
    """GS v 0 m xL xH yL yH d1...dk (m = 0: normal density)."""
    if not 1 <= raster.width_bytes <= MAX_RASTER_WIDTH_BYTES or not 1 <= raster.height <= MAX_RASTER_HEIGHT:
        raise ValueError(f"raster {raster.width_bytes * 8}x{raster.height} dots does not fit {PAPER_DOTS} dots")
    if len(raster.data) != raster.width_bytes * raster.height:
        raise ValueError(f"raster data is {len(raster.data)} bytes, expected {raster.width_bytes * raster.height}")
    w, h = raster.width_bytes, raster.height
    return bytes((GS, ord("v"), ord("0"), 0, w & 0xFF, w >> 8, h & 0xFF, h >> 8)) + raster.data


def raster_from_image(image: Image.Image, align: Align = Align.CENTER) -> Raster:
    """A PIL image as a 1-bit raster (dark pixels print), at most the paper's width."""
    mono = image.convert("L").point(lambda v: 255 if v >= 128 else 0, mode="1")
    if mono.width > PAPER_DOTS:
        raise ValueError(f"image is {mono.width} dots wide; the paper has {PAPER_DOTS}")
    width_bytes = (mono.width + 7) // 8
    rows = bytearray()
    pixels = mono.load()
    assert pixels is not None
    for y in range(mono.height):
        for xb in range(width_bytes):
            byte = 0
            for bit in range(8):
                x = xb * 8 + bit
                if x < mono.width and not pixels[x, y]:
                    byte |= 0x80 >> bit
            rows.append(byte)
    return Raster(width_bytes, mono.height, bytes(rows), align)


# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True, slots=True)
class Init:
    """ESC @: settings back to their defaults (a new slip starts)."""


@dataclass(frozen=True, slots=True)
class Text:
    """Printable characters, decoded (GB18030 in Chinese mode, code page 437 otherwise)."""

    text: str


@dataclass(frozen=True, slots=True)
class NewLine:
    """LF: print the line buffer and advance one line."""


@dataclass(frozen=True, slots=True)
class PrintMode:
    """ESC ! n (or ESC E / GS ! / FS !): emphasis and character size; None leaves a setting as it was."""

    bold: bool | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class SetAlign:
    """ESC a n."""

    align: Align


@dataclass(frozen=True, slots=True)
class FeedLines:
    """ESC d n."""

    lines: int


@dataclass(frozen=True, slots=True)
class FeedDots:
    """ESC J n."""

    dots: int


@dataclass(frozen=True, slots=True)
class LineSpacing:
    """ESC 2 (default, None) or ESC 3 n dots."""

    dots: int | None


@dataclass(frozen=True, slots=True)
class ChineseMode:
    """FS & (on) / FS . (off)."""

    on: bool


@dataclass(frozen=True, slots=True)
class QrSetting:
    """GS ( k function 65/67/69: model, module size or error level."""

    function: int
    value: int


@dataclass(frozen=True, slots=True)
class QrStore:
    """GS ( k function 80: the symbol's data."""

    data: bytes


@dataclass(frozen=True, slots=True)
class QrPrint:
    """GS ( k function 81: print the stored symbol."""


@dataclass(frozen=True, slots=True)
class RasterImage:
    """GS v 0: a raster image."""

    raster: Raster


@dataclass(frozen=True, slots=True)
class Cut:
    """GS V: cut the paper (partial or full) after feeding ``feed`` dots."""

    partial: bool
    feed: int = 0


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """DLE EOT n."""

    kind: StatusKind


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid command that changes nothing the simulator renders (underline, code page, ...)."""

    name: str


Command: TypeAlias = (
    Init
    | Text
    | NewLine
    | PrintMode
    | SetAlign
    | FeedLines
    | FeedDots
    | LineSpacing
    | ChineseMode
    | QrSetting
    | QrStore
    | QrPrint
    | RasterImage
    | Cut
    | StatusQuery
    | Ignored
)


#: ESC commands with one parameter byte: rendered ones, then accepted ones that change nothing rendered.
_ESC_WITH_ONE_PARAMETER: Final = frozenset(map(ord, "!Ead" + "J3" + "-tMGR{V"))


class _MalformedError(Exception):
    """A malformed command of ``length`` bytes (what to skip to resynchronise)."""

    def __init__(self, message: str, length: int) -> None:
        super().__init__(message)
        self.length = length


class _IncompleteError(Exception):
    """The buffer ends inside a command: wait for more bytes."""


class EscPosParser:
    """Incremental ESC/POS parser: ``feed(bytes)`` returns the commands completed so far."""

    def __init__(self) -> None:
        self._buf = b""
        self._offset = 0  # stream offset of self._buf[0], for error messages
        self.chinese = False

    @property
    def pending(self) -> int:
        """Bytes held back because they end inside a command."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Command]:
        """Parse what can be parsed; EscPosSyntaxError (with the commands before it) on a malformed command."""
        buf = self._buf + data
        pos = 0
        out: list[Command] = []
        while pos < len(buf):
            try:
                command, end = self._one(buf, pos)
            except _IncompleteError:
                break
            except _MalformedError as err:
                # Resynchronise after the bad command (its first byte when its length is unknown), so
                # the rest of the stream is still read.
                skip = max(1, min(err.length, len(buf) - pos))
                self._buf = buf[pos + skip :]
                offset = self._offset + pos
                self._offset += pos + skip
                raise EscPosSyntaxError(str(err), offset, tuple(out)) from None
            if isinstance(command, ChineseMode):
                self.chinese = command.on
            elif isinstance(command, Init):
                self.chinese = False
            out.append(command)
            pos = end
        self._buf = buf[pos:]
        self._offset += pos
        return out

    def _one(self, buf: bytes, pos: int) -> tuple[Command, int]:  # noqa: PLR0911 - one return per byte class
        b = buf[pos]
        if b == ESC:
            return self._esc(buf, pos)
        if b == GS:
            return self._gs(buf, pos)
        if b == FS:
            return self._fs(buf, pos)
        if b == DLE:
            if _need(buf, pos, 2)[1] != EOT:
                raise _MalformedError(f"DLE {buf[pos + 1]:#04x}: only DLE EOT is supported", 2)
            kind = _need(buf, pos, 3)[2]
            if kind not in {1, 2, 3, 4}:
                raise _MalformedError(f"DLE EOT {kind}: n must be 1, 2, 3 or 4", 3)
            return StatusQuery(StatusKind(kind)), pos + 3
        if b == LF:
            return NewLine(), pos + 1
        if b in {CR, HT}:
            return Ignored("CR" if b == CR else "HT"), pos + 1
        if b < 0x20 or b == 0x7F:
            raise _MalformedError(f"control byte {b:#04x} is not an ESC/POS command", 1)
        return self._text(buf, pos)

    def _text(self, buf: bytes, pos: int) -> tuple[Command, int]:
        end = pos
        while end < len(buf) and buf[end] >= 0x20 and buf[end] != 0x7F:
            if buf[end] < 0x80 or not self.chinese:
                end += 1
                continue
            length = _gb18030_length(buf, end)
            if length == 0:
                if end > pos:
                    break  # the text before it first; the bad sequence raises on the next call
                raise _MalformedError(f"byte {buf[end]:#04x} does not start a GB18030 character", 1)
            if end + length > len(buf):
                if end > pos:
                    break
                raise _IncompleteError
            end += length
        raw = buf[pos:end]
        try:
            text = raw.decode("gb18030") if self.chinese else raw.decode("cp437")
        except UnicodeDecodeError as err:
            raise _MalformedError(f"invalid GB18030 text {raw[:8].hex()}", 1) from err
        return Text(text), end

    def _esc(self, buf: bytes, pos: int) -> tuple[Command, int]:  # noqa: C901, PLR0911 - one branch per command
        cmd = _need(buf, pos, 2)[1]
        if cmd == ord("@"):
            return Init(), pos + 2
        if cmd == ord("2"):
            return LineSpacing(None), pos + 2
        if cmd not in _ESC_WITH_ONE_PARAMETER:
            raise _MalformedError(f"unknown command ESC {cmd:#04x}", 2)
        n = _need(buf, pos, 3)[2]
        if cmd == ord("!"):
            return PrintMode(bold=bool(n & 0x08), width=2 if n & 0x20 else 1, height=2 if n & 0x10 else 1), pos + 3
        if cmd == ord("E"):
            return PrintMode(bold=bool(n & 1)), pos + 3
        if cmd == ord("a"):
            if n not in {0, 1, 2, 48, 49, 50}:
                raise _MalformedError(f"ESC a {n}: alignment must be 0, 1 or 2", 3)
            return SetAlign(Align(n % 48)), pos + 3
        if cmd == ord("d"):
            return FeedLines(n), pos + 3
        if cmd == ord("J"):
            return FeedDots(n), pos + 3
        if cmd == ord("3"):
            return LineSpacing(n), pos + 3
        return Ignored(f"ESC {chr(cmd)}"), pos + 3  # underline, code page, font, ...: nothing rendered

    def _gs(self, buf: bytes, pos: int) -> tuple[Command, int]:
        cmd = _need(buf, pos, 2)[1]
        if cmd == ord("!"):
            n = _need(buf, pos, 3)[2]
            width, height = (n >> 4) + 1, (n & 0x0F) + 1
            if width > 8 or height > 8:
                raise _MalformedError(f"GS ! {n:#04x}: character size must be 1..8 each way", 3)
            return PrintMode(width=width, height=height), pos + 3
        if cmd == ord("V"):
            m = _need(buf, pos, 3)[2]
            if m in {0, 1, 48, 49}:
                return Cut(partial=m in {1, 49}), pos + 3
            if m in {65, 66}:
                return Cut(partial=m == 66, feed=_need(buf, pos, 4)[3]), pos + 4
            raise _MalformedError(f"GS V {m}: cut mode must be 0, 1, 48, 49, 65 or 66", 3)
        if cmd == ord("("):
            return self._gs_paren(buf, pos)
        if cmd == ord("v"):
            return _raster(buf, pos)
        raise _MalformedError(f"unknown command GS {cmd:#04x}", 2)

    def _gs_paren(self, buf: bytes, pos: int) -> tuple[Command, int]:  # noqa: C901, PLR0912 - one branch per QR function
        head = _need(buf, pos, 5)
        if head[2] != ord("k"):
            raise _MalformedError(f"GS ( {head[2]:#04x}: only GS ( k (2D codes) is supported", 3)
        length = head[3] | head[4] << 8
        if length < 2:
            raise _MalformedError(f"GS ( k length {length}: at least cn and fn are needed", 5)
        if length - 3 > MAX_QR_BYTES:
            raise _MalformedError(f"GS ( k length {length}: a QR code holds at most {MAX_QR_BYTES} bytes", 5)
        body = _need(buf, pos, 5 + length)[5:]
        cn, fn, params = body[0], body[1], body[2:]
        end = pos + 5 + length
        if cn != 49:
            raise _MalformedError(f"GS ( k cn={cn}: only QR codes (cn 49) are supported", 5 + length)
        if fn == 65:
            if len(params) != 2 or params[0] not in {49, 50}:
                raise _MalformedError("GS ( k fn 65: model must be 49 or 50, then 0", 5 + length)
            return QrSetting(65, params[0]), end
        if fn == 67:
            if len(params) != 1 or not 1 <= params[0] <= 16:
                raise _MalformedError("GS ( k fn 67: module size must be 1..16 dots", 5 + length)
            return QrSetting(67, params[0]), end
        if fn == 69:
            if len(params) != 1 or params[0] not in {48, 49, 50, 51}:
                raise _MalformedError("GS ( k fn 69: error level must be 48..51", 5 + length)
            return QrSetting(69, params[0]), end
        if fn == 80:
            if not params or params[0] != 48:
                raise _MalformedError("GS ( k fn 80: m must be 48 before the data", 5 + length)
            return QrStore(bytes(params[1:])), end
        if fn in {81, 82}:
            if params != b"0":
                raise _MalformedError(f"GS ( k fn {fn}: m must be 48", 5 + length)
            return (QrPrint() if fn == 81 else Ignored("GS ( k fn 82")), end
        raise _MalformedError(f"GS ( k fn {fn}: unknown QR function", 5 + length)

    def _fs(self, buf: bytes, pos: int) -> tuple[Command, int]:
        cmd = _need(buf, pos, 2)[1]
        if cmd == ord("&"):
            return ChineseMode(on=True), pos + 2
        if cmd == ord("."):
            return ChineseMode(on=False), pos + 2
        if cmd == ord("!"):
            n = _need(buf, pos, 3)[2]
            return PrintMode(width=2 if n & 0x04 else 1, height=2 if n & 0x08 else 1), pos + 3
        if cmd in {ord("C"), ord("-")}:
            _need(buf, pos, 3)
            return Ignored(f"FS {chr(cmd)}"), pos + 3
        raise _MalformedError(f"unknown command FS {cmd:#04x}", 2)


def _need(buf: bytes, pos: int, count: int) -> bytes:
    """The ``count`` bytes from ``pos``; _IncompleteError (wait for more) when the buffer ends before."""
    if len(buf) - pos < count:
        raise _IncompleteError
    return buf[pos : pos + count]


def _raster(buf: bytes, pos: int) -> tuple[Command, int]:
    head = _need(buf, pos, 8)
    if head[2] not in {ord("0"), 0}:
        raise _MalformedError(f"GS v {head[2]:#04x}: only GS v 0 is supported", 3)
    m = head[3]
    if m not in {0, 1, 2, 3, 48, 49, 50, 51}:
        raise _MalformedError(f"GS v 0 m={m}: density must be 0..3", 4)
    width = head[4] | head[5] << 8
    height = head[6] | head[7] << 8
    if not 1 <= width <= MAX_RASTER_WIDTH_BYTES:
        raise _MalformedError(f"GS v 0 width {width} bytes: the head has 1..{MAX_RASTER_WIDTH_BYTES}", 8)
    if not 1 <= height <= MAX_RASTER_HEIGHT:
        raise _MalformedError(f"GS v 0 height {height}: must be 1..{MAX_RASTER_HEIGHT} dots", 8)
    data = _need(buf, pos, 8 + width * height)[8:]
    return RasterImage(Raster(width, height, data)), pos + 8 + width * height


def _gb18030_length(buf: bytes, pos: int) -> int:
    """Length (2 or 4) of the GB18030 character at ``pos``, 0 if that is no lead byte; may pass the end."""
    lead = buf[pos]
    if not 0x81 <= lead <= 0xFE:
        return 0
    if pos + 1 >= len(buf):
        return 2  # unknown yet: the caller waits for more
    second = buf[pos + 1]
    if 0x30 <= second <= 0x39:
        return 4
    if 0x40 <= second <= 0xFE and second != 0x7F:
        return 2
    return 0
