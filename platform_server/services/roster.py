"""Writing the roster: invited experts, rooms, wristbands, reference photos (validated input only).

`services.imports` reads and validates files and calls these; tests and the demo seed call them directly.
Large invitation lists are encrypted in worker processes (one SM4-GCM call per expert is ~10 µs, so
100 000 rows would otherwise take a second of the import's two-second budget).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

PARALLEL_THRESHOLD = 5000
CHUNK = 5000
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


def pii_blob(key: DataKey, id_value: str, phone: str, id_hash: str) -> bytes:
    """The expert's ID and phone as one SM4-GCM blob bound to its lookup hash."""
    plain = json.dumps({"id": id_value, "phone": phone}, ensure_ascii=False).encode("utf-8")
    return encrypt(key, plain, associated=id_hash.encode("ascii"))


def _encrypt_chunk(args: tuple[bytes, bytes, list[tuple[str, str, str]]]) -> list[bytes]:
    """Worker: encrypt one chunk of (id, phone, hash)."""
    key = DataKey(args[0], args[1])
    return [pii_blob(key, i, p, h) for i, p, h in args[2]]


def encrypt_many(key: DataKey, items: list[tuple[str, str, str]]) -> list[bytes]:
    """pii_blob() for many rows, across processes when there are enough to pay for them."""
    if len(items) < PARALLEL_THRESHOLD or (os.cpu_count() or 1) < 2:
        return _encrypt_chunk((key.encryption_key, key.lookup_key, items))
    chunks = [(key.encryption_key, key.lookup_key, items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]
    # fork: the children need nothing but the function and their chunk, and start in milliseconds.
    with multiprocessing.get_context("fork").Pool(min(os.cpu_count() or 2, 8)) as pool:
        return [blob for part in pool.map(_encrypt_chunk, chunks) for blob in part]


def hashes_of(key: DataKey, id_values: Sequence[str]) -> list[str]:
    """Keyed lookup hashes of ID numbers."""
    return [lookup_hash(key, v) for v in id_values]


def batch_id_for(uow: UnitOfWork, code: str) -> tuple[int, int]:
    """(batch id, hotel id) of a batch code, or NotFoundError."""
    row = uow.execute(sa.select(Batch.id, Batch.hotel_id).where(Batch.code == code)).first()
    if row is None:
        raise NotFoundError(f"批次 {code} 不存在 / batch {code} does not exist")
    return int(row[0]), int(row[1])  # type: ignore[call-overload]


def invited_hashes(uow: UnitOfWork, batch_id: int) -> set[str]:
    """Lookup hashes of everyone already invited to the batch."""
    return set(
        uow.execute(  # type: ignore[arg-type]
            sa.select(Expert.id_hash).join(Invitation, Invitation.expert_id == Expert.id).where(
                Invitation.batch_id == batch_id
            )
        ).scalars()
    )


def room_ids(uow: UnitOfWork, batch_id: int) -> dict[str, int]:
    """Room number to id for the batch's pool."""
    return dict(uow.execute(sa.select(Room.number, Room.id).where(Room.batch_id == batch_id)).all())  # type: ignore[arg-type]


def reserved_rooms(uow: UnitOfWork, batch_id: int) -> set[int]:
    """Rooms already pre-assigned to an invitation of the batch."""
    return set(
        uow.execute(  # type: ignore[arg-type]
            sa.select(Invitation.room_id).where(Invitation.batch_id == batch_id, Invitation.room_id.is_not(None))
        ).scalars()
    )


def write_invitations(
    uow: UnitOfWork,
    ctx: ServiceContext,
    batch_code: str,
    rows: Sequence[InvitationRow],
    hashes: Sequence[str],
    *,
    actor: str = "cli",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert experts (or refresh known ones) and their invitations, in the caller's open transaction."""
    batch_id, _hotel = batch_id_for(uow, batch_code)
    now = ctx.clock()
    blobs = encrypt_many(ctx.data_key, [(r.id_number, r.phone, h) for r, h in zip(rows, hashes, strict=True)])
    if progress:
        progress(len(rows) // 2)
    existing: dict[str, int] = {}
    hash_list = list(hashes)
    for start in range(0, len(hash_list), _IN_CHUNK):
        part = hash_list[start : start + _IN_CHUNK]
        existing.update(uow.execute(sa.select(Expert.id_hash, Expert.id).where(Expert.id_hash.in_(part))).all())  # type: ignore[arg-type]
    new_rows = []
    updates = []
    for row, id_hash, blob in zip(rows, hashes, blobs, strict=True):
        values = {
            "id_masked": id_number.mask(row.id_number),
            "pii_encrypted": blob,
            "name": row.name,
            "organisation": row.organisation,
            "specialty": row.specialty,
        }
        if id_hash in existing:
            updates.append({"b_id": existing[id_hash], **values})
        else:
            new_rows.append({"id_hash": id_hash, "created_at": now, **values})
    if new_rows:
        inserted = uow.execute(
            sa.insert(Expert).returning(Expert.id_hash, Expert.id, sort_by_parameter_order=True), new_rows
        ).all()
        existing.update(dict(inserted))  # type: ignore[arg-type]
    if updates:
        uow.session.connection().execute(
            sa.update(Expert.__table__)  # type: ignore[arg-type]
            .where(Expert.__table__.c.id == sa.bindparam("b_id"))
            .values({k: sa.bindparam(k) for k in ("id_masked", "pii_encrypted", "name", "organisation", "specialty")}),
            updates,
        )
    rooms = room_ids(uow, batch_id) if any(r.room for r in rows) else {}
    invitations = [
        {
            "batch_id": batch_id,
            "expert_id": existing[h],
            "room_id": rooms[r.room] if r.room else None,
            "face_failures": 0,
            "created_at": now,
        }
        for r, h in zip(rows, hashes, strict=True)
    ]
    if invitations:
        uow.session.connection().execute(sa.insert(Invitation.__table__), invitations)  # type: ignore[arg-type]
    audit.record(
        uow, at=now, actor=actor, action="invitations_import", outcome="imported", batch_code=batch_code,
        detail={"rows": len(rows), "new_experts": len(new_rows)},
    )
    if progress:
        progress(len(rows) - len(rows) // 2)
    return len(rows)


def write_rooms(uow: UnitOfWork, ctx: ServiceContext, batch_code: str, numbers: Sequence[str], actor: str = "cli") -> int:
    """Add room numbers to the batch's pool (in the batch's hotel), in the caller's transaction."""
    batch_id, hotel_id = batch_id_for(uow, batch_code)
    if numbers:
        uow.session.connection().execute(
            sa.insert(Room.__table__),  # type: ignore[arg-type]
            [{"batch_id": batch_id, "hotel_id": hotel_id, "number": n} for n in numbers],
        )
    audit.record(uow, at=ctx.clock(), actor=actor, action="rooms_import", outcome="imported", batch_code=batch_code,
                 detail={"rooms": len(numbers)})
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


def write_reference_photo(
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
    current = uow.execute(sa.select(ReferencePhoto.id).where(ReferencePhoto.expert_id == expert_id)).scalar_one_or_none()
    if current is None:
        uow.execute(sa.insert(ReferencePhoto).values(expert_id=expert_id, **values))
    else:
        uow.execute(sa.update(ReferencePhoto).where(ReferencePhoto.id == current).values(**values))
    audit.record(uow, at=now, actor=actor, action="reference_photo", outcome="replaced" if current else "stored",
                 detail={"expert": expert_id})


def expert_ids_by_hash(uow: UnitOfWork, hashes: Sequence[str]) -> dict[str, int]:
    """Expert ids for lookup hashes that exist."""
    found: dict[str, int] = {}
    hash_list = list(hashes)
    for start in range(0, len(hash_list), _IN_CHUNK):
        part = hash_list[start : start + _IN_CHUNK]
        found.update(uow.execute(sa.select(Expert.id_hash, Expert.id).where(Expert.id_hash.in_(part))).all())  # type: ignore[arg-type]
    return found
