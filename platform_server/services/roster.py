"""Writing the roster: invited experts, rooms, wristbands, reference photos (validated input only).

`services.imports` reads and validates files and calls these; tests and the demo seed call them directly.
Large invitation lists are encrypted in worker processes (one SM4-GCM call per expert is ~10 µs, so
100 000 rows would otherwise take a second of the import's two-second budget).
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from personal_data import id_number
from personal_data.crypto import DataKey, encrypt, lookup_hash
from platform_server.db.models import Batch, Expert, Invitation, ReferencePhoto, Room, Wristband
from platform_server.errors import NotFoundError
from platform_server.services import audit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

PARALLEL_THRESHOLD = 5000  # rows; below this, worker processes cost more than they save
CHUNK = 10_000
MIN_WORKER_CPUS = 4
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


class PreparedInvitation(NamedTuple):
    """A validated row ready to write: personal numbers already hashed, masked and encrypted.

    A NamedTuple, not a dataclass: 100 000 of them cross from worker processes, and tuples pickle fast.
    """

    id_hash: str
    id_masked: str
    pii_encrypted: bytes
    name: str
    organisation: str
    specialty: str
    room: str


PII_SEPARATOR = "\x1f"  # ASCII unit separator: never part of an ID or phone number


def pii_plaintext(id_value: str, phone: str) -> bytes:
    """The expert's ID and phone as the one plaintext encrypted per expert."""
    return f"{id_value}{PII_SEPARATOR}{phone}".encode()


def pii_fields(plain: str) -> tuple[str, str]:
    """(ID number, phone) from a decrypted pii blob."""
    id_value, _, phone = plain.partition(PII_SEPARATOR)
    return id_value, phone


def prepare(key: DataKey, rows: Sequence[InvitationRow]) -> list[PreparedInvitation]:
    """Hash, mask and encrypt valid rows (one SM4-GCM call per expert, bound to its lookup hash)."""
    out = []
    hasher = hmac.new(key.lookup_key, digestmod="sm3")  # copied per row: saves the key set-up each time
    for r in rows:
        one = hasher.copy()
        one.update(r.id_number.encode())
        id_hash = one.hexdigest()
        blob = encrypt(key, pii_plaintext(r.id_number, r.phone), associated=id_hash.encode("ascii"))
        out.append(
            PreparedInvitation(id_hash, id_number.mask(r.id_number), blob, r.name, r.organisation, r.specialty, r.room)
        )
    return out


def in_workers(function: Callable[[Any], list[Any]], chunks: list[Any]) -> list[Any]:
    """Map `function` over chunks in worker processes when that pays, else here; results in order."""
    # Results cross back pickled (~1.4 s per 100 000 rows here), so two cores do not pay; four do.
    if len(chunks) < 2 or (os.cpu_count() or 1) < MIN_WORKER_CPUS:
        return [item for chunk in chunks for item in function(chunk)]
    # fork: children inherit the parsed rows and the function, and start in milliseconds.
    with multiprocessing.get_context("fork").Pool(min(os.cpu_count() or 2, 8)) as pool:
        return [item for part in pool.map(function, chunks) for item in part]


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
    rows: Sequence[PreparedInvitation],
    *,
    actor: str = "cli",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert experts (or refresh known ones) and their invitations, in the caller's open transaction.

    Uses the driver's executemany directly: at 100 000 rows the ORM's per-row parameter processing
    would cost more than the whole two-second import budget.
    """
    batch_id, _hotel = batch_id_for(uow, batch_code)
    connection = uow.session.connection()
    dialect = connection.dialect
    ph = "?" if dialect.paramstyle == "qmark" else "%s"
    now_bound = Expert.__table__.c.created_at.type.bind_processor(dialect)
    # The column type's own bind processing, applied once (UTC, and SQLite's text form of datetimes).
    now_value: Any = now_bound(ctx.clock()) if now_bound is not None else ctx.clock()
    existing = expert_ids_by_hash(uow, [r.id_hash for r in rows])
    new_rows = [
        (r.id_hash, r.id_masked, r.pii_encrypted, r.name, r.organisation, r.specialty, now_value)
        for r in rows
        if r.id_hash not in existing
    ]
    updates = [
        (r.id_masked, r.pii_encrypted, r.name, r.organisation, r.specialty, existing[r.id_hash])
        for r in rows
        if r.id_hash in existing
    ]
    if new_rows:
        before = uow.execute(sa.select(sa.func.coalesce(sa.func.max(Expert.id), 0))).scalar_one()
        connection.exec_driver_sql(
            "INSERT INTO experts (id_hash, id_masked, pii_encrypted, name, organisation, specialty, created_at) "  # noqa: S608
            f"VALUES ({', '.join([ph] * 7)})",
            new_rows,
        )
        wanted = {r[0] for r in new_rows}
        for id_hash, expert_id in uow.execute(sa.select(Expert.id_hash, Expert.id).where(Expert.id > before)).all():
            if id_hash in wanted:
                existing[str(id_hash)] = int(expert_id)
    if progress:
        progress(len(rows) // 2)
    if updates:
        connection.exec_driver_sql(
            f"UPDATE experts SET id_masked = {ph}, pii_encrypted = {ph}, name = {ph}, organisation = {ph}, "  # noqa: S608
            f"specialty = {ph} WHERE id = {ph}",
            updates,
        )
    rooms = room_ids(uow, batch_id) if any(r.room for r in rows) else {}
    invitations = [(batch_id, existing[r.id_hash], rooms[r.room] if r.room else None, 0, now_value) for r in rows]
    if invitations:
        connection.exec_driver_sql(
            "INSERT INTO invitations (batch_id, expert_id, room_id, face_failures, created_at) "  # noqa: S608
            f"VALUES ({', '.join([ph] * 5)})",
            invitations,
        )
    audit.record(
        uow,
        at=ctx.clock(),
        actor=actor,
        action="invitations_import",
        outcome="imported",
        batch_code=batch_code,
        detail={"rows": len(rows), "new_experts": len(new_rows)},
    )
    if progress:
        progress(len(rows) - len(rows) // 2)
    return len(rows)


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
