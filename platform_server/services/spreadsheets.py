"""Reading organisers' tables: .xlsx (calamine) and .csv in UTF-8 or the GBK that Excel writes.

Returns rows of strings keyed by canonical column names, with the spreadsheet row number of each, so
every refusal can name the row the organiser sees in Excel. Invitation lists are also checked, hashed
and sealed here, in a reader process the CLI forks before the platform starts (see InvitationReader).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import operator
import queue
import re
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import python_calamine

from personal_data import id_number
from personal_data.crypto import DataKey, lookup_hasher, seal_records
from platform_server.errors import ImportRefusedError, RowProblem
from platform_server.services import reader_process
from platform_server.services.file_limits import check_csv_shape, check_workbook
from platform_server.services.timeline import Timeline
from uwb import errors as uwb_errors
from uwb import payload

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
    check_workbook(path)  # sheet extent and zip sizes, before calamine allocates the sheet's whole range

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
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
    check_csv_shape(data, path.name)
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
_FIELDS = ("id_number", "name", "phone", "organisation", "specialty", "room")
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
# (sheet row number, normalised ID number, name, phone, organisation, specialty, room)
CheckedRow = tuple[int, str, str, str, str, str, str]


def _text(value: Any) -> str:
    """cell_text() with the common case (a string cell) first."""
    if type(value) is str:
        return value.strip()
    return cell_text(value)


def _id_problem(cell: Any, birth_ok: id_number.BirthDates) -> tuple[str, str]:
    """(normalised ID number, "") or ("", the reason), the same rules as personal_data.id_number."""
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return "", _NUMERIC_ID
    text = _text(cell)
    if not text:
        return "", "缺少身份证号 / ID number missing"
    value = text.replace(" ", "").upper() if (" " in text or text[-1] == "x") else text
    if id_number.is_valid_normalised(value, birth_ok):
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
    try:
        payload.check_field("room_number", room, payload.MAX_ROOM_LEN)
    except uwb_errors.PayloadError as err:
        return (
            f"房间号无法写入手环（最多{payload.MAX_ROOM_LEN}位字母、数字、-或_） / "
            f"room cannot be written to a wristband: {err}"
        )
    return ""


def _stripped(cells: list[Any]) -> list[str]:
    """A column's cells as stripped text (numbers without '.0', None as empty)."""
    try:
        return list(map(str.strip, cells))
    except TypeError:  # a number or an empty cell among the strings
        return [_text(c) for c in cells]


def _lengths_within(values: list[str], longest: int) -> bool:
    """True when every value is non-empty and at most `longest` characters."""
    lengths = list(map(len, values))
    return min(lengths) > 0 and max(lengths) <= longest


@dataclass(frozen=True, slots=True)
class CheckedRows:
    """The good rows of a slice, column by column (sheet row numbers, normalised ID numbers, fields)."""

    numbers: Sequence[int]
    ids: list[str]
    names: list[str]
    phones: list[str]
    organisations: list[str]
    specialties: list[str]
    rooms: list[str]

    def __len__(self) -> int:
        """Rows in the slice."""
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: Sequence[CheckedRow]) -> CheckedRows:
        """Columns from row tuples."""
        if not rows:
            return cls([], [], [], [], [], [], [])
        numbers, ids, names, phones, organisations, specialties, rooms = (list(c) for c in zip(*rows, strict=True))
        return cls(numbers, ids, names, phones, organisations, specialties, rooms)

    def as_rows(self) -> list[CheckedRow]:
        """Row tuples (tests compare the fast and the row-by-row check with these)."""
        return list(
            zip(
                self.numbers,
                self.ids,
                self.names,
                self.phones,
                self.organisations,
                self.specialties,
                self.rooms,
                strict=True,
            )
        )


class InvitationChecker:
    """Checks invitation rows slice by slice, remembering every ID number and room seen so far.

    Rows repeating an earlier row's ID number or room are problems; the first of them stays good, so
    the database checks can still name its own problems in the same refusal. A slice is first checked
    column by column (each rule once over the whole column); only a slice where that finds anything
    is checked row by row, which names every problem of every row.
    """

    def __init__(self, table: Table) -> None:
        """Map the table's columns once."""
        width = len(table.columns)
        index = {name: i for i, name in enumerate(table.columns) if name}
        self._width = width
        self._columns = tuple(index.get(n) for n in _FIELDS)
        self._pick = operator.itemgetter(*(index.get(n, width) for n in _FIELDS))
        self._birth_ok = id_number.BirthDates()
        self._id_seen: dict[str, int] = {}
        self._room_seen: dict[str, int] = {}
        self.problems: list[RowProblem] = []
        self.good = 0

    def check(self, rows: Sequence[list[Any]], first_number: int) -> CheckedRows:
        """The good rows of a slice (sheet row numbers from first_number); problems are collected."""
        checked = self.check_columns(rows, first_number)
        if checked is None:
            checked = CheckedRows.from_rows(self.check_rows(rows, first_number))
        self.good += len(checked)
        return checked

    def check_columns(self, rows: Sequence[list[Any]], first_number: int) -> CheckedRows | None:
        """The whole slice if every row is good (remembering its ID numbers and rooms), else None."""
        count = len(rows)
        if not count or min(map(len, rows)) < self._width:
            return None  # ragged rows (CSV) are padded by the row-by-row check
        columns = [list(map(operator.itemgetter(i), rows)) if i is not None else [""] * count for i in self._columns]
        ids = self._good_ids(columns[0])
        if ids is None:
            return None
        names, phones, organisations, specialties, rooms = map(_stripped, columns[1:])
        numbers = range(first_number, first_number + count)
        if not (
            _lengths_within(names, MAX_NAME)
            and all(map(PHONE.match, phones))
            and _lengths_within(organisations, MAX_TEXT)
            and _lengths_within(specialties, MAX_TEXT)
            and self._good_rooms(rooms, numbers)
        ):
            return None
        self._id_seen.update(zip(ids, numbers, strict=True))
        return CheckedRows(numbers, ids, names, phones, organisations, specialties, rooms)

    def _good_ids(self, cells: list[Any]) -> list[str] | None:
        """The normalised ID numbers if every cell holds a valid one not seen before, else None."""
        try:
            joined = "".join(cells)
        except TypeError:  # a number (Excel ate the digits) or an empty cell
            return None
        if set(map(len, cells)) != {id_number.LENGTH}:
            return None
        upper = joined.upper()  # a trailing lower-case x is written X
        if not id_number.all_valid_normalised(upper, len(cells), self._birth_ok):
            return None
        ids = (
            cells
            if upper == joined
            else [upper[i : i + id_number.LENGTH] for i in range(0, len(upper), id_number.LENGTH)]
        )
        if len(set(ids)) != len(ids) or not self._id_seen.keys().isdisjoint(ids):
            return None
        return ids

    def _good_rooms(self, rooms: list[str], numbers: range) -> bool:
        """True (and the rooms remembered) if every room given is usable and given once."""
        if not any(rooms):
            return True
        given = [(room, number) for room, number in zip(rooms, numbers, strict=True) if room]
        if (
            len({room for room, _ in given}) != len(given)
            or not self._room_seen.keys().isdisjoint(room for room, _ in given)
            or not all(ROOM.match(room) and not room_payload_problem(room) for room, _ in given)
        ):
            return False
        self._room_seen.update(given)
        return True

    def check_rows(self, rows: Sequence[list[Any]], first_number: int) -> list[CheckedRow]:
        """Row by row: the good rows, and every problem of every bad row collected."""
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
        return good


# The staging image's one table: an expert per row, `n` its rank by lookup hash (so the writer's
# inserts run in index order), `row` its sheet row number, (page, slot) where its sealed record is.
STAGED_TABLE = "rows"
STAGED_COLUMNS = ("n", "row", "id_hash", "id_masked", "page", "slot", "name", "organisation", "specialty", "room")
_STAGED_SCHEMA = (
    f"CREATE TABLE {STAGED_TABLE} (n INTEGER PRIMARY KEY, row INTEGER NOT NULL, id_hash TEXT NOT NULL,"
    " id_masked TEXT NOT NULL, page INTEGER NOT NULL, slot INTEGER NOT NULL, name TEXT NOT NULL,"
    " organisation TEXT NOT NULL, specialty TEXT NOT NULL, room TEXT NOT NULL)"
)
# (n, sheet row number, id_hash, id_masked, page index in the chunk, slot in the page, name,
#  organisation, specialty, room): one expert ready to write
PreparedRow = tuple[int, int, str, str, int, int, str, str, str, str]


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """Checked rows made ready to write: ID numbers hashed and masked, personal numbers sealed in pages.

    `staged` is a serialized in-memory SQLite database holding the rows (table STAGED_TABLE): the
    writer attaches it and inserts with set-wise SQL, so no Python runs per row on the writer's side.
    `pages` are SM4-GCM envelopes of up to PAGE_SLOTS records (ID and phone) each; each row names its
    page by index into `pages` and its record by slot. Nothing in a chunk is a personal number in
    clear, so chunks may cross between processes.
    """

    staged: bytes
    pages: list[bytes]
    page_records: list[int]
    count: int
    rooms: int  # rows that name a pre-assigned room

    def rows(self) -> list[PreparedRow]:
        """The staged rows in `n` order (the PostgreSQL writer copies them; tests read them)."""
        database = sqlite3.connect(":memory:")
        try:
            database.deserialize(self.staged)
            columns = ", ".join(STAGED_COLUMNS)
            return database.execute(f"SELECT {columns} FROM {STAGED_TABLE} ORDER BY n").fetchall()  # noqa: S608
        finally:
            database.close()


def prepare_chunk(key: DataKey, checked: CheckedRows) -> PreparedChunk:
    """Hash, mask and page-seal checked rows (one SM4-GCM call per PAGE_SLOTS experts); stage them."""
    count = len(checked)
    ids = checked.ids
    hashes = lookup_hasher(key.lookup_key).many(ids)
    records = [record.encode() for record in map(PII_SEPARATOR.join, zip(ids, checked.phones, strict=True))]
    pages = [seal_records(key, records[s : s + PAGE_SLOTS], PII_PAGE_AAD) for s in range(0, count, PAGE_SLOTS)]
    page_records = [min(PAGE_SLOTS, count - s) for s in range(0, count, PAGE_SLOTS)]
    rank = [0] * count
    for position, index in enumerate(sorted(range(count), key=hashes.__getitem__)):
        rank[index] = position
    page_of = itertools.chain.from_iterable(itertools.repeat(p, PAGE_SLOTS) for p in range(len(pages)))
    slot_of = itertools.chain.from_iterable(itertools.repeat(range(PAGE_SLOTS), len(pages)))
    database = sqlite3.connect(":memory:", isolation_level=None)
    try:
        database.execute(_STAGED_SCHEMA)
        database.execute("BEGIN")
        database.executemany(
            f"INSERT INTO {STAGED_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            zip(
                rank,
                checked.numbers,
                hashes,
                map(id_number.mask_normalised, ids),
                page_of,
                slot_of,
                checked.names,
                checked.organisations,
                checked.specialties,
                checked.rooms,
                strict=False,  # page_of and slot_of run to the end of the last page
            ),
        )
        database.execute("COMMIT")
        staged = database.serialize()
    finally:
        database.close()
    return PreparedChunk(staged, pages, page_records, count, sum(map(bool, checked.rooms)))


def _without_trailing_blanks(rows: list[list[Any]]) -> list[list[Any]]:
    """The rows up to the last non-blank one (a template formatted 1000 rows down ends in blank rows)."""
    end = len(rows)
    while end and not any(c is not None and c != "" for c in rows[end - 1]):
        end -= 1
    return rows if end == len(rows) else rows[:end]


def read_invitations(
    path: Path,
    key_source: Callable[[], DataKey],
    timeline: Timeline | None = None,
    *,
    hand_over_first: bool = False,
) -> Iterator[PreparedChunk | CheckedRows | list[RowProblem]]:
    """Check and prepare an invitation list slice by slice; the last item is the list of bad rows.

    ImportRefusedError for a file that cannot be read at all or has no rows. `key_source` is called
    once a slice is to be sealed (in the reader process it waits for the writer to send the key).
    With `hand_over_first`, the first slice with good rows comes checked but not prepared, for the
    writer to prepare while this process prepares the next ones. Chunks come even after a bad row, so
    the writer can add the database's problems to the same refusal.
    """
    timeline = timeline or Timeline(enabled=False)
    table = read_table(path, INVITATION_COLUMNS, INVITATION_REQUIRED)
    rows = _without_trailing_blanks(table.rows)
    timeline.mark(f"parsed {len(rows)} rows", "reader")
    checker = InvitationChecker(table)
    key: DataKey | None = None
    for start in range(0, len(rows), CHUNK_ROWS):
        checked = checker.check(rows[start : start + CHUNK_ROWS], table.first_row_number + start)
        timeline.mark(f"rows {start}+: checked", "reader")
        if not checked:
            continue
        if hand_over_first:
            hand_over_first = False
            yield checked
            continue
        if key is None:
            key = key_source()
            timeline.mark("key received", "reader")
        chunk = prepare_chunk(key, checked)
        timeline.mark(f"rows {start}+: hashed, sealed, staged", "reader")
        yield chunk
    if not checker.good and not checker.problems:
        raise ImportRefusedError(f"{path.name} 没有数据行 / {path.name} has no data rows")
    checker.problems.sort(key=lambda p: p.row)
    yield checker.problems


class InvitationReader:
    """Reads, checks and prepares an invitation list, in a forked process or in this one.

    The CLI starts it first, so the workbook is parsed on the second core while the platform
    (SQLAlchemy, migrations) starts on the first; then each slice of rows is checked and sealed there
    while the writer inserts the previous one. Library callers and tests run the same code in-process.
    The data key reaches the reader over its private pipe once the command has read the
    configuration (send_key(); before the database code loads); the reader writes nothing.
    """

    def __init__(
        self, path: Path, connection: Connection | None, process: BaseProcess | None, timeline: Timeline | None = None
    ) -> None:
        """Use start() or in_process()."""
        self.path = path
        self._connection = connection
        self._process = process
        self.forked = connection is not None
        self.problems: list[RowProblem] = []
        self.timeline = timeline or Timeline(enabled=False)
        self._early: tuple[Any, ...] | None = None  # a message read by refuse_early()
        self._key_sent: DataKey | None = None

    @classmethod
    def in_process(cls, path: Path, timeline: Timeline | None = None) -> InvitationReader:
        """Read in the calling process."""
        return cls(path, None, None, timeline)

    @classmethod
    def start(cls, path: Path, timeline: Timeline | None = None) -> InvitationReader:
        """Fork a reader process when that is safe (no other threads yet), else read in-process."""
        timeline = timeline or Timeline(enabled=False)
        if not reader_process.can_fork():
            return cls.in_process(path, timeline)  # forking a threaded process can deadlock the child
        connection, process = reader_process.fork_reader(path, timeline)
        return cls(path, connection, process, timeline)

    def chunks(self, key: DataKey) -> Iterator[PreparedChunk]:
        """Prepared chunks of the good rows; afterwards `problems` holds every bad row of the file."""
        if self._connection is None:
            for item in read_invitations(self.path, lambda: key, self.timeline):
                if isinstance(item, PreparedChunk):
                    yield item
                elif isinstance(item, list):
                    self.problems = item
            return
        if self._key_sent is None:
            self.send_key(key)
        elif self._key_sent != key:
            raise RuntimeError("the reader process was given another data key than the platform's")
        while True:
            message = self._receive()
            if message[0] == "done":
                self.problems = [RowProblem(row, text) for row, text in message[1]]
                self.timeline.add(message[2])
                return
            if message[0] == "checked":  # the first slice: prepared here while the reader seals the next
                self.timeline.mark(f"checked slice of {len(message[1])} received")
                chunk = prepare_chunk(key, message[1])
                self.timeline.mark("  hashed, sealed, staged here")
                yield chunk
                continue
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

    def send_key(self, key: DataKey) -> None:
        """Give the reader process the data key (once), so it seals slices while this process still starts."""
        if self._connection is None or self._key_sent is not None:
            return
        # A reader that already refused the file has left; its answer is still in the pipe.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._connection.send(("key", key.encryption_key, key.lookup_key))
        self._key_sent = key

    def refuse_early(self) -> None:
        """ImportRefusedError now if the reader has already refused the file (an empty or broken one).

        Lets the command answer before loading the database code; any other message that has already
        come is kept for chunks().
        """
        if self._connection is not None and self._early is None and self._connection.poll(0):
            self._early = self._receive()

    def _receive(self) -> tuple[Any, ...]:
        assert self._connection is not None
        if self._early is not None:
            early, self._early = self._early, None
            return early
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


def reader_main(connection: Connection, path: Path, timeline: Timeline) -> None:
    """The reader process: stream prepared chunks, then the bad rows, to the writer.

    A sender thread writes to the pipe, so the reader goes on checking and sealing while the writer
    is still starting and not yet reading (a message is larger than the pipe's buffer).
    """
    outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def key_from_writer() -> DataKey:
        order = connection.recv()  # EOFError when the writer gave up (its error is reported there)
        return DataKey(order[1], order[2])

    sender = threading.Thread(target=_send_all, args=(connection, outbox), name="reader-sender", daemon=True)
    sender.start()
    try:
        timeline.marks.clear()  # the writer keeps the marks made before the fork
        timeline.mark("reader started", "reader")
        # The writer is idle until the first slice comes (its start-up is shorter than the parse), so
        # it prepares that one itself. Plain ID and phone numbers cross only this private pipe between
        # the two processes of one command, never a file.
        for item in read_invitations(path, key_from_writer, timeline, hand_over_first=True):
            if isinstance(item, PreparedChunk):
                outbox.put(("chunk", item))
                timeline.mark(f"chunk of {item.count} queued", "reader")
            elif isinstance(item, CheckedRows):
                outbox.put(("checked", item))
                timeline.mark(f"checked slice of {len(item)} queued", "reader")
            else:
                outbox.put(("done", [(p.row, p.message) for p in item], timeline.marks))
    except ImportRefusedError as err:
        outbox.put(("refused", err.summary, [(p.row, p.message) for p in err.problems]))
    except EOFError:
        pass
    except Exception as err:  # reported to the writer, which shows it
        outbox.put(("failed", f"{type(err).__name__}: {err}"))
    finally:
        outbox.put(None)
        sender.join()
        connection.close()


def _send_all(connection: Connection, outbox: queue.SimpleQueue[tuple[Any, ...] | None]) -> None:
    """The reader's sender thread: every queued message, in order, until None."""
    try:
        while (message := outbox.get()) is not None:
            connection.send(message)
    except OSError:
        pass  # the writer gave up (its error is reported there)
