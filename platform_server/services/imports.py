"""Organiser imports: invitations, rooms, wristbands, reference photos. All rows or none.

Every row is validated first; a file with any bad row is refused as a whole, naming each bad row's
number (as Excel shows it) and the reason. Only then is anything written, in one transaction.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data import id_number
from personal_data.crypto import DataKey
from platform_server.db.models import Room, Wristband
from platform_server.errors import ConfigError, ImportRefusedError, RowProblem
from platform_server.face.api import FaceImageError
from platform_server.services import roster
from platform_server.services.check_in import normalise_uid
from platform_server.services.spreadsheets import cell_text, read_table

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

INVITATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "id_number": ("身份证号", "身份证号码", "证件号码", "idnumber", "id"),
    "name": ("姓名", "专家姓名"),
    "phone": ("手机", "手机号", "手机号码", "联系电话", "电话"),
    "organisation": ("工作单位", "单位", "organization"),
    "specialty": ("专业", "评标专业", "speciality"),
    "room": ("房间", "房间号", "roomnumber"),
}
INVITATION_REQUIRED = ("id_number", "name", "phone", "organisation", "specialty")
ROOM_COLUMNS: dict[str, tuple[str, ...]] = {"room": ("房间号", "房间", "roomnumber", "number")}
BAND_COLUMNS: dict[str, tuple[str, ...]] = {"rfid_uid": ("uid", "rfid"), "uwb_tag_id": ("tagid", "uwbtag", "tag")}
PHONE = re.compile(r"^\+?[0-9][0-9\- ]{5,19}$")
ROOM = re.compile(r"^[A-Za-z0-9-]{1,16}$")
TAG = re.compile(r"^[0-9A-F]{4}$")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_NAME = 100
MAX_TEXT = 200

# Excel stores a long digit string typed without a text format as a float: 18 digits do not survive.
_NUMERIC_ID = (
    "身份证号被Excel存成了数字，末几位已丢失；请将该列设为文本后重新录入 / "
    "the ID number was stored as a number and lost digits; format the column as text"
)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote."""

    rows: int
    detail: str = ""


def _get(row: list[Any], index: dict[str, int], name: str) -> Any:
    i = index.get(name)
    return row[i] if i is not None and i < len(row) else None


# (spreadsheet row number, id cell, name, phone, organisation, specialty, room)
RawInvitation = tuple[int, Any, str, str, str, str, str]


def _check_row(  # noqa: C901  (one check per column)
    raw: RawInvitation,
) -> tuple[str, list[str]]:
    """The normalised ID number of one row ("" if bad) and every problem with the row's own fields."""
    _number, id_cell, name, phone, organisation, specialty, room = raw
    reasons: list[str] = []
    id_value = ""
    if isinstance(id_cell, (int, float)) and not isinstance(id_cell, bool):
        reasons.append(_NUMERIC_ID)
    elif not cell_text(id_cell):
        reasons.append("缺少身份证号 / ID number missing")
    else:
        try:
            id_value = id_number.validate(cell_text(id_cell))
        except id_number.InvalidIdNumberError as err:
            reasons.append(str(err))
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
    return id_value, reasons


def _check_and_prepare(
    args: tuple[bytes, bytes, list[RawInvitation]],
) -> list[RowProblem | tuple[int, str, roster.PreparedInvitation]]:
    """Worker: check each row's own fields; hash, mask and encrypt the good ones."""
    key = DataKey(args[0], args[1])
    out: list[RowProblem | tuple[int, str, roster.PreparedInvitation]] = []
    for raw in args[2]:
        id_value, reasons = _check_row(raw)
        if reasons:
            out.append(RowProblem(raw[0], "；".join(reasons)))
            continue
        row = roster.InvitationRow(id_value, raw[2], raw[3], raw[4], raw[5], raw[6])
        out.append((raw[0], id_value, roster.prepare(key, [row])[0]))
    return out


def validate_invitations(  # noqa: C901, PLR0912  (file-wide checks after the per-row ones)
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, path: Path
) -> list[roster.PreparedInvitation]:
    """Read and check every row; return them ready to write, or raise naming every bad row."""
    table = read_table(path, INVITATION_COLUMNS, INVITATION_REQUIRED)
    index = {name: i for i, name in enumerate(table.columns) if name}
    width = len(table.columns)
    picks = [index.get(n, width) for n in ("id_number", "name", "phone", "organisation", "specialty", "room")]
    raws: list[RawInvitation] = []
    for offset, raw in enumerate(table.rows):
        cells = list(raw) + [None] * (width + 1 - len(raw))
        if not any(c is not None and c != "" for c in cells):
            continue  # blank lines are not rows
        i_id, i_name, i_phone, i_org, i_spec, i_room = picks
        raws.append(
            (
                table.first_row_number + offset,
                cells[i_id],
                cell_text(cells[i_name]),
                cell_text(cells[i_phone]),
                cell_text(cells[i_org]),
                cell_text(cells[i_spec]),
                cell_text(cells[i_room]),
            )
        )
    if not raws:
        raise ImportRefusedError(f"{path.name} 没有数据行 / {path.name} has no data rows")
    key = ctx.data_key
    size = roster.CHUNK if len(raws) >= roster.PARALLEL_THRESHOLD else len(raws)
    chunks = [(key.encryption_key, key.lookup_key, raws[i : i + size]) for i in range(0, len(raws), size)]
    checked = roster.in_workers(_check_and_prepare, chunks)
    problems = [c for c in checked if isinstance(c, RowProblem)]
    good = [c for c in checked if not isinstance(c, RowProblem)]
    first_seen: dict[str, int] = {}
    room_seen: dict[str, int] = {}
    for number, id_value, prepared in good:
        if id_value in first_seen:
            problems.append(
                RowProblem(
                    number, f"与第{first_seen[id_value]}行身份证号重复 / same ID number as row {first_seen[id_value]}"
                )
            )
        else:
            first_seen[id_value] = number
        if prepared.room:
            if prepared.room in room_seen:
                problems.append(
                    RowProblem(
                        number,
                        f"房间{prepared.room}已在第{room_seen[prepared.room]}行分配 / "
                        f"room {prepared.room} already given in row {room_seen[prepared.room]}",
                    )
                )
            else:
                room_seen[prepared.room] = number
    with uow:
        batch_id, _hotel = roster.batch_id_for(uow, batch_code)
        already = roster.invited_hashes(uow, batch_id)
        rooms = roster.room_ids(uow, batch_id) if room_seen else {}
        reserved = roster.reserved_rooms(uow, batch_id) if room_seen else set()
    for number, _id, prepared in good:
        if prepared.id_hash in already:
            problems.append(RowProblem(number, "该专家已在本批次名单中 / this expert is already invited to the batch"))
        if prepared.room:
            if prepared.room not in rooms:
                problems.append(
                    RowProblem(
                        number,
                        f"房间{prepared.room}不在本批次房源中 / room {prepared.room} is not in the batch's rooms",
                    )
                )
            elif rooms[prepared.room] in reserved:
                problems.append(
                    RowProblem(
                        number, f"房间{prepared.room}已预分配给他人 / room {prepared.room} is already pre-assigned"
                    )
                )
    if problems:
        problems.sort(key=lambda p: p.row)
        raise ImportRefusedError(
            f"{path.name}: {len(problems)}行有误，未导入任何数据 / {len(problems)} bad rows, nothing imported", problems
        )
    return [prepared for _n, _i, prepared in good]


def import_invitations(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, path: Path, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Validate the whole file, then write all rows in one transaction."""
    prepared = validate_invitations(uow, ctx, batch_code, path)
    with uow:
        count = roster.write_invitations(uow, ctx, batch_code, prepared, progress=progress)
        uow.commit()
    return ImportReport(count)


def import_rooms(uow: UnitOfWork, ctx: ServiceContext, batch_code: str, path: Path) -> ImportReport:
    """Add rooms to the batch's pool (in the batch's hotel)."""
    table = read_table(path, ROOM_COLUMNS, ("room",))
    column = table.columns.index("room")
    problems: list[RowProblem] = []
    numbers: list[str] = []
    seen: dict[str, int] = {}
    for offset, raw in enumerate(table.rows):
        number = table.first_row_number + offset
        room = cell_text(raw[column] if column < len(raw) else None)
        if not room and not any(cell_text(c) for c in raw):
            continue
        if not ROOM.match(room):
            problems.append(RowProblem(number, "房间号格式错误 / room must be 1-16 letters, digits or dashes"))
        elif room in seen:
            problems.append(RowProblem(number, f"与第{seen[room]}行重复 / same room as row {seen[room]}"))
        else:
            seen[room] = number
            numbers.append(room)
    with uow:
        batch_id, _hotel = roster.batch_id_for(uow, batch_code)
        existing = set(uow.execute(sa.select(Room.number).where(Room.batch_id == batch_id)).scalars())
        problems += [
            RowProblem(seen[n], f"房间{n}已在本批次中 / room {n} is already in the batch")
            for n in numbers
            if n in existing
        ]
        if problems:
            raise ImportRefusedError(
                f"{path.name}: {len(problems)}行有误，未导入 / bad rows, nothing imported",
                sorted(problems, key=lambda p: p.row),
            )
        if not numbers:
            raise ImportRefusedError(f"{path.name} 没有数据行 / {path.name} has no data rows")
        count = roster.write_rooms(uow, ctx, batch_code, numbers)
        uow.commit()
    return ImportReport(count)


def import_bands(  # noqa: C901
    uow: UnitOfWork, ctx: ServiceContext, path: Path
) -> ImportReport:
    """Add wristbands (rfid_uid, uwb_tag_id) to the inventory."""
    table = read_table(path, BAND_COLUMNS, ("rfid_uid", "uwb_tag_id"))
    uid_col, tag_col = table.columns.index("rfid_uid"), table.columns.index("uwb_tag_id")
    problems: list[RowProblem] = []
    bands: list[tuple[str, str]] = []
    uids: dict[str, int] = {}
    tags: dict[str, int] = {}
    for offset, raw in enumerate(table.rows):
        number = table.first_row_number + offset
        if not any(cell_text(c) for c in raw):
            continue
        uid_text = cell_text(raw[uid_col] if uid_col < len(raw) else None)
        tag_cell = raw[tag_col] if tag_col < len(raw) else None
        tag = cell_text(tag_cell).upper()
        if isinstance(tag_cell, (int, float)) and not isinstance(tag_cell, bool):
            tag = f"{int(tag_cell):04d}"  # Excel turned 0001 into 1
        uid = normalise_uid(uid_text)
        reasons = []
        if uid is None:
            reasons.append("RFID UID 应为8、14或20位十六进制 / rfid_uid must be 8, 14 or 20 hex digits")
        elif uid in uids:
            reasons.append(f"UID与第{uids[uid]}行重复 / same rfid_uid as row {uids[uid]}")
        if not TAG.match(tag):
            reasons.append("UWB标签号应为4位十六进制 / uwb_tag_id must be 4 hex digits")
        elif tag in tags:
            reasons.append(f"标签号与第{tags[tag]}行重复 / same uwb_tag_id as row {tags[tag]}")
        if reasons:
            problems.append(RowProblem(number, "；".join(reasons)))
            continue
        assert uid is not None
        uids[uid] = number
        tags[tag] = number
        bands.append((uid, tag))
    with uow:
        known_uids = (
            set(uow.execute(sa.select(Wristband.rfid_uid).where(Wristband.rfid_uid.in_(list(uids)))).scalars())
            if uids
            else set()
        )
        known_tags = (
            set(uow.execute(sa.select(Wristband.uwb_tag_id).where(Wristband.uwb_tag_id.in_(list(tags)))).scalars())
            if tags
            else set()
        )
        problems += [
            RowProblem(uids[u], f"手环{u}已在库存中 / band {u} is already in the inventory") for u in known_uids
        ]
        problems += [RowProblem(tags[t], f"标签号{t}已被使用 / uwb_tag_id {t} is already in use") for t in known_tags]
        if problems:
            raise ImportRefusedError(
                f"{path.name}: {len(problems)}行有误，未导入 / bad rows, nothing imported",
                sorted(problems, key=lambda p: p.row),
            )
        if not bands:
            raise ImportRefusedError(f"{path.name} 没有数据行 / {path.name} has no data rows")
        count = roster.write_bands(uow, ctx, bands)
        uow.commit()
    return ImportReport(count)


def _photo_files(source: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every photo in a folder or a zip."""
    if source.is_dir():
        return [(p.name, p.read_bytes()) for p in sorted(source.iterdir()) if p.suffix.lower() in PHOTO_SUFFIXES]
    if source.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(source) as archive:
                out = []
                for info in archive.infolist():
                    name = info.filename.rsplit("/", 1)[-1]
                    if info.is_dir() or not name.lower().endswith(PHOTO_SUFFIXES) or name.startswith("."):
                        continue
                    if info.file_size > MAX_PHOTO_BYTES:
                        raise ImportRefusedError(f"{name} 超过 {MAX_PHOTO_BYTES // 1024 // 1024} MB / photo too large")
                    out.append((name, archive.read(info)))
                return sorted(out)
        except zipfile.BadZipFile as err:
            raise ImportRefusedError(f"{source.name} 不是有效的 zip 文件 / not a valid zip file") from err
    raise ImportRefusedError(f"{source} 应为文件夹或 .zip / photos come from a folder or a .zip file")


def import_photos(  # noqa: C901
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, source: Path, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Reference photos named <ID number>.jpg/.png: encode each once, store encrypted; all or none."""
    verifier = ctx.face_verifier
    if verifier is None:
        raise ConfigError('photo import needs a face verifier ([face] verifier = "dlib")')
    files = _photo_files(source)
    if not files:
        raise ImportRefusedError(f"{source.name} 中没有 .jpg/.png 照片 / no .jpg or .png photos found")
    problems: list[RowProblem] = []
    parsed: list[tuple[int, str, bytes]] = []
    for number, (name, data) in enumerate(files, start=1):
        stem = name.rsplit(".", 1)[0]
        try:
            parsed.append((number, id_number.validate(stem), data))
        except id_number.InvalidIdNumberError:
            problems.append(RowProblem(number, f"{name}: 文件名应为身份证号 / the file name must be the ID number"))
    hashes = roster.hashes_of(ctx.data_key, [p[1] for p in parsed])
    with uow:
        batch_id, _hotel = roster.batch_id_for(uow, batch_code)
        invited = roster.invited_hashes(uow, batch_id)
        expert_ids = roster.expert_ids_by_hash(uow, hashes)
    encoded: list[tuple[int, bytes, bytes]] = []
    for (number, id_value, data), id_hash in zip(parsed, hashes, strict=True):
        label = id_number.mask(id_value)
        if id_hash not in invited:
            problems.append(RowProblem(number, f"{label}: 不在本批次名单中 / not invited to the batch"))
            continue
        try:
            encoding = verifier.encode_reference(data)
        except FaceImageError as err:
            problems.append(RowProblem(number, f"{label}: {err}"))
            continue
        encoded.append((expert_ids[id_hash], data, encoding))
        if progress:
            progress(1)
    if problems:
        raise ImportRefusedError(
            f"{source.name}: {len(problems)}张照片有误，未导入 / "
            f"{len(problems)} bad photos (numbered in name order), nothing imported",
            problems,
        )
    with uow:
        for expert_id, data, encoding in encoded:
            roster.write_reference_photo(uow, ctx, expert_id, data, encoding)
        uow.commit()
    return ImportReport(len(encoded))


def write_invitation_template(path: Path) -> None:
    """An empty invitations spreadsheet with the header and the ID column formatted as text."""
    from openpyxl import Workbook  # noqa: PLC0415

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "邀请专家"
    sheet.append(["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"])
    for column, width in zip("ABCDEF", (22, 10, 15, 30, 16, 10), strict=True):
        sheet.column_dimensions[column].width = width
        for row in range(2, 1002):
            # Text format, so Excel keeps all 18 digits and the trailing X of ID numbers.
            sheet[f"{column}{row}"].number_format = "@"
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(buffer.getvalue())
