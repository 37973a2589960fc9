"""Hostile import files, built small and fast: xlsx and zip bombs for the input-limit tests and bench/input_bombs.py.

Real archives throughout (zipfile reads them as any other); the huge ones reuse one deflated block for
every entry, written by a minimal zip writer, so a 3 GB bomb takes milliseconds to make.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

from openpyxl import Workbook

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

HEADER = ["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"]
_MAIN = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def xlsx(path: Path, rows: Sequence[Sequence[object]], *, far_cell: str | None = None) -> Path:
    """A workbook of `rows` (openpyxl), with one more cell at `far_cell` (e.g. XFD2000) if given."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    if far_cell:
        sheet[far_cell] = "x"
    workbook.save(path)
    return path


def xlsx_with_sheet_xml(path: Path, sheet_xml: bytes) -> Path:
    """A valid workbook whose first sheet's XML is `sheet_xml` (to write what openpyxl never would)."""
    template = io.BytesIO()
    Workbook().save(template)
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = sheet_xml if info.filename == "xl/worksheets/sheet1.xml" else source.read(info)
            target.writestr(info.filename, data)
    return path


def header_row() -> bytes:
    cells = b"".join(
        b'<c r="%s1" t="inlineStr"><is><t>%s</t></is></c>' % (chr(65 + i).encode(), name.encode())
        for i, name in enumerate(HEADER)
    )
    return b'<row r="1">' + cells + b"</row>"


def far_cell_without_dimension(path: Path, reference: str = "XFD2000", quote: bytes = b'"') -> Path:
    """The XFD2000 bomb with no <dimension> to give it away, the far reference spelt with `quote`."""
    far = b'<row r="2"><c\nr=%s%s%s t="inlineStr"><is><t>x</t></is></c></row>' % (quote, reference.encode(), quote)
    return xlsx_with_sheet_xml(path, _MAIN + b"<sheetData>" + header_row() + far + b"</sheetData></worksheet>")


def declared_dimension(path: Path, reference: str = "A1:XFD1048576") -> Path:
    """A tiny sheet that declares a huge <dimension>."""
    xml = _MAIN + b'<dimension ref="%s"/><sheetData>' % reference.encode() + header_row() + b"</sheetData></worksheet>"
    return xlsx_with_sheet_xml(path, xml)


def many_cells(path: Path, rows: int = 6_000, per_row: int = 1_000) -> Path:
    """rows x per_row empty cells without references (<c/>): millions of cells in a few tens of KB."""
    row = b"<row>" + b"<c/>" * per_row + b"</row>"
    xml = _MAIN + b"<sheetData>" + header_row() + row * rows + b"</sheetData></worksheet>"
    return xlsx_with_sheet_xml(path, xml)


def _dos_time() -> tuple[int, int]:
    return (0 << 11) | (0 << 5), ((2025 - 1980) << 9) | (1 << 5) | 1


def raw_zip(path: Path, entries: Sequence[tuple[str, bytes, int, int]]) -> Path:
    """A zip of (name, deflated data, CRC-32, uncompressed size) entries, data written as given."""
    time, date = _dos_time()
    central = bytearray()
    with path.open("wb") as out:
        for name, data, crc, size in entries:
            offset = out.tell()
            encoded = name.encode()
            out.write(
                struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0x800, 8, time, date, crc, len(data), size, len(encoded), 0)
            )
            out.write(encoded)
            out.write(data)
            central += struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0x800,
                8,
                time,
                date,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            central += encoded
        start = out.tell()
        out.write(central)
        count = len(entries)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), start, 0))
    return path


def zeros_entry(name: str, size: int) -> tuple[str, bytes, int, int]:
    """An entry of `size` zero bytes, deflated (10 MB of zeros is ~10 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    data = bytearray()
    crc = 0
    left = size
    while left:
        piece = block[: min(left, len(block))]
        data += compressor.compress(piece)
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    data += compressor.flush()
    return name, bytes(data), crc, size


def huge_total(path: Path, entries: int = 300, each: int = 10 * 1024 * 1024) -> Path:
    """`entries` photos of `each` zero bytes: 3 GB unpacked from a ~3 MB file (one block reused)."""
    _name, data, crc, size = zeros_entry("x", each)
    return raw_zip(path, [(f"{110101199003070000 + i}.jpg", data, crc, size) for i in range(entries)])


def many_entries(path: Path, count: int = 20_000) -> Path:
    """`count` tiny photo entries."""
    _name, data, crc, size = zeros_entry("x", 16)
    return raw_zip(path, [(f"{i:018d}.jpg", data, crc, size) for i in range(count)])


def nested(path: Path, depth: int = 3) -> Path:
    """A zip holding a zip holding a zip ... each with a 10 MB zero-filled photo (42.zip in small)."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("110101199003071234.jpg", bytes(10 * 1024 * 1024))
    for level in range(depth):
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
            for copy in range(4):
                archive.writestr(f"level{level}_{copy}.zip", inner.getvalue())
        inner = outer
    path.write_bytes(inner.getvalue())
    return path


def traversal(path: Path, name: str = "../../110101199003071234.jpg") -> Path:
    """A zip whose one entry climbs out of the folder it would be extracted to."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), b"\xff\xd8\xff\xe0 photo")
    return path
