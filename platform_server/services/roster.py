"""Writing the roster: invited experts, rooms, wristbands, reference photos (validated input only).

`services.imports` reads and validates files and calls these; tests and the demo seed call them directly.
Invitations are written set-wise: each prepared chunk (services.spreadsheets.PreparedChunk) carries its
rows as a small SQLite image that the writer attaches (PostgreSQL: COPY into a temporary table), so
100 000 experts cost a few statements per chunk and no Python per row.
Personal numbers are sealed in pages (one SM4-GCM envelope per 256 experts, `pii_pages`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data.crypto import DataKey, DecryptionError, decrypt, encrypt, lookup_hash, open_records, seal_records
from platform_server.db.engine import IMPORT_STAGED_SCHEMA
from platform_server.db.models import Batch, Expert, Invitation, ReferencePhoto, Room, UtcDateTime, Wristband
from platform_server.errors import ImportRefusedError, NotFoundError, RowProblem
from platform_server.services import audit
from platform_server.services.spreadsheets import (
    PII_PAGE_AAD,
    PII_SEPARATOR,
    STAGED_COLUMNS,
    STAGED_TABLE,
    CheckedRow,
    CheckedRows,
    PreparedChunk,
    prepare_chunk,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Sequence

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext
    from platform_server.services.timeline import Timeline

_IN_CHUNK = 900  # stays under SQLite's default limit of host parameters per statement


@dataclass(frozen=True, slots=True)
class InvitationRow:
    """One validated row of an invitation list."""

    id_number: str
    name: str
    phone: str
    organisation: str
    specialty: str
    room: str = ""


def pii_plaintext(id_value: str, phone: str) -> bytes:
    """The expert's ID and phone as one record (of a page, or of a pre-page per-expert blob)."""
    return f"{id_value}{PII_SEPARATOR}{phone}".encode()


def pii_fields(plain: str) -> tuple[str, str]:
    """(ID number, phone) from a decrypted record."""
    id_value, _, phone = plain.partition(PII_SEPARATOR)
    return id_value, phone


def prepare(key: DataKey, rows: Sequence[InvitationRow]) -> PreparedChunk:
    """Hash, mask and page-seal validated rows (row numbers 1.. in the given order)."""
    checked: list[CheckedRow] = [
        (n, r.id_number, r.name, r.phone, r.organisation, r.specialty, r.room) for n, r in enumerate(rows, start=1)
    ]
    return prepare_chunk(key, CheckedRows.from_rows(checked))


# The SQLite writer attaches each chunk's staging image (PreparedChunk.staged) as a schema of its own
# connection and writes with set-wise SQL; the ids of new pages and experts are assigned here (the
# write lock is held from BEGIN IMMEDIATE), so nothing needs RETURNING and experts go in in hash order.
# PostgreSQL copies the staged rows into a temporary table (COPY) and takes ids from the sequences.
_SQLITE_ROWS = f"{IMPORT_STAGED_SCHEMA}.{STAGED_TABLE}"
_PG_ROWS = "import_rows"
_PG_ROWS_TABLE = (
    "n INTEGER, row INTEGER, id_hash VARCHAR(64), id_masked VARCHAR(18), page INTEGER, slot INTEGER,"
    " name VARCHAR(100), organisation VARCHAR(200), specialty VARCHAR(200), room VARCHAR(16)"
)
# Big enough for a whole import's pages, so none is spilled to the WAL before the commit writes it.
IMPORT_CACHE_KIB = 262_144
_NOW = sa.bindparam("now", type_=UtcDateTime())


def _sql(template: str, rows: str) -> sa.TextClause:
    """A statement over the staged rows: `{rows}` is the staging table's (fixed, trusted) name."""
    return sa.text(template.replace("{rows}", rows).replace("{room_id}", _ROOM_ID).replace("{update}", _EXPERT_UPDATE))


_KNOWN = (
    "SELECT s.row, e.id, e.pii_page_id, i.id FROM {rows} s JOIN experts e ON e.id_hash = s.id_hash "
    "LEFT JOIN invitations i ON i.batch_id = :batch_id AND i.expert_id = e.id"
)
_ROOM_PROBLEMS = (
    "SELECT s.row, s.room, r.id FROM {rows} s "
    "LEFT JOIN rooms r ON r.batch_id = :batch_id AND r.number = s.room "
    "WHERE s.room <> '' AND (r.id IS NULL OR EXISTS (SELECT 1 FROM invitations i WHERE i.room_id = r.id))"
)
_EXPERT_UPDATE = (
    " ON CONFLICT (id_hash) DO UPDATE SET id_masked = excluded.id_masked, pii_page_id = excluded.pii_page_id,"
    " pii_slot = excluded.pii_slot, pii_encrypted = NULL, name = excluded.name,"
    " organisation = excluded.organisation, specialty = excluded.specialty"
)
_ROOM_ID = (
    "CASE WHEN s.room = '' THEN NULL ELSE"
    " (SELECT r.id FROM rooms r WHERE r.batch_id = :batch_id AND r.number = s.room) END"
)
_INVITATIONS = (
    "INSERT INTO invitations (batch_id, expert_id, room_id, face_failures, created_at) "
    "SELECT :batch_id, e.id, {room_id}, 0, :now FROM {rows} s JOIN experts e ON e.id_hash = s.id_hash ORDER BY e.id"
)
_SQLITE_CHECK = {"known": _sql(_KNOWN, _SQLITE_ROWS), "rooms": _sql(_ROOM_PROBLEMS, _SQLITE_ROWS)}
_PG_CHECK = {"known": _sql(_KNOWN, _PG_ROWS), "rooms": _sql(_ROOM_PROBLEMS, _PG_ROWS)}
# SQLite: ids are the next free ones plus the row's rank (pages: plus its page index).
_SQLITE_EXPERTS = _sql(
    "INSERT INTO experts (id, id_hash, id_masked, pii_page_id, pii_slot, pii_encrypted, name, organisation,"
    " specialty, created_at) SELECT :first_expert + s.n, s.id_hash, s.id_masked, :first_page + s.page, s.slot,"
    " NULL, s.name, s.organisation, s.specialty, :now FROM {rows} s WHERE true ORDER BY s.n{update}",
    _SQLITE_ROWS,
).bindparams(_NOW)
_SQLITE_NEW_INVITATIONS = _sql(
    "INSERT INTO invitations (batch_id, expert_id, room_id, face_failures, created_at) "
    "SELECT :batch_id, :first_expert + s.n, {room_id}, 0, :now FROM {rows} s ORDER BY s.n",
    _SQLITE_ROWS,
).bindparams(_NOW)
_SQLITE_INVITATIONS = _sql(_INVITATIONS, _SQLITE_ROWS).bindparams(_NOW)
_PAGES = sa.text(
    "INSERT INTO pii_pages (id, sealed, records, created_at) VALUES (:id, :sealed, :records, :now)"
).bindparams(_NOW, sa.bindparam("sealed", type_=sa.LargeBinary()))
# PostgreSQL: ids from the sequences (explicit ids would leave a sequence behind the table).
_PG_PAGE_IDS = sa.text("SELECT nextval(pg_get_serial_sequence('pii_pages', 'id')) FROM generate_series(1, :count)")
_PG_EXPERTS = _sql(
    "INSERT INTO experts (id_hash, id_masked, pii_page_id, pii_slot, pii_encrypted, name, organisation,"
    " specialty, created_at) SELECT s.id_hash, s.id_masked, p.id, s.slot, NULL, s.name, s.organisation,"
    " s.specialty, :now FROM {rows} s JOIN import_pages p ON p.page = s.page WHERE true ORDER BY s.n{update}",
    _PG_ROWS,
).bindparams(_NOW)
_PG_INVITATIONS = _sql(_INVITATIONS, _PG_ROWS).bindparams(_NOW)


def _raw_cursor(connection: sa.Connection) -> Any:
    """The driver's own cursor in the connection's transaction (psycopg's COPY needs it)."""
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class ChunkCheck:
    """What the database says about a prepared chunk before it is written."""

    problems: list[RowProblem]
    known_experts: int
    replaced_pages: set[int]


def any_experts(uow: UnitOfWork) -> bool:
    """True when the platform knows any expert yet (a first import can skip looking for known ones)."""
    return uow.execute(sa.text("SELECT 1 FROM experts LIMIT 1")).first() is not None


class InvitationWriter:
    """Checks and writes an import's prepared chunks in the caller's open transaction.

    For each chunk: stage() makes its rows visible to SQL, check() names rows already invited or
    naming a room outside the pool or pre-assigned, write() inserts pages, experts (refreshing known
    ones, whose old page records are then blanked) and invitations.
    """

    def __init__(
        self, uow: UnitOfWork, ctx: ServiceContext, batch_id: int, *, timeline: Timeline | None = None
    ) -> None:
        """Look once whether any expert exists (a first import skips looking the chunks' experts up)."""
        self._uow = uow
        self._ctx = ctx
        self._batch_id = batch_id
        self._mark = timeline.mark if timeline is not None else _no_mark
        # Within one file an ID number appears once (or the file is refused), so when no expert existed
        # before, none of the file's can be known: skip that lookup for every chunk.
        self._experts_may_exist = any_experts(uow)
        self._connection = uow.session.connection()
        self._now = ctx.clock()

    def check(self, chunk: PreparedChunk) -> ChunkCheck:
        """Stage the chunk and check it against the database."""
        self._stage(chunk)
        sql = _PG_CHECK if self._uow.is_postgres else _SQLITE_CHECK
        params = {"batch_id": self._batch_id}
        problems: list[RowProblem] = []
        known = self._uow.execute(sql["known"], params).all() if self._experts_may_exist else []
        problems += [
            RowProblem(int(n), "该专家已在本批次名单中 / this expert is already invited to the batch")
            for n, _e, _p, invitation in known
            if invitation is not None
        ]
        if chunk.rooms:
            for n, room, room_id in self._uow.execute(sql["rooms"], params).all():
                if room_id is None:
                    message = f"房间{room}不在本批次房源中 / room {room} is not in the batch's rooms"
                else:
                    message = f"房间{room}已预分配给他人 / room {room} is already pre-assigned"
                problems.append(RowProblem(int(n), message))
        self._mark("  staged and checked against the database")
        return ChunkCheck(problems, len(known), {int(page) for _n, _e, page, _i in known if page is not None})

    def write(self, chunk: PreparedChunk, check: ChunkCheck) -> None:
        """Insert the staged chunk (after check() found no problem in it)."""
        if not chunk.count:
            return
        if self._uow.is_postgres:
            self._write_postgres(chunk)
        else:
            self._write_sqlite(chunk, known=check.known_experts > 0)
        self._mark("  pages, experts and invitations inserted")
        if check.replaced_pages:
            reseal_pages(self._uow, self._ctx.data_key, check.replaced_pages)
            self._mark("  old pages of known experts re-sealed")

    def _stage(self, chunk: PreparedChunk) -> None:
        if self._uow.is_postgres:
            self._stage_postgres(chunk)
            return
        proxied = self._connection.connection
        driver: sqlite3.Connection = proxied.driver_connection  # type: ignore[assignment]
        if not proxied.info.get(IMPORT_STAGED_SCHEMA):
            # Detached again when the connection goes back to the pool (db.engine).
            driver.execute(f"ATTACH DATABASE ':memory:' AS {IMPORT_STAGED_SCHEMA}")
            driver.execute(f"PRAGMA main.cache_size = -{IMPORT_CACHE_KIB}")
            proxied.info[IMPORT_STAGED_SCHEMA] = True
        driver.deserialize(chunk.staged, name=IMPORT_STAGED_SCHEMA)

    def _stage_postgres(self, chunk: PreparedChunk) -> None:
        connection = self._connection
        connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_ROWS} ({_PG_ROWS_TABLE}) ON COMMIT DROP")
        connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE IF NOT EXISTS import_pages (page INTEGER, id INTEGER) ON COMMIT DROP"
        )
        connection.exec_driver_sql(f"TRUNCATE {_PG_ROWS}, import_pages")
        with _raw_cursor(connection).copy(f"COPY {_PG_ROWS} ({', '.join(STAGED_COLUMNS)}) FROM STDIN") as copy:
            for row in chunk.rows():
                copy.write_row(row)

    def _write_sqlite(self, chunk: PreparedChunk, *, known: bool) -> None:
        uow = self._uow
        first_page = int(uow.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM pii_pages")).scalar_one())
        uow.execute(
            _PAGES,
            [
                {"id": first_page + index, "sealed": sealed, "records": records, "now": self._now}
                for index, (sealed, records) in enumerate(zip(chunk.pages, chunk.page_records, strict=True))
            ],
        )
        first_expert = int(uow.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM experts")).scalar_one())
        params = {
            "batch_id": self._batch_id,
            "now": self._now,
            "first_page": first_page,
            "first_expert": first_expert,
        }
        uow.execute(_SQLITE_EXPERTS, params)
        # A known expert keeps its id, so only a chunk of new experts knows every expert id without a join.
        uow.execute(_SQLITE_INVITATIONS if known else _SQLITE_NEW_INVITATIONS, params)

    def _write_postgres(self, chunk: PreparedChunk) -> None:
        uow = self._uow
        page_ids = [int(i) for i in uow.execute(_PG_PAGE_IDS, {"count": len(chunk.pages)}).scalars()]
        uow.execute(
            _PAGES,
            [
                {"id": page_id, "sealed": sealed, "records": records, "now": self._now}
                for page_id, sealed, records in zip(page_ids, chunk.pages, chunk.page_records, strict=True)
            ],
        )
        with _raw_cursor(self._connection).copy("COPY import_pages (page, id) FROM STDIN") as copy:
            for pair in enumerate(page_ids):
                copy.write_row(pair)
        params = {"batch_id": self._batch_id, "now": self._now}
        uow.execute(_PG_EXPERTS, params)
        uow.execute(_PG_INVITATIONS, params)


def _no_mark(_phase: str) -> None:
    """Timeline.mark when nobody is timing."""


def reseal_pages(uow: UnitOfWork, key: DataKey, page_ids: Iterable[int]) -> int:
    """Blank the records no expert points to any more (moved to a newer page) and re-seal those pages.

    A re-imported expert's old record would otherwise stay readable in its old page after the expert's
    data changed; erasing an expert's personal numbers works the same way.
    """
    wanted = sorted(set(page_ids))
    resealed = 0
    for start in range(0, len(wanted), _IN_CHUNK):
        part = wanted[start : start + _IN_CHUNK]
        live: dict[int, dict[int, str]] = {p: {} for p in part}
        for page_id, slot, id_hash in uow.execute(
            sa.select(Expert.pii_page_id, Expert.pii_slot, Expert.id_hash).where(Expert.pii_page_id.in_(part))
        ).all():
            live[int(page_id)][int(slot)] = str(id_hash)
        for page_id, sealed in uow.execute(
            sa.text("SELECT id, sealed FROM pii_pages WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": part},
        ).all():
            records = open_records(key, sealed, PII_PAGE_AAD)
            keep = live[int(page_id)]
            kept = [record if slot in keep else b"" for slot, record in enumerate(records)]
            if kept == records:
                continue
            uow.execute(
                sa.text("UPDATE pii_pages SET sealed = :sealed, records = :records WHERE id = :id").bindparams(
                    sa.bindparam("sealed", type_=sa.LargeBinary())
                ),
                {"sealed": seal_records(key, kept, PII_PAGE_AAD), "records": len(keep), "id": page_id},
            )
            resealed += 1
    return resealed


@dataclass(frozen=True, slots=True)
class StoredPii:
    """Where an expert's personal numbers are: a page record, or (before pages) the expert's own blob."""

    id_hash: str
    page_id: int | None
    slot: int | None
    legacy_blob: bytes | None


def personal_numbers(uow: UnitOfWork, key: DataKey, stored: Sequence[StoredPii]) -> list[tuple[str, str]]:
    """(ID number, phone) of each expert, opening each page once; DecryptionError if anything was altered."""
    pages: dict[int, list[bytes]] = {}
    wanted = sorted({s.page_id for s in stored if s.page_id is not None})
    for start in range(0, len(wanted), _IN_CHUNK):
        part = wanted[start : start + _IN_CHUNK]
        for page_id, sealed in uow.execute(
            sa.text("SELECT id, sealed FROM pii_pages WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": part},
        ).all():
            pages[int(page_id)] = open_records(key, sealed, PII_PAGE_AAD)
    out: list[tuple[str, str]] = []
    for s in stored:
        if s.page_id is not None and s.slot is not None:
            records = pages.get(s.page_id, [])
            fields = pii_fields(records[s.slot].decode()) if s.slot < len(records) else ("", "")
            # The record must be this expert's: a page moved under another row does not authenticate.
            if not fields[0] or lookup_hash(key, fields[0]) != s.id_hash:
                raise DecryptionError("a sealed record does not belong to the expert that points to it")
            out.append(fields)
        elif s.legacy_blob is not None:
            out.append(pii_fields(decrypt(key, s.legacy_blob, associated=s.id_hash.encode()).decode()))
        else:
            out.append(("", ""))
    return out


def hashes_of(key: DataKey, id_values: Sequence[str]) -> list[str]:
    """Keyed lookup hashes of ID numbers."""
    return [lookup_hash(key, v) for v in id_values]


def batch_id_for(uow: UnitOfWork, code: str) -> tuple[int, int]:
    """(batch id, hotel id) of a batch code, or NotFoundError."""
    row = uow.execute(sa.select(Batch.id, Batch.hotel_id).where(Batch.code == code)).first()
    if row is None:
        raise NotFoundError(f"批次 {code} 不存在 / batch {code} does not exist")
    return int(row[0]), int(row[1])


def invited_hashes(uow: UnitOfWork, batch_id: int) -> set[str]:
    """Lookup hashes of everyone already invited to the batch."""
    return set(
        uow.execute(
            sa.select(Expert.id_hash)
            .join(Invitation, Invitation.expert_id == Expert.id)
            .where(Invitation.batch_id == batch_id)
        ).scalars()
    )


def room_ids(uow: UnitOfWork, batch_id: int) -> dict[str, int]:
    """Room number to id for the batch's pool."""
    return dict(uow.execute(sa.select(Room.number, Room.id).where(Room.batch_id == batch_id)).all())


def reserved_rooms(uow: UnitOfWork, batch_id: int) -> set[int]:
    """Rooms already pre-assigned to an invitation of the batch."""
    return set(
        uow.execute(
            sa.select(Invitation.room_id).where(Invitation.batch_id == batch_id, Invitation.room_id.is_not(None))
        ).scalars()
    )


def write_invitations(
    uow: UnitOfWork,
    ctx: ServiceContext,
    batch_code: str,
    prepared: PreparedChunk | Sequence[PreparedChunk],
    *,
    actor: str = "cli",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert experts (or refresh known ones) and their invitations, in the caller's open transaction.

    Rows already invited to the batch or naming unusable rooms raise ImportRefusedError (nothing written
    once the caller rolls back); services.imports checks them first and names every row.
    """
    batch_id, _hotel = batch_id_for(uow, batch_code)
    chunks = [prepared] if isinstance(prepared, PreparedChunk) else list(prepared)
    writer = InvitationWriter(uow, ctx, batch_id)
    total = known = 0
    for chunk in chunks:
        check = writer.check(chunk)
        if check.problems:
            raise ImportRefusedError(
                f"{len(check.problems)}行有误，未导入 / {len(check.problems)} bad rows, nothing imported",
                check.problems,
            )
        writer.write(chunk, check)
        total += chunk.count
        known += check.known_experts
        if progress:
            progress(chunk.count)
    audit_invitations(uow, ctx, batch_code, total, total - known, actor=actor)
    return total


def audit_invitations(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, rows: int, new_experts: int, *, actor: str
) -> None:
    """The audit row of an invitation import, in its transaction."""
    audit.record(
        uow,
        at=ctx.clock(),
        actor=actor,
        action="invitations_import",
        outcome="imported",
        batch_code=batch_code,
        detail={"rows": rows, "new_experts": new_experts},
    )


def write_rooms(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, numbers: Sequence[str], actor: str = "cli"
) -> int:
    """Add room numbers to the batch's pool (in the batch's hotel), in the caller's transaction."""
    batch_id, hotel_id = batch_id_for(uow, batch_code)
    if numbers:
        uow.session.connection().execute(
            sa.insert(Room.__table__),  # type: ignore[arg-type]
            [{"batch_id": batch_id, "hotel_id": hotel_id, "number": n} for n in numbers],
        )
    audit.record(
        uow,
        at=ctx.clock(),
        actor=actor,
        action="rooms_import",
        outcome="imported",
        batch_code=batch_code,
        detail={"rooms": len(numbers)},
    )
    return len(numbers)


def write_bands(uow: UnitOfWork, ctx: ServiceContext, bands: Sequence[tuple[str, str]], actor: str = "cli") -> int:
    """Add wristbands (rfid_uid, uwb_tag_id) to the inventory as in_stock, in the caller's transaction."""
    now = ctx.clock()
    if bands:
        uow.session.connection().execute(
            sa.insert(Wristband.__table__),  # type: ignore[arg-type]
            [{"rfid_uid": u, "uwb_tag_id": t, "state": "in_stock", "updated_at": now} for u, t in bands],
        )
    audit.record(uow, at=now, actor=actor, action="bands_import", outcome="imported", detail={"bands": len(bands)})
    return len(bands)


def write_reference_photo(  # noqa: PLR0917
    uow: UnitOfWork, ctx: ServiceContext, expert_id: int, image: bytes, encoding: bytes, actor: str = "cli"
) -> None:
    """Store (or replace) an expert's photo and its face encoding, both encrypted."""
    now = ctx.clock()
    values = {
        "image_encrypted": encrypt(ctx.data_key, image, associated=b"reference-photo"),
        "encoding_encrypted": encrypt(ctx.data_key, encoding, associated=b"face-encoding"),
        "image_sha256": hashlib.sha256(image).hexdigest(),
        "updated_at": now,
    }
    current = uow.execute(
        sa.select(ReferencePhoto.id).where(ReferencePhoto.expert_id == expert_id)
    ).scalar_one_or_none()
    if current is None:
        uow.execute(sa.insert(ReferencePhoto).values(expert_id=expert_id, **values))
    else:
        uow.execute(sa.update(ReferencePhoto).where(ReferencePhoto.id == current).values(**values))
    audit.record(
        uow,
        at=now,
        actor=actor,
        action="reference_photo",
        outcome="replaced" if current else "stored",
        detail={"expert": expert_id},
    )


def expert_ids_by_hash(uow: UnitOfWork, hashes: Sequence[str]) -> dict[str, int]:
    """Expert ids for the lookup hashes that exist (one scan when the list is large, else chunked IN)."""
    wanted = set(hashes)
    if not wanted:
        return {}
    total = int(uow.execute(sa.select(sa.func.count()).select_from(Expert)).scalar_one())
    found: dict[str, int] = {}
    if total <= 4 * len(wanted):
        for id_hash, expert_id in uow.execute(sa.select(Expert.id_hash, Expert.id)).all():
            if id_hash in wanted:
                found[str(id_hash)] = int(expert_id)
        return found
    hash_list = sorted(wanted)
    for start in range(0, len(hash_list), _IN_CHUNK):
        part = hash_list[start : start + _IN_CHUNK]
        found.update(uow.execute(sa.select(Expert.id_hash, Expert.id).where(Expert.id_hash.in_(part))).all())
    return found
