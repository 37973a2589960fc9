"""A thermal receipt printer on a TCP port (``socket://``, as a network printer on port 9100 is reached).

It parses the ESC/POS stream it receives (receipt_printer.protocol.EscPosParser), answers DLE EOT
status queries, and renders each slip, up to its cut, to a 576-dot (80 mm) image with the Debian
Noto Sans Mono CJK font, keeping the slip's text and QR payloads for tests. Named faults (device_kit):
paper near end, paper out (now or after N more lines: mid-slip), cover open, offline (no answer,
data lost) and slow (seconds per printed line).
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qrcode
from PIL import Image, ImageDraw, ImageFont

from device_kit.clock import Clock, SystemClock
from device_kit.faults import FaultSet, FaultSpec
from device_kit.server import SimulatorServer
from receipt_printer import protocol
from receipt_printer.errors import EscPosSyntaxError
from receipt_printer.models import Align, PrinterStatus, Raster
from receipt_printer.protocol import (
    PAPER_DOTS,
    Cut,
    EscPosParser,
    FeedDots,
    FeedLines,
    Init,
    LineSpacing,
    NewLine,
    PrintMode,
    QrPrint,
    QrSetting,
    QrStore,
    RasterImage,
    SetAlign,
    StatusQuery,
    Text,
)

if TYPE_CHECKING:
    import socket

    from receipt_printer.protocol import Command

_log = logging.getLogger("receipt_printer.sim")
_wire = logging.getLogger("receipt_printer.sim.wire")

FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
FONT_BOLD_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
#: Index of "Noto Sans Mono CJK SC" in the collection: half-width ASCII, full-width Hanzi, as a printer's font.
FONT_INDEX = 7
CHAR_HEIGHT = 24
DEFAULT_LINE_DOTS = 30
MARGIN_DOTS = 16

FAULTS = (
    FaultSpec("paper_near_end", "纸将尽 / paper near end: status only, slips still print"),
    FaultSpec(
        "paper_out",
        "缺纸 / paper out, now or after N more printed lines (mid-slip); clear = paper refilled",
        {"after_lines": 0},
    ),
    FaultSpec("cover_open", "纸仓盖打开 / cover open: nothing prints"),
    FaultSpec("offline", "脱机 / offline: no status answers, data lost"),
    FaultSpec("slow", "打印缓慢 / slow: seconds per printed line", {"line_s": 0.2}),
)


@dataclass
class _Segment:
    text: str
    bold: bool
    width: int
    height: int


@dataclass
class _Line:
    segments: list[_Segment]
    align: Align


@dataclass
class _Picture:
    image: Image.Image
    align: Align


@dataclass
class _Gap:
    dots: int


@dataclass
class PrintedSlip:
    """One slip as it came out: its text lines, the QR payloads, its image; ``complete`` False if cut short.

    The image is rendered when first asked for (``image``, ``png()``, ``save()``): a real printer's
    rendering costs the kiosk nothing, so an in-process simulator must not take the CPU for it while
    the kiosk is timed.
    """

    number: int
    lines: list[str]
    qr_payloads: list[str]
    complete: bool
    items: list[_Line | _Picture | _Gap] = field(repr=False, default_factory=list)
    png_path: Path | None = None

    @functools.cached_property
    def image(self) -> Image.Image:
        """The slip as printed: 576 dots of paper plus a margin."""
        return _render(self.items)

    @property
    def text(self) -> str:
        """The printed text, one line per printed line."""
        return "\n".join(self.lines)

    def save(self, path: Path) -> Path:
        """Write the PNG to ``path`` (and remember where)."""
        self.image.save(path)
        self.png_path = path
        return path

    def png(self) -> bytes:
        """The slip as PNG bytes."""
        out = io.BytesIO()
        self.image.save(out, format="PNG")
        return out.getvalue()


@dataclass
class _Page:
    """One connection's print state: settings, the line being built, and the slip so far."""

    align: Align = Align.LEFT
    bold: bool = False
    width: int = 1
    height: int = 1
    line_dots: int = DEFAULT_LINE_DOTS
    qr_module: int = 3
    qr_level: int = 49
    qr_data: bytes = b""
    segments: list[_Segment] = field(default_factory=list)
    items: list[_Line | _Picture | _Gap] = field(default_factory=list)
    qr_payloads: list[str] = field(default_factory=list)
    lost: bool = False  # paper ran out: the rest of this slip goes nowhere

    def reset_style(self) -> None:
        self.align, self.bold, self.width, self.height = Align.LEFT, False, 1, 1
        self.line_dots, self.qr_module, self.qr_level = DEFAULT_LINE_DOTS, 3, 49


class PrinterSimulator(SimulatorServer):
    """In-process receipt printer; ``start()`` it (or ``with``) and open ``sim.url`` with the driver."""

    name = "printer-sim"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        control_port: int | None = None,
        output_dir: Path | None = None,
        render_on_cut: bool = True,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(FaultSet(FAULTS), host, port, control_port=control_port)
        #: A slow printer's lines take their time on this clock (a ManualClock in tests).
        self.clock: Clock = clock or SystemClock()
        self.output_dir = output_dir
        #: Write each slip's PNG at its cut; False leaves it to ``save_pngs()`` (a simulator in the timed process).
        self.render_on_cut = render_on_cut
        self._cond = threading.Condition()
        self._slips: list[PrintedSlip] = []
        self._numbered = 0
        self._errors: list[str] = []
        self._lines_left: int | None = None
        self._stopping = threading.Event()
        self.status_queries = 0

    # ------------------------------------------------------------ what tests and technicians read

    @property
    def slips(self) -> list[PrintedSlip]:
        """Every slip printed so far (complete or cut short), oldest first."""
        with self._cond:
            return list(self._slips)

    @property
    def errors(self) -> list[str]:
        """Every malformed command received, as the parser described it."""
        with self._cond:
            return list(self._errors)

    def wait_for_slips(self, count: int, timeout: float) -> list[PrintedSlip]:
        """Block until ``count`` slips are out (or ``timeout`` passes); returns the slips."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._slips) >= count, timeout)
            return list(self._slips)

    def save_pngs(self) -> list[Path]:
        """Write the PNG of every slip not written yet into ``output_dir``; returns the paths."""
        if self.output_dir is None:
            return []
        return [
            slip.save(self.output_dir / f"slip-{slip.number:04d}.png") for slip in self.slips if slip.png_path is None
        ]

    def status(self) -> PrinterStatus:
        """The printer's state as DLE EOT reports it."""
        f = self.faults_set
        return PrinterStatus(
            online=not f.active("offline"),
            cover_open=f.active("cover_open"),
            paper_near_end=f.active("paper_near_end"),
            paper_out=self._paper_out(),
        )

    def control_status(self) -> dict[str, Any]:
        """Status flags and counters for ``sim-ctl status``."""
        status = self.status()
        return {"status": list(status.problems()) or ["ready"], "slips": len(self.slips), "errors": len(self.errors)}

    def fault_changed(self, name: str | None) -> None:
        """Paper out: count the lines left from now on; cleared means refilled."""
        if name in {"paper_out", None}:
            active = self.faults_set.active("paper_out")
            self._lines_left = int(self.faults_set.param("paper_out", "after_lines")) if active else None

    def stop(self) -> None:
        """Stop (a slow print in progress is abandoned)."""
        self._stopping.set()
        super().stop()
        self._stopping.clear()

    # ------------------------------------------------------------ the printer's side of the wire

    def serve_connection(self, conn: socket.socket) -> None:
        """Read the stream, execute each command; status answers go back on the same connection."""
        parser = EscPosParser()
        page = _Page()
        while self.running:
            data = conn.recv(65536)
            if not data:
                break
            _wire.debug(">>> %s", data.hex(" "))
            if self.faults_set.active("offline"):
                continue  # a printer that is off line neither prints nor answers
            for command in self._parse(parser, data):
                self._execute(command, page, conn)
        if page.items and not page.lost:
            self._finish(page, complete=False)  # the link closed before the cut

    def _parse(self, parser: EscPosParser, data: bytes) -> list[Command]:
        commands: list[Command] = []
        while True:
            try:
                commands.extend(parser.feed(data))
            except EscPosSyntaxError as err:
                commands.extend(err.parsed)  # type: ignore[arg-type]
                _log.warning("malformed ESC/POS: %s", err)
                with self._cond:
                    self._errors.append(str(err))
                data = b""
                continue
            return commands

    def _execute(self, command: Command, page: _Page, conn: socket.socket) -> None:  # noqa: C901, PLR0912 - one branch per command
        if isinstance(command, StatusQuery):
            self.status_queries += 1
            answer = protocol.status_byte(command.kind, self.status())
            _wire.debug("<<< %02x", answer)
            conn.sendall(bytes((answer,)))
            return
        if isinstance(command, Init):
            page.reset_style()
            page.segments.clear()
            page.lost = False  # a new slip begins
        elif isinstance(command, PrintMode):
            page.bold = page.bold if command.bold is None else command.bold
            page.width = page.width if command.width is None else command.width
            page.height = page.height if command.height is None else command.height
        elif isinstance(command, SetAlign):
            page.align = command.align
        elif isinstance(command, LineSpacing):
            page.line_dots = DEFAULT_LINE_DOTS if command.dots is None else command.dots
        elif isinstance(command, Text):
            page.segments.append(_Segment(command.text, page.bold, page.width, page.height))
        elif isinstance(command, NewLine):
            self._print(page, _Line(page.segments, page.align))
            page.segments = []
        elif isinstance(command, FeedLines):
            self._print(page, _Gap(command.lines * page.line_dots))
        elif isinstance(command, FeedDots):
            self._print(page, _Gap(command.dots))
        elif isinstance(command, QrSetting):
            if command.function == 67:
                page.qr_module = command.value
            elif command.function == 69:
                page.qr_level = command.value
        elif isinstance(command, QrStore):
            page.qr_data = command.data
        elif isinstance(command, QrPrint):
            self._print(page, _Picture(_qr_image(page.qr_data, page.qr_module, page.qr_level), page.align))
            if not page.lost:
                page.qr_payloads.append(page.qr_data.decode("utf-8", "replace"))
        elif isinstance(command, RasterImage):
            self._print(page, _Picture(_raster_image(command.raster), page.align))
        elif isinstance(command, Cut):
            if page.segments:
                self._print(page, _Line(page.segments, page.align))
                page.segments = []
            if page.lost or not self.status().ready:
                return  # no paper (the cut-short slip is already recorded) or cover open: no cut
            self._finish(page, complete=True)
        # Chinese mode is the parser's business; Ignored commands change nothing rendered.

    def _print(self, page: _Page, item: _Line | _Picture | _Gap) -> None:
        """Put one line (or picture, or feed) on paper: unless there is none, or the cover is open."""
        if page.lost:
            return
        status = self.status()
        if not status.ready:
            if status.paper_out and page.items:
                _log.info("paper ran out mid-slip")
                page.lost = True
                self._finish(page, complete=False)
            return
        if self.faults_set.active("slow"):
            self.clock.sleep(float(self.faults_set.param("slow", "line_s")), stop=self._stopping)
        page.items.append(item)
        if self._lines_left is not None:
            self._lines_left = max(0, self._lines_left - 1)

    def _paper_out(self) -> bool:
        return self.faults_set.active("paper_out") and self._lines_left == 0

    def _finish(self, page: _Page, *, complete: bool) -> None:
        """Record what is on paper as one slip (its PNG now only when ``render_on_cut``) and start a new one."""
        lines = [_line_text(item) for item in page.items if isinstance(item, _Line)]
        with self._cond:
            self._numbered += 1
            number = self._numbered
        slip = PrintedSlip(number, lines, list(page.qr_payloads), complete, list(page.items))
        if self.output_dir is not None and self.render_on_cut:
            slip.save(self.output_dir / f"slip-{slip.number:04d}.png")
        with self._cond:
            self._slips.append(slip)
            self._cond.notify_all()
        _log.info("slip %d out (%s, %d lines)", number, "complete" if complete else "cut short", len(lines))
        page.items = []
        page.qr_payloads = []
        if complete:
            page.lost = False


def _line_text(line: _Line) -> str:
    return "".join(segment.text for segment in line.segments).rstrip()


_FONTS: dict[tuple[int, bool], ImageFont.FreeTypeFont] = {}


def _font(size: int, *, bold: bool) -> ImageFont.FreeTypeFont:
    key = (size, bold)
    if key not in _FONTS:
        _FONTS[key] = ImageFont.truetype(str(FONT_BOLD_PATH if bold else FONT_PATH), size, index=FONT_INDEX)
    return _FONTS[key]


def _render_line(line: _Line) -> list[Image.Image]:
    """A text line as one or more strips 576 dots wide (wrapped where the paper ends, as the printer does)."""
    usable = PAPER_DOTS
    strips: list[Image.Image] = []
    pieces: list[tuple[Image.Image, int]] = []
    x = 0

    def flush() -> None:
        nonlocal pieces, x
        height = max((p.height for p, _ in pieces), default=CHAR_HEIGHT)
        strip = Image.new("L", (PAPER_DOTS, height + (DEFAULT_LINE_DOTS - CHAR_HEIGHT)), 255)
        offset = {Align.LEFT: 0, Align.CENTER: (usable - x) // 2, Align.RIGHT: usable - x}[line.align]
        for piece, at in pieces:
            strip.paste(piece, (offset + at, height - piece.height))
        strips.append(strip)
        pieces, x = [], 0

    for segment in line.segments:
        size = CHAR_HEIGHT * segment.height
        font = _font(size, bold=segment.bold)
        for ch in segment.text:
            advance = round(font.getlength(ch) * segment.width / segment.height)
            if x + advance > usable:
                flush()
            glyph = Image.new("L", (max(1, round(font.getlength(ch))), size * 3 // 2), 255)
            ImageDraw.Draw(glyph).text((0, 0), ch, font=font, fill=0)
            if segment.width != segment.height:
                glyph = glyph.resize((max(1, advance), glyph.height))
            pieces.append((glyph, x))
            x += advance
    flush()
    return strips


def _render(items: list[_Line | _Picture | _Gap]) -> Image.Image:
    parts: list[Image.Image] = []
    for item in items:
        if isinstance(item, _Line):
            parts.extend(_render_line(item))
        elif isinstance(item, _Gap):
            parts.append(Image.new("L", (PAPER_DOTS, max(1, item.dots)), 255))
        else:
            strip = Image.new("L", (PAPER_DOTS, item.image.height + 6), 255)
            x = {Align.LEFT: 0, Align.CENTER: (PAPER_DOTS - item.image.width) // 2}.get(
                item.align, PAPER_DOTS - item.image.width
            )
            strip.paste(item.image, (max(0, x), 3))
            parts.append(strip)
    height = sum(p.height for p in parts) + 2 * MARGIN_DOTS
    sheet = Image.new("L", (PAPER_DOTS + 2 * MARGIN_DOTS, height), 255)
    y = MARGIN_DOTS
    for part in parts:
        sheet.paste(part, (MARGIN_DOTS, y))
        y += part.height
    return sheet


def _qr_image(data: bytes, module: int, level: int) -> Image.Image:
    levels = {48: qrcode.constants.ERROR_CORRECT_L, 49: qrcode.constants.ERROR_CORRECT_M}
    levels |= {50: qrcode.constants.ERROR_CORRECT_Q, 51: qrcode.constants.ERROR_CORRECT_H}
    code = qrcode.QRCode(error_correction=levels[level], box_size=module, border=4)
    code.add_data(data)
    code.make(fit=True)
    image: Image.Image = code.make_image(fill_color="black", back_color="white").get_image()
    return image.convert("L")


def _raster_image(raster: Raster) -> Image.Image:
    image = Image.new("L", (raster.width_bytes * 8, raster.height), 255)
    pixels = image.load()
    assert pixels is not None
    for y in range(raster.height):
        for xb in range(raster.width_bytes):
            byte = raster.data[y * raster.width_bytes + xb]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    pixels[xb * 8 + bit, y] = 0
    return image
