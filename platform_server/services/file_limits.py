"""Bounds on imported files, checked before anything is extracted or allocated: workbooks, CSV, photo archives.

A 5 KB .xlsx with one cell at XFD2000 makes calamine allocate the whole A1:XFD2000 range (1 GB); a
small zip can declare gigabytes or millions of entries. So before a workbook is parsed its zip
directory is checked (entries, uncompressed sizes, compression methods) and its first sheet's XML is
streamed once to find the declared <dimension> and the largest row and column any cell names; before
a photo archive is read its central directory is checked (entries, total uncompressed size, names
that climb out of the folder, nested archives). Standard library only: the invitation reader process
imports this before anything heavy. The limits are documented in docs/platform-limits.md.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING
from xml.etree import ElementTree as ET

from platform_server.errors import ImportRefusedError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# What calamine allocates is the bounding box of every cell the sheet names (about 32 bytes a cell,
# then a Python object per cell): 5 million cells is some 400 MB at the peak, far above any
# invitation list (100 000 experts x 6 columns = 600 000 cells).
MAX_SHEET_ROWS = 1_000_000
MAX_SHEET_COLUMNS = 1_024
MAX_SHEET_CELLS = 5_000_000


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much a zip may hold: entries, uncompressed bytes in all and per entry."""

    max_entries: int
    max_total_bytes: int
    max_entry_bytes: int


# An .xlsx is a zip of XML parts: a workbook has a few dozen; its sheets are at most MAX_SHEET_CELLS.
XLSX_LIMITS = ArchiveLimits(max_entries=1_000, max_total_bytes=1024 * 1024 * 1024, max_entry_bytes=768 * 1024 * 1024)
# Reference photos: a few per invited expert, each at most MAX_PHOTO_BYTES (imports.py).
PHOTO_LIMITS = ArchiveLimits(
    max_entries=10_000, max_total_bytes=2 * 1024 * 1024 * 1024, max_entry_bytes=10 * 1024 * 1024
)
NESTED_SUFFIXES = (".zip", ".rar", ".7z", ".gz", ".tgz", ".bz2", ".xz", ".tar", ".jar", ".xlsx", ".docx")
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
# A central directory entry is 46 bytes and its name and extra field: 256 bytes each allows long names
# and keeps what zipfile builds from a lying directory bounded (at most 256 / 46 entries per allowed one).
_CENTRAL_BYTES_PER_ENTRY = 256
_PART_CAP = 16 * 1024 * 1024  # workbook.xml and its relationships: small XML parts
_CHUNK = 1024 * 1024


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MB"


def _central_directory(path: Path) -> tuple[int, int]:
    """(entries, central directory bytes) from the zip's end records, read before zipfile builds its list.

    zipfile reads every central directory entry into memory when it opens an archive; these two
    numbers bound that before it happens.
    """
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        tail_size = min(size, _EOCD.size + 65_535 + _EOCD64_LOCATOR.size)
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise ImportRefusedError(f"{path.name} 不是有效的 zip 文件 / {path.name} is not a valid zip file")
        _sig, _disk, _cd_disk, _here, entries, cd_bytes, _offset, _comment = _EOCD.unpack_from(tail, at)
        locator = at - _EOCD64_LOCATOR.size
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            _lsig, _ldisk, eocd64_at, _disks = _EOCD64_LOCATOR.unpack_from(tail, locator)
            handle.seek(eocd64_at)
            record = handle.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                fields = _EOCD64.unpack(record)
                entries, cd_bytes = fields[7], fields[8]
    return int(entries), int(cd_bytes)


def open_zip(path: Path, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The archive, opened only once its end record says its directory is within `limits`."""
    entries, cd_bytes = _central_directory(path)
    most = limits.max_entries
    if entries > most or cd_bytes > most * _CENTRAL_BYTES_PER_ENTRY:
        raise ImportRefusedError(
            f"{path.name} 文件数过多（{entries}个，上限{most}个） / {path.name} holds {entries} entries "
            f"(a {cd_bytes}-byte directory); the limit is {most}"
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ImportRefusedError(f"{path.name} 不是有效的 zip 文件 / {path.name} is not a valid zip file") from err


def unsafe_name(name: str) -> str:
    """Why an entry name cannot be trusted as a file name ("" if it can): absolute, '..', a drive, NUL."""
    if "\x00" in name:
        return "contains a NUL character"
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or name.startswith(("/", "\\")):
        return "is an absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "names a drive"
    if ".." in parts.parts:
        return "climbs out of the folder ('..')"
    return ""


def check_zip(archive: zipfile.ZipFile, limits: ArchiveLimits, label: str, *, nested_allowed: bool = False) -> None:
    """Refuse an archive whose central directory breaks `limits` or names an unsafe or nested entry.

    Uses only the directory (sizes as declared; zipfile then never returns more than an entry
    declares, and a CRC mismatch fails the read), so nothing is decompressed to decide.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ImportRefusedError(
            f"{label} 文件数过多（{len(infos)}个） / {label} holds {len(infos)} entries; "
            f"the limit is {limits.max_entries}"
        )
    total = 0
    for info in infos:
        shown = repr(info.filename[:80])
        problem = unsafe_name(info.filename)
        if problem:
            raise ImportRefusedError(f"{label} 含有不安全的路径 {shown} / {label}: entry {shown} {problem}")
        if info.is_dir():
            continue
        if not nested_allowed and info.filename.lower().endswith(NESTED_SUFFIXES):
            raise ImportRefusedError(
                f"{label} 内含压缩包 {shown} / {label}: entry {shown} is an archive; nested archives are not opened"
            )
        if info.flag_bits & 0x1:
            raise ImportRefusedError(f"{label} 含有加密文件 {shown} / {label}: entry {shown} is encrypted")
        if info.compress_type not in {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}:
            raise ImportRefusedError(
                f"{label}: entry {shown} uses compression method {info.compress_type}; only stored and deflate"
            )
        if info.file_size > limits.max_entry_bytes:
            raise ImportRefusedError(
                f"{label} 中 {shown} 过大 / {label}: entry {shown} unpacks to {_mb(info.file_size)}; "
                f"the limit is {_mb(limits.max_entry_bytes)}"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ImportRefusedError(
                f"{label} 解压后过大 / {label} unpacks to more than {_mb(limits.max_total_bytes)} "
                f"(declared sizes in its directory); nothing extracted"
            )


def check_folder(folder: Path, limits: ArchiveLimits) -> None:
    """Refuse a photo folder with too many entries or bytes, or a link that leads out of it."""
    root = folder.resolve()
    total = 0
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            count += 1
            if count > limits.max_entries:
                raise ImportRefusedError(
                    f"{folder.name} 文件数过多 / {folder.name} holds more than {limits.max_entries} entries"
                )
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                target = (folder / entry.name).resolve()
                if not target.is_relative_to(root):
                    raise ImportRefusedError(
                        f"{folder.name} 中 {entry.name!r} 指向文件夹之外 / {entry.name!r} links outside {folder.name}"
                    )
                info = target.stat()
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
            if total > limits.max_total_bytes:
                raise ImportRefusedError(
                    f"{folder.name} 过大 / {folder.name} holds more than {_mb(limits.max_total_bytes)} of files"
                )


# --- Workbooks -----------------------------------------------------------------------------------

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DIMENSION = re.compile(
    rb'<(?:[A-Za-z_][\w.-]*:)?dimension\s+ref="([A-Za-z]{1,3})?([0-9]{0,7}):?([A-Za-z]{0,3})([0-9]{0,7})"'
)
_ROOT_PREFIX = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet[\s>]")
# Any spelling XML allows: r="A1", r = 'a1', a newline before r. (Rows' references are digits only.)
_COLUMNS = re.compile(rb"""\sr\s*=\s*["']([A-Za-z]+)[0-9]""")  # a cell's reference
_ROW_NUMBERS = re.compile(rb"""\sr\s*=\s*["'][A-Za-z]*([0-9]+)["']""")  # a row's or a cell's row number


def column_number(letters: str) -> int:
    """A1-style column letters as a 1-based number (A = 1, XFD = 16384)."""
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


@dataclass(frozen=True, slots=True)
class SheetExtent:
    """What a sheet's XML names: its largest row and column, cells and rows, and cells or rows without a reference."""

    rows: int
    columns: int
    cells: int
    unreferenced: int


def _first_sheet_part(archive: zipfile.ZipFile) -> str | None:
    """The zip entry of the workbook's first sheet (the one calamine reads), or None if not found."""
    try:
        workbook = ET.fromstring(_small_part(archive, "xl/workbook.xml"))  # noqa: S314  (bounded, expat guards entities)
        rels = ET.fromstring(_small_part(archive, "xl/_rels/workbook.xml.rels"))  # noqa: S314
    except (KeyError, ET.ParseError):
        return None
    sheet = workbook.find(f"{{{_MAIN_NS}}}sheets/{{{_MAIN_NS}}}sheet")
    if sheet is None:
        return None
    rel_id = sheet.get(f"{{{_REL_NS}}}id")
    for rel in rels.findall(f"{{{_PKG_REL_NS}}}Relationship"):
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
    return None


def _small_part(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > _PART_CAP:
        raise ImportRefusedError(
            f"workbook part {name} unpacks to {_mb(info.file_size)}; the limit is {_mb(_PART_CAP)}"
        )
    return archive.read(info)


def _refuse_dimension(label: str, how: str, rows: int, columns: int) -> None:
    """ImportRefusedError if a sheet of `rows` x `columns` (from A1) is over the limits; `how` says who says so."""
    cells = rows * columns
    if rows > MAX_SHEET_ROWS or columns > MAX_SHEET_COLUMNS or cells > MAX_SHEET_CELLS:
        extent = f"A1:{column_letters(columns)}{rows}"
        raise ImportRefusedError(
            f"{label} 工作表范围过大（{extent}） / {label}: the sheet spans {extent} ({how}) = {rows} rows x "
            f"{columns} columns = {cells} cells; the limits are {MAX_SHEET_ROWS} rows, {MAX_SHEET_COLUMNS} "
            f"columns and {MAX_SHEET_CELLS} cells"
        )


def column_letters(number: int) -> str:
    """A 1-based column number as A1-style letters (16384 = XFD)."""
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters or "A"


def _greater_than(number: int) -> bytes:
    """A regex (bytes) matching a decimal number greater than `number` (no leading zeros)."""
    digits = str(number)
    options = [b"[1-9][0-9]{%d,}" % len(digits)]
    for position, digit in enumerate(digits):
        if digit != "9":
            rest = len(digits) - position - 1
            options.append(digits[:position].encode() + b"[%d-9]" % (int(digit) + 1) + b"[0-9]" * rest)
    return b"(?:" + b"|".join(options) + b")"


# The quick pass: a sheet whose cells all carry references, none beyond column Z and none below
# _QUICK_ROWS, is within MAX_SHEET_CELLS, and three searches (no match objects) say so. Anything else
# (wide or long sheets, cells without references) is measured exactly by a second pass.
_QUICK_ROWS = MAX_SHEET_CELLS // 26
_WIDE = re.compile(rb' r="[A-Za-z]{2}')
_LONG = re.compile(rb' r="[A-Za-z]?0*' + _greater_than(_QUICK_ROWS) + rb'"')


def _first_chunk_checks(data: bytes, label: str) -> bytes:
    """Refuse an oversized declared <dimension>; return the sheet's namespace prefix ("x:" or "")."""
    root = _ROOT_PREFIX.search(data)
    declared = _DIMENSION.search(data)
    if declared is not None:
        first_col, first_row, last_col, last_row = (g.decode() for g in declared.groups())
        last_col, last_row = (last_col or first_col or "A").upper(), last_row or first_row or "1"
        _refuse_dimension(label, "its declared <dimension>", int(last_row), column_number(last_col))
    return (root.group(1) + b":") if root and root.group(1) else b""


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in pieces of about _CHUNK bytes, each cut before a '<' so no tag is split."""
    tail = b""
    while block := stream.read(_CHUNK):
        data = tail + block
        cut = data.rfind(b"<")
        data, tail = (data[:cut], data[cut:]) if cut > 0 else (data, b"")
        yield data
    if tail:
        yield tail


def quick_within_limits(stream: IO[bytes], label: str) -> bool:
    """True when three searches show the sheet is small enough; False when it needs measuring."""
    unreferenced: re.Pattern[bytes] | None = None
    for data in _chunks(stream):
        if unreferenced is None:
            prefix = re.escape(_first_chunk_checks(data, label))
            # A cell not written as <c r="...: no reference, or one the two searches above would miss.
            unreferenced = re.compile(rb"<" + prefix + rb'c(?! r=")[\s/>]')
        if _WIDE.search(data) or _LONG.search(data) or unreferenced.search(data):
            return False
    return True


def sheet_extent(stream: IO[bytes], label: str) -> SheetExtent:
    """Measure a sheet's XML in one streamed pass; refuse as soon as it is over a limit.

    The extent is what calamine would allocate: from A1 to the largest row and column any row or cell
    names. A cell without a reference follows the one before it (in its row, or in the next row), so
    those are counted apart.
    """
    columns: set[bytes] = set()
    rows = width = cells = references = 0
    prefix: bytes | None = None
    for data in _chunks(stream):
        if prefix is None:
            prefix = _first_chunk_checks(data, label)
        named = _COLUMNS.findall(data)
        references += len(named)
        columns.update(named)
        rows = max(rows, max(map(int, _ROW_NUMBERS.findall(data)), default=0))
        if columns:
            width = max(map(column_number, (c.decode().upper() for c in columns)))
        _refuse_dimension(label, "named by its cells", rows, width)
        # "<c" also opens a few other elements (<cols>, <cfRule>, ...): those few widen the bound below
        # by as many. Rows need no count: a row without a reference holds no cell or an unreferenced one.
        cells += data.count(b"<" + prefix + b"c")
    return SheetExtent(rows, width, cells, max(cells - references, 0))


def check_workbook(path: Path) -> None:
    """Refuse an .xlsx whose zip or first sheet is over the limits, before calamine allocates anything."""
    label = path.name
    with open_zip(path, XLSX_LIMITS) as archive:
        check_zip(archive, XLSX_LIMITS, label, nested_allowed=True)
        part = _first_sheet_part(archive)
        if part is None or part not in archive.NameToInfo:
            return  # calamine refuses a workbook without a readable first sheet with its own message
        with archive.open(part) as stream:
            if quick_within_limits(stream, label):
                return
        with archive.open(part) as stream:
            extent = sheet_extent(stream, label)
    if extent.cells > MAX_SHEET_CELLS:
        raise ImportRefusedError(
            f"{label} 单元格过多 / {label}: the sheet has {extent.cells} cells; the limit is {MAX_SHEET_CELLS}"
        )
    if extent.unreferenced:
        # A cell or row without an A1 reference sits one after the previous one, so the extent can
        # outgrow the referenced one by at most their number, in each direction.
        more = extent.unreferenced
        _refuse_dimension(
            label, f"with {more} cells without an A1 reference", extent.rows + more, extent.columns + more
        )


def check_csv_shape(data: bytes, label: str) -> None:
    """Refuse CSV text with more lines or fields than a sheet may have (counted before it is split)."""
    lines = data.count(b"\n") + 1
    fields = data.count(b",") + lines
    if lines > MAX_SHEET_ROWS or fields > MAX_SHEET_CELLS:
        raise ImportRefusedError(
            f"{label} 行或单元格过多 / {label}: {lines} lines and up to {fields} fields; "
            f"the limits are {MAX_SHEET_ROWS} rows and {MAX_SHEET_CELLS} cells"
        )
