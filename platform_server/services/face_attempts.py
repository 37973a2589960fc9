"""Staff give an expert new face attempts after a kiosk used them all up: a person, a reason, audited.

Three mismatching faces lock the invitation (identify records which kiosk used the last attempt), so a
kiosk in a public lobby cannot lock an expert out for good, and nobody but staff can lift the lock.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import sqlalchemy as sa

from personal_data import id_number
from personal_data.crypto import lookup_hash
from platform_server.db.models import Batch, Expert, Invitation
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import audit

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_REASON_CHARS = 200


@dataclasses.dataclass(frozen=True, slots=True)
class FaceReset:
    """What was reset: the count before, and which kiosk used the last attempt and when."""

    previous_failures: int
    locked_by: str | None
    locked_at: dt.datetime | None
    id_masked: str
    expert_name: str


def reset_face_attempts(
    uow: UnitOfWork,
    ctx: ServiceContext,
    *,
    batch_code: str,
    id_value: str,
    reason: str,
    actor: str,
) -> FaceReset:
    """Set the invitation's face failures back to zero; refuse without a reason or with nothing to reset."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequestError("reason: say why the expert gets new face attempts (required)")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequestError(f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    try:
        normalised = id_number.validate(id_value)
    except ValueError as err:
        raise InvalidRequestError(f"id_number: {err}") from err
    id_hash = lookup_hash(ctx.data_key, normalised)
    masked = id_number.mask(normalised)
    with uow:
        row = uow.execute(
            sa.select(
                Invitation.id,
                Invitation.face_failures,
                Invitation.face_locked_by,
                Invitation.face_locked_at,
                Expert.name,
            )
            .join(Expert, Expert.id == Invitation.expert_id)
            .join(Batch, Batch.id == Invitation.batch_id)
            .where(Batch.code == batch_code, Expert.id_hash == id_hash)
        ).first()
        if row is None:
            raise NotFoundError(f"no invitation of {masked} in batch {batch_code!r}")
        if row.face_failures == 0:
            raise InvalidRequestError(f"{masked} has no failed face attempts in batch {batch_code}: nothing to reset")
        clear_attempts(
            uow,
            ctx,
            row.id,
            batch_code=batch_code,
            id_hash=id_hash,
            id_masked=masked,
            actor=actor,
            detail={
                "reason": reason,
                "previous_failures": row.face_failures,
                "locked_by": row.face_locked_by,
                "locked_at": row.face_locked_at.isoformat() if row.face_locked_at else None,
            },
        )
        uow.commit()
    return FaceReset(int(row.face_failures), row.face_locked_by, row.face_locked_at, masked, str(row.name))


def clear_attempts(
    uow: UnitOfWork,
    ctx: ServiceContext,
    invitation_id: int,
    *,
    batch_code: str,
    id_hash: str,
    id_masked: str,
    actor: str,
    detail: dict[str, object],
) -> None:
    """Give the invitation its face attempts back and audit who did it and why (inside the caller's transaction)."""
    uow.execute(
        sa.update(Invitation)
        .where(Invitation.id == invitation_id)
        .values(face_failures=0, face_locked_by=None, face_locked_at=None)
    )
    audit.record(
        uow,
        at=ctx.clock(),
        actor=actor,
        action="face_attempts_reset",
        outcome="reset",
        batch_code=batch_code,
        id_hash=id_hash,
        id_masked=id_masked,
        detail=detail,
    )
