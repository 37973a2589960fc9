"""Organiser imports: invitations, rooms, wristbands, reference photos. All rows or none.

Every row is validated first; a file with any bad row is refused as a whole, naming each bad row's
number (as Excel shows it) and the reason. Writes happen in one transaction that commits only when
every row passed, so a refused file leaves nothing behind.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import openpyxl
import sqlalchemy as sa

from personal_data import id_number
from platform_server.db.models import Room, Wristband
from platform_server.errors import ConfigError, ImportRefusedError, RowProblem
from platform_server.face.api import FaceImageError, FaceImageProblem
from platform_server.face.defaults import DEFAULT_MAX_PIXELS
from platform_server.face.reference_photos import (
    NOT_AN_IMAGE,
    ReferencePhotoError,
    normalise_reference,
    problem_words,
    sniff_format,
)
from platform_server.services import file_limits, reference_set, roster
from platform_server.services.check_in import normalise_uid
from platform_server.services.spreadsheets import (
    ROOM,
    InvitationReader,
    cell_text,
    read_table,
    room_payload_problem,
)
from uwb.models import RESERVED_TAG_IDS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

ROOM_COLUMNS: dict[str, tuple[str, ...]] = {"room": ("房间号", "房间", "roomnumber", "number")}
BAND_COLUMNS: dict[str, tuple[str, ...]] = {"rfid_uid": ("uid", "rfid"), "uwb_tag_id": ("tagid", "uwbtag", "tag")}
TAG = re.compile(r"^[0-9A-F]{4}$")
# Names only pick the files to look at; the format is told by content (face/reference_photos.py).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
MAX_PHOTO_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote."""

    rows: int
    detail: str = ""


def import_invitations(
    uow: UnitOfWork,
    ctx: ServiceContext,
    batch_code: str,
    path: Path,
    progress: Callable[[int], None] | None = None,
    *,
    reader: InvitationReader | None = None,
    actor: str = "cli",
) -> ImportReport:
    """Check every row of the file, then write them all in one transaction, or nothing.

    `reader` is the CLI's reader process, started before the platform so the file is parsed meanwhile;
    without one the file is read here. Each prepared chunk is checked against the database (already
    invited, rooms of the batch) and written in the one open transaction; any problem in any chunk
    rolls everything back and names every bad row.
    """
    reader = reader or InvitationReader.in_process(path)
    timeline = reader.timeline
    try:
        with uow:
            batch_id, _hotel = roster.batch_id_for(uow, batch_code)
            writer = roster.InvitationWriter(uow, ctx, batch_id, timeline=timeline)
            timeline.mark("transaction open, batch found")
            problems: list[RowProblem] = []
            total = known = 0
            for chunk in reader.chunks(ctx.data_key):
                timeline.mark(f"chunk of {chunk.count} received")
                check = writer.check(chunk)
                problems += check.problems
                if not problems:  # after the first problem only check: the transaction will roll back
                    writer.write(chunk, check)
                total += chunk.count
                known += check.known_experts
                if progress:
                    progress(chunk.count)
            problems += reader.problems
            if problems:
                problems.sort(key=lambda p: p.row)
                raise ImportRefusedError(
                    f"{path.name}: {len(problems)}行有误，未导入任何数据 / {len(problems)} bad rows, nothing imported",
                    problems,
                )
            roster.audit_invitations(uow, ctx, batch_code, total, total - known, actor=actor)
            uow.commit()
            timeline.mark("committed")
    finally:
        reader.close()
    return ImportReport(total)


def import_rooms(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, path: Path, *, actor: str = "cli"
) -> ImportReport:
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
        elif room_payload_problem(room):
            problems.append(RowProblem(number, room_payload_problem(room)))
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
        count = roster.write_rooms(uow, ctx, batch_code, numbers, actor=actor)
        uow.commit()
    return ImportReport(count)


def import_bands(  # noqa: C901
    uow: UnitOfWork, ctx: ServiceContext, path: Path, *, actor: str = "cli"
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
        elif int(tag, 16) in RESERVED_TAG_IDS:
            reasons.append(
                f"标签号{tag}是保留地址（0000为未配置、FFFF为广播） / uwb_tag_id {tag} is reserved "
                "(0000 unset, FFFF broadcast): not a band's address"
            )
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
        count = roster.write_bands(uow, ctx, bands, actor=actor)
        uow.commit()
    return ImportReport(count)


def _open_photo_zip(source: Path) -> zipfile.ZipFile:
    """The photo zip, once its central directory is within PHOTO_LIMITS (before anything is extracted).

    Entries, total uncompressed size, names that climb out of the folder and nested archives; a photo
    folder gets the same bounds from file_limits.check_folder().
    """
    archive = file_limits.open_zip(source, file_limits.PHOTO_LIMITS)
    try:
        file_limits.check_zip(archive, file_limits.PHOTO_LIMITS, source.name)
    except ImportRefusedError:
        archive.close()
        raise
    return archive


def _photo_files(source: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every photo in a folder or a zip."""
    if source.is_dir():
        file_limits.check_folder(source, file_limits.PHOTO_LIMITS)
        return [(p.name, p.read_bytes()) for p in sorted(source.iterdir()) if p.suffix.lower() in PHOTO_SUFFIXES]
    if source.suffix.lower() == ".zip":
        try:
            with _open_photo_zip(source) as archive:
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


def import_photos(  # noqa: C901, PLR0912, PLR0915  (one pass over the files, all or none)
    uow: UnitOfWork,
    ctx: ServiceContext,
    batch_code: str,
    source: Path,
    progress: Callable[[int], None] | None = None,
    *,
    actor: str = "cli",
) -> ImportReport:
    """Reference photos named <ID number>.jpg/.png/.webp/.heic: encode each once, store encrypted; all or none.

    Several photos of one expert are named <ID number>_1.jpg, <ID number>_2.jpg, ... (at most 5); an
    expert's photos in an import replace all of their earlier ones.

    The format is told by content; WebP and HEIC are converted to JPEG once, here, and stored so.
    """
    verifier = ctx.face_verifier
    if verifier is None:
        raise ConfigError('photo import needs a face verifier ([face] verifier = "dlib")')
    files = _photo_files(source)
    if not files:
        raise ImportRefusedError(
            f"{source.name} 中没有照片（.jpg/.png/.webp/.heic）/ no photos (.jpg, .png, .webp, .heic) found"
        )
    problems: list[RowProblem] = []
    parsed: list[tuple[int, str, bytes]] = []
    positions: dict[int, int] = {}  # file number -> its place in the expert's set (ID_2.jpg: 2)
    seen: dict[tuple[str, int], str] = {}
    for number, (name, data) in enumerate(files, start=1):
        stem = name.rsplit(".", 1)[0]
        try:
            id_text, position = reference_set.parse_photo_name(stem)
            id_value = id_number.validate(id_text)
        except ValueError as err:
            why = str(err) if not isinstance(err, id_number.InvalidIdNumberError) else ""
            problems.append(
                RowProblem(
                    number,
                    why or f"{name}: 文件名应为身份证号（或 身份证号_序号）/ the file name must be the ID number",
                )
            )
            continue
        if (id_value, position) in seen:
            problems.append(
                RowProblem(number, f"{name}: 与 {seen[id_value, position]} 重复 / the same photo number twice")
            )
            continue
        seen[id_value, position] = name
        positions[number] = position
        parsed.append((number, id_value, data))
    hashes = roster.hashes_of(ctx.data_key, [p[1] for p in parsed])
    with uow:
        batch_id, _hotel = roster.batch_id_for(uow, batch_code)
        invited = roster.invited_hashes(uow, batch_id)
        expert_ids = roster.expert_ids_by_hash(uow, hashes)
    encoded: list[tuple[int, int, bytes, bytes]] = []
    for (number, id_value, data), id_hash in zip(parsed, hashes, strict=True):
        label = id_number.mask(id_value)
        if id_hash not in invited:
            problems.append(RowProblem(number, f"{label}: 不在本批次名单中 / not invited to the batch"))
            continue
        kind = sniff_format(data)
        try:
            if kind is not None:  # unknown content goes to the verifier, which has the last word
                data = normalise_reference(  # noqa: PLW2901  (the photo as stored: converted once, here)
                    data, max_bytes=MAX_PHOTO_BYTES, max_pixels=DEFAULT_MAX_PIXELS
                )
            encoding = verifier.encode_reference(data)
        except ReferencePhotoError as err:
            problems.append(RowProblem(number, f"{label}: {err}"))
            continue
        except FaceImageError as err:
            words = NOT_AN_IMAGE if kind is None and err.problem is FaceImageProblem.UNDECODABLE else problem_words(err)
            problems.append(RowProblem(number, f"{label}: {words} ({err})"))
            continue
        encoded.append((expert_ids[id_hash], positions[number], data, encoding))
        if progress:
            progress(1)
    if problems:
        raise ImportRefusedError(
            f"{source.name}: {len(problems)}张照片有误，未导入 / "
            f"{len(problems)} bad photos (numbered in name order), nothing imported",
            problems,
        )
    sets: dict[int, list[tuple[int, bytes, bytes]]] = {}
    for expert_id, position, data, encoding in encoded:
        sets.setdefault(expert_id, []).append((position, data, encoding))
    with uow:
        for expert_id, photos in sets.items():
            # The whole set replaces the earlier one, in photo-number order (ID.jpg / ID_1.jpg first).
            ordered = [(data, encoding) for _position, data, encoding in sorted(photos, key=lambda p: p[0])]
            reference_set.write_reference_set(uow, ctx, expert_id, ordered, actor)
        uow.commit()
    return ImportReport(len(encoded))


def write_invitation_template(path: Path) -> None:
    """An empty invitations spreadsheet with the header and the ID column formatted as text."""
    workbook = openpyxl.Workbook()
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
