"""Reading organisers' tables: .xlsx (calamine) and .csv in UTF-8 or the GBK that Excel writes.

Returns rows of strings keyed by canonical column names, with the spreadsheet row number of each, so
every refusal can name the row the organiser sees in Excel. Invitation lists are also checked, hashed
and sealed here, in a reader process the CLI forks before the platform starts (see InvitationReader).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import multiprocessing
import operator
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from personal_data import id_number
from personal_data.crypto import DataKey, lookup_hasher, seal_records
from platform_server.errors import ImportRefusedError, RowProblem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
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


# --- Invitation lists: checked, hashed and sealed in the process that reads them -------------------
#
# This part imports nothing heavy (no SQLAlchemy), so the CLI can fork a reader process before the
# platform's own start-up and parse the workbook meanwhile; the database side is services.roster.

INVITATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "id_number": ("身份证号", "身份证号码", "证件号码", "idnumber", "id"),
    "name": ("姓名", "专家姓名"),
    "phone": ("手机", "手机号", "手机号码", "联系电话", "电话"),
    "organisation": ("工作单位", "单位", "organization"),
    "specialty": ("专业", "评标专业", "speciality"),
    "room": ("房间", "房间号", "roomnumber"),
}
INVITATION_REQUIRED = ("id_number", "name", "phone", "organisation", "specialty")
PHONE = re.compile(r"^\+?[0-9][0-9\- ]{5,19}$")
ROOM = re.compile(r"^[A-Za-z0-9-]{1,16}$")
MAX_NAME = 100
MAX_TEXT = 200
PAGE_SLOTS = 256  # experts per sealed page: one SM4-GCM call each (see docs/platform-configuration.md)
CHUNK_ROWS = 20_000  # rows per message from the reader process: the writer inserts one while the next is sealed
PII_PAGE_AAD = b"expertcheckin pii-page v1"
PII_SEPARATOR = "\x1f"  # ASCII unit separator between ID and phone inside one sealed record

# Excel stores a long digit string typed without a text format as a float: 18 digits do not survive.
_NUMERIC_ID = (
    "身份证号被Excel存成了数字，末几位已丢失；请将该列设为文本后重新录入 / "
    "the ID number was stored as a number and lost digits; format the column as text"
)
_ASCII_ID = re.compile(r"[0-9]{17}[0-9X]\Z")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# The check sum over the ASCII codes of the 17 digits, minus what the '0' offset (48) adds to it.
_ID_OFFSET = 48 * sum(_ID_WEIGHTS)
_CHECK_CHARS = "10X98765432"

# (sheet row number, normalised ID number, name, phone, organisation, specialty, room)
CheckedRow = tuple[int, str, str, str, str, str, str]


def _text(value: Any) -> str:
    """cell_text() with the common case (a string cell) first."""
    if type(value) is str:
        return value.strip()
    return cell_text(value)


class _BirthDates:
    """Memo of YYYYMMDD strings that are real dates (100 000 experts share a few thousand birthdays)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        known = self._known.get(text)
        if known is None:
            try:
                dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
                known = True
            except ValueError:
                known = False
            self._known[text] = known
        return known


def _fast_id(value: str, birth_ok: _BirthDates) -> bool:
    """True when an already-normalised ASCII ID number passes GB 11643 (shape, birth date, check digit)."""
    if not _ASCII_ID.match(value):
        return False
    total = sum(map(operator.mul, value.encode("ascii")[:17], _ID_WEIGHTS)) - _ID_OFFSET
    return value[17] == _CHECK_CHARS[total % 11] and birth_ok(value[6:14])


def _id_problem(cell: Any, birth_ok: _BirthDates) -> tuple[str, str]:
    """(normalised ID number, "") or ("", the reason), the same rules as personal_data.id_number."""
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return "", _NUMERIC_ID
    text = _text(cell)
    if not text:
        return "", "缺少身份证号 / ID number missing"
    value = text.replace(" ", "").upper() if (" " in text or text[-1] == "x") else text
    if _fast_id(value, birth_ok):
        return value, ""
    try:  # the slow path only for rows that fail (or use non-ASCII digits): its message names the rule
        return id_number.validate(text), ""
    except id_number.InvalidIdNumberError as err:
        return "", str(err)


def _other_problems(name: str, phone: str, organisation: str, specialty: str, room: str) -> list[str]:
    """Every problem with a row's fields other than the ID number."""
    reasons: list[str] = []
    if not name:
        reasons.append("缺少姓名 / name missing")
    elif len(name) > MAX_NAME:
        reasons.append(f"姓名过长 / name longer than {MAX_NAME} characters")
    if not phone:
        reasons.append("缺少手机号 / phone missing")
    elif not PHONE.match(phone):
        reasons.append("手机号格式错误 / phone must be digits (with an optional + and dashes)")
    if not organisation:
        reasons.append("缺少工作单位 / organisation missing")
    if not specialty:
        reasons.append("缺少专业 / specialty missing")
    if len(organisation) > MAX_TEXT or len(specialty) > MAX_TEXT:
        reasons.append(f"单位或专业过长 / organisation or specialty longer than {MAX_TEXT} characters")
    if room and not ROOM.match(room):
        reasons.append("房间号格式错误 / room must be 1-16 letters, digits or dashes")
    elif room and room_payload_problem(room):
        reasons.append(room_payload_problem(room))
    return reasons


def room_payload_problem(room: str) -> str:
    """Why the wristband payload cannot carry this room number ("" if it can): refused at import, not at a band."""
    from uwb import payload  # noqa: PLC0415  (only rows with a room need it)
    from uwb.errors import PayloadError  # noqa: PLC0415

    try:
        payload.check_field("room_number", room, payload.MAX_ROOM_LEN)
    except PayloadError as err:
        return (
            f"房间号无法写入手环（最多{payload.MAX_ROOM_LEN}位字母、数字、-或_） / "
            f"room cannot be written to a wristband: {err}"
        )
    return ""


class InvitationChecker:
    """Checks invitation rows slice by slice, remembering every ID number and room seen so far.

    Rows repeating an earlier row's ID number or room are problems; the first of them stays good, so
    the database checks can still name its own problems in the same refusal.
    """

    def __init__(self, table: Table) -> None:
        """Map the table's columns once."""
        width = len(table.columns)
        index = {name: i for i, name in enumerate(table.columns) if name}
        self._width = width
        self._pick = operator.itemgetter(
            *(index.get(n, width) for n in ("id_number", "name", "phone", "organisation", "specialty", "room"))
        )
        self._birth_ok = _BirthDates()
        self._id_seen: dict[str, int] = {}
        self._room_seen: dict[str, int] = {}
        self.problems: list[RowProblem] = []
        self.good = 0

    def check(self, rows: Sequence[list[Any]], first_number: int) -> list[CheckedRow]:
        """The good rows of a slice (sheet row numbers from first_number); problems are collected."""
        good: list[CheckedRow] = []
        problems = self.problems
        id_seen, room_seen, birth_ok = self._id_seen, self._room_seen, self._birth_ok
        pad = [None] * (self._width + 1)
        number = first_number - 1
        for raw in rows:
            number += 1
            cells = raw if len(raw) > self._width else [*raw, *pad[: self._width + 1 - len(raw)]]
            id_cell, name, phone, organisation, specialty, room = self._pick(cells)
            if not id_cell and not any(c is not None and c != "" for c in cells):
                continue  # blank lines are not rows
            name = name.strip() if type(name) is str else cell_text(name)
            phone = phone.strip() if type(phone) is str else cell_text(phone)
            organisation = organisation.strip() if type(organisation) is str else cell_text(organisation)
            specialty = specialty.strip() if type(specialty) is str else cell_text(specialty)
            room = room.strip() if type(room) is str else cell_text(room)
            id_value, id_reason = _id_problem(id_cell, birth_ok)
            # The common case costs one regex per field; the full list of reasons only for bad rows.
            if (
                id_reason
                or not name
                or len(name) > MAX_NAME
                or not PHONE.match(phone)
                or not organisation
                or not specialty
                or len(organisation) > MAX_TEXT
                or len(specialty) > MAX_TEXT
                or (room and (not ROOM.match(room) or room_payload_problem(room)))
            ):
                reasons = [id_reason] if id_reason else []
                reasons += _other_problems(name, phone, organisation, specialty, room)
                problems.append(RowProblem(number, "；".join(reasons)))
                continue
            seen = id_seen.setdefault(id_value, number)
            if seen != number:
                problems.append(RowProblem(number, f"与第{seen}行身份证号重复 / same ID number as row {seen}"))
                continue
            if room:
                seen = room_seen.setdefault(room, number)
                if seen != number:
                    problems.append(
                        RowProblem(number, f"房间{room}已在第{seen}行分配 / room {room} already given in row {seen}")
                    )
                    continue
            good.append((number, id_value, name, phone, organisation, specialty, room))
        self.good += len(good)
        return good


# (sheet row number, id_hash, id_masked, page index in the chunk, slot in the page, name, organisation,
#  specialty, room): one expert ready to write
PreparedRow = tuple[int, str, str, int, int, str, str, str, str]


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """Checked rows made ready to write: ID numbers hashed and masked, personal numbers sealed in pages.

    `pages` are SM4-GCM envelopes of up to PAGE_SLOTS records (ID and phone) each; each row names
    its page by index into `pages` and its record by slot. Nothing in a chunk is a personal number in
    clear, so chunks may cross between processes.
    """

    rows: list[PreparedRow]
    pages: list[bytes]
    page_records: list[int]

    @property
    def count(self) -> int:
        """Experts in the chunk."""
        return len(self.rows)


def mask_id(value: str) -> str:
    """personal_data.id_number.mask() for an already-normalised 18-character ID number."""
    return value[:4] + "**********" + value[-4:]


def prepare_chunk(key: DataKey, rows: Sequence[CheckedRow]) -> PreparedChunk:
    """Hash, mask and page-seal checked rows (one SM4-GCM call per PAGE_SLOTS experts)."""
    hashes = lookup_hasher(key.lookup_key).many([r[1] for r in rows])
    pages: list[bytes] = []
    page_records: list[int] = []
    out: list[PreparedRow] = []
    for start in range(0, len(rows), PAGE_SLOTS):
        page_rows = rows[start : start + PAGE_SLOTS]
        page = len(pages)
        pages.append(seal_records(key, [f"{r[1]}{PII_SEPARATOR}{r[3]}".encode() for r in page_rows], PII_PAGE_AAD))
        page_records.append(len(page_rows))
        out.extend(
            (number, hashes[start + slot], mask_id(id_value), page, slot, name, organisation, specialty, room)
            for slot, (number, id_value, name, _phone, organisation, specialty, room) in enumerate(page_rows)
        )
    return PreparedChunk(out, pages, page_records)


def read_invitations(path: Path, key_source: Callable[[], DataKey]) -> Iterator[PreparedChunk | list[RowProblem]]:
    """Check and prepare an invitation list slice by slice; the last item is the list of bad rows.

    ImportRefusedError for a file that cannot be read at all or has no rows. `key_source` is called
    once the file is parsed (in the reader process it waits for the writer to send the key). Chunks
    come even after a bad row, so the writer can add the database's problems to the same refusal.
    """
    table = read_table(path, INVITATION_COLUMNS, INVITATION_REQUIRED)
    checker = InvitationChecker(table)
    key: DataKey | None = None
    for start in range(0, len(table.rows), CHUNK_ROWS):
        good = checker.check(table.rows[start : start + CHUNK_ROWS], table.first_row_number + start)
        if good:
            key = key or key_source()
            yield prepare_chunk(key, good)
    if not checker.good and not checker.problems:
        raise ImportRefusedError(f"{path.name} 没有数据行 / {path.name} has no data rows")
    checker.problems.sort(key=lambda p: p.row)
    yield checker.problems


class InvitationReader:
    """Reads, checks and prepares an invitation list, in a forked process or in this one.

    The CLI starts it first, so the workbook is parsed on the second core while the platform
    (SQLAlchemy, migrations) starts on the first; then each slice of rows is checked and sealed there
    while the writer inserts the previous one. Library callers and tests run the same code in-process.
    The data key reaches the reader over its private pipe only once the writer has it; the reader
    writes nothing.
    """

    def __init__(self, path: Path, connection: Connection | None, process: BaseProcess | None) -> None:
        """Use start() or in_process()."""
        self.path = path
        self._connection = connection
        self._process = process
        self.forked = connection is not None
        self.problems: list[RowProblem] = []

    @classmethod
    def in_process(cls, path: Path) -> InvitationReader:
        """Read in the calling process."""
        return cls(path, None, None)

    @classmethod
    def start(cls, path: Path) -> InvitationReader:
        """Fork a reader process when that is safe (no other threads yet), else read in-process."""
        if threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
            return cls.in_process(path)  # forking a threaded process can deadlock the child
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        process = context.Process(target=_reader_main, args=(child, path), name="invitation-reader", daemon=True)
        process.start()
        child.close()
        return cls(path, parent, process)

    def chunks(self, key: DataKey) -> Iterator[PreparedChunk]:
        """Prepared chunks of the good rows; afterwards `problems` holds every bad row of the file."""
        if self._connection is None:
            for item in read_invitations(self.path, lambda: key):
                if isinstance(item, PreparedChunk):
                    yield item
                else:
                    self.problems = item
            return
        self._connection.send(("key", key.encryption_key, key.lookup_key))
        while True:
            message = self._receive()
            if message[0] == "done":
                self.problems = [RowProblem(row, text) for row, text in message[1]]
                return
            yield message[1]

    def close(self) -> None:
        """Stop the reader process (if it still runs) and release the pipe; safe to call twice."""
        connection, self._connection = self._connection, None
        process, self._process = self._process, None
        if connection is not None:
            connection.close()  # a reader still waiting for the key sees EOF and ends
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()

    def _receive(self) -> tuple[Any, ...]:
        assert self._connection is not None
        try:
            message: tuple[Any, ...] = self._connection.recv()
        except EOFError as err:
            raise ImportRefusedError(
                f"{self.path.name}: 读取进程意外退出 / the reader process ended unexpectedly"
            ) from err
        if message[0] == "refused":
            raise ImportRefusedError(message[1], [RowProblem(row, text) for row, text in message[2]])
        if message[0] == "failed":
            raise RuntimeError(f"invitation reader failed: {message[1]}")
        return message


def _reader_main(connection: Connection, path: Path) -> None:
    """The reader process: stream prepared chunks, then the bad rows, to the writer."""

    def key_from_writer() -> DataKey:
        order = connection.recv()  # EOFError when the writer gave up (its error is reported there)
        return DataKey(order[1], order[2])

    try:
        for item in read_invitations(path, key_from_writer):
            if isinstance(item, PreparedChunk):
                connection.send(("chunk", item))
            else:
                connection.send(("done", [(p.row, p.message) for p in item]))
    except ImportRefusedError as err:
        connection.send(("refused", err.summary, [(p.row, p.message) for p in err.problems]))
    except EOFError:
        pass
    except Exception as err:
        with contextlib.suppress(OSError):
            connection.send(("failed", f"{type(err).__name__}: {err}"))
    finally:
        connection.close()
