"""Reading organisers' tables: .xlsx (calamine) and .csv in UTF-8 or the GBK that Excel writes.

Returns rows of strings keyed by canonical column names, with the spreadsheet row number of each, so
every refusal can name the row the organiser sees in Excel.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from platform_server.errors import ImportRefusedError

if TYPE_CHECKING:
    from pathlib import Path

MAX_FILE_BYTES = 200 * 1024 * 1024
XLSX_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of a table: canonical column name to cell text, and the sheet row number of each row."""

    columns: list[str]
    rows: list[list[Any]]
    first_row_number: int  # spreadsheet row number of rows[0] (the header is the row before)


def _normalise_header(text: object) -> str:
    return str(text or "").strip().lower().replace(" ", "").replace("_", "").replace("（", "(").replace("）", ")")


def read_table(path: Path, aliases: dict[str, tuple[str, ...]], required: tuple[str, ...]) -> Table:
    """Read the first sheet (or the CSV), map headers through `aliases`, refuse missing required columns."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImportRefusedError(f"无法读取文件 / cannot read {path}: {err.strerror}") from err
    if size == 0:
        raise ImportRefusedError(f"文件为空 / {path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise ImportRefusedError(f"文件过大 / {path.name} is larger than {MAX_FILE_BYTES // 1024 // 1024} MB")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        raw_rows = _read_xlsx(path)
    elif suffix == ".csv":
        raw_rows = _read_csv(path)
    else:
        raise ImportRefusedError(f"不支持的文件类型 / {path.name}: only .xlsx and .csv files can be imported")
    # Skip leading empty rows (a title row is not supported: the header must be the first non-empty row).
    start = 0
    while start < len(raw_rows) and not any(str(c).strip() for c in raw_rows[start] if c is not None):
        start += 1
    if start == len(raw_rows):
        raise ImportRefusedError(f"文件没有表头 / {path.name} has no header row")
    header = [_normalise_header(c) for c in raw_rows[start]]
    lookup = {_normalise_header(a): name for name, names in aliases.items() for a in (name, *names)}
    columns = [lookup.get(cell, "") for cell in header]
    missing = [name for name in required if name not in columns]
    if missing:
        wanted = "; ".join(f"{name} ({'/'.join(aliases[name][:2])})" for name in missing)
        raise ImportRefusedError(f"缺少必需的列 / {path.name} lacks required columns: {wanted}")
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        raise ImportRefusedError(f"列重复 / {path.name} has the same column twice: {', '.join(duplicated)}")
    return Table(columns=columns, rows=raw_rows[start + 1 :], first_row_number=start + 2)


def _read_xlsx(path: Path) -> list[list[Any]]:
    with path.open("rb") as handle:
        if handle.read(4) != XLSX_MAGIC:
            raise ImportRefusedError(f"{path.name} 不是有效的 .xlsx 文件 / {path.name} is not an .xlsx workbook")
    from python_calamine import CalamineWorkbook  # noqa: PLC0415  (only the importing commands need it)

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        rows: list[list[Any]] = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception as err:  # calamine raises its own error types for every kind of broken workbook
        raise ImportRefusedError(f"{path.name} 无法解析 / {path.name} cannot be read as a workbook: {err}") from err
    return rows


def _read_csv(path: Path) -> list[list[Any]]:
    data = path.read_bytes()
    if data.startswith(XLSX_MAGIC):
        raise ImportRefusedError(f"{path.name} 是 .xlsx 工作簿而非 CSV / {path.name} is an .xlsx workbook, not CSV")
    if b"\x00" in data[:4096]:
        raise ImportRefusedError(f"{path.name} 不是文本文件 / {path.name} is not a text (CSV) file")
    for encoding in ("utf-8-sig", "gb18030"):  # GB 18030 is a superset of the GBK Excel writes
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ImportRefusedError(f"{path.name} 编码无法识别 / {path.name} is neither UTF-8 nor GBK text")
    try:
        return [list(r) for r in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as err:
        raise ImportRefusedError(f"{path.name} CSV 格式错误 / {path.name} is not valid CSV: {err}") from err


def cell_text(value: Any) -> str:
    """A cell as text: numbers without '.0', None as empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
