"""One expert of a batch as the desk sees it: invitation, check-ins, band, slip, cases, audit trail, photos.

Everything is masked (the ID as stored masked); the reference photos are the one personal-data read
here, so each photo served is audited with the person who opened it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from PIL import Image, UnidentifiedImageError

from personal_data.crypto import decrypt
from platform_server.db.models import (
    AuditEntry,
    Batch,
    CheckIn,
    Expert,
    ExtraReferencePhoto,
    Invitation,
    ReferencePhoto,
    Room,
)
from platform_server.errors import NotFoundError
from platform_server.services import audit, cases
from platform_server.services.views import CheckInView, check_in_views

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

THUMBNAIL_PX = 160
AUDIT_ROWS = 100


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One audit row about the expert (masked as stored)."""

    at: dt.datetime
    actor: str
    action: str
    outcome: str
    id_masked: str
    check_in_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class ExpertPage:
    """What the expert page shows."""

    batch_code: str
    invitation_id: int
    name: str
    id_masked: str
    organisation: str
    specialty: str
    invited_room: str
    face_failures: int
    check_ins: list[CheckInView]
    open_cases: list[cases.CaseView]
    audit_trail: list[AuditLine]
    photo_positions: list[int]

    @property
    def current(self) -> CheckInView | None:
        """The check-in that stands (not annulled), if any."""
        standing = [c for c in self.check_ins if not c.annulled]
        return standing[-1] if standing else None


def _invitation(uow: UnitOfWork, batch_code: str, invitation: str) -> tuple[Invitation, Expert, str]:
    try:
        invitation_id = int(invitation)
    except ValueError:
        invitation_id = -1
    row = uow.execute(
        sa.select(Invitation, Expert, Room.number)
        .join(Expert, Expert.id == Invitation.expert_id)
        .join(Batch, Batch.id == Invitation.batch_id)
        .outerjoin(Room, Room.id == Invitation.room_id)
        .where(Batch.code == batch_code, Invitation.id == invitation_id)
    ).first()
    if row is None:
        raise NotFoundError(f"批次 {batch_code} 无此邀请 / no invitation {invitation[:20]} in batch {batch_code}")
    return row[0], row[1], row[2] or ""


def expert_page(uow: UnitOfWork, ctx: ServiceContext, batch_code: str, invitation: str) -> ExpertPage:
    """The expert behind an invitation of the batch; NotFoundError if the batch has no such invitation."""
    with uow:
        inv, expert, room = _invitation(uow, batch_code, invitation)
        views = check_in_views(uow, CheckIn.invitation_id == inv.id, ctx.rules.annul_window_s)
        ids = [v.check_in_id for v in views]
        about = AuditEntry.id_hash == expert.id_hash
        if ids:
            about = sa.or_(about, AuditEntry.check_in_public_id.in_(ids))
        rows = uow.execute(
            sa.select(AuditEntry).where(about).order_by(AuditEntry.id.desc()).limit(AUDIT_ROWS)
        ).scalars()
        trail = [
            AuditLine(
                r.occurred_at, r.actor, r.action, r.outcome, r.id_masked or "", r.check_in_public_id or "", r.detail
            )
            for r in rows
        ]
        positions = (
            [1]
            if uow.execute(sa.select(ReferencePhoto.id).where(ReferencePhoto.expert_id == expert.id)).first()
            else []
        )
        positions += list(
            uow.execute(
                sa.select(ExtraReferencePhoto.position)
                .where(ExtraReferencePhoto.expert_id == expert.id)
                .order_by(ExtraReferencePhoto.position)
            ).scalars()
        )
        values = (expert.name, expert.id_masked, expert.organisation, expert.specialty, inv.id, inv.face_failures)
    open_cases = [
        c
        for c in cases.list_cases(uow, batch_code=batch_code)
        if (c.check_in_id and c.check_in_id in ids) or (c.id_number_masked == values[1] and c.expert_name == values[0])
    ]
    return ExpertPage(
        batch_code=batch_code,
        invitation_id=values[4],
        name=values[0],
        id_masked=values[1],
        organisation=values[2],
        specialty=values[3],
        invited_room=room,
        face_failures=values[5],
        check_ins=views,
        open_cases=open_cases,
        audit_trail=trail,
        photo_positions=positions,
    )


def reference_thumbnail(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, invitation: str, position: str, *, actor: str
) -> bytes:
    """A JPEG thumbnail of the expert's reference photo at `position` (1 is the first). Audited: a face is read."""
    with uow:
        inv, expert, _room = _invitation(uow, batch_code, invitation)
        try:
            n = int(position)
        except ValueError:
            n = -1
        if n == 1:
            blob = uow.execute(
                sa.select(ReferencePhoto.image_encrypted).where(ReferencePhoto.expert_id == expert.id)
            ).scalar_one_or_none()
        else:
            blob = uow.execute(
                sa.select(ExtraReferencePhoto.image_encrypted).where(
                    ExtraReferencePhoto.expert_id == expert.id, ExtraReferencePhoto.position == n
                )
            ).scalar_one_or_none()
        if blob is None:
            raise NotFoundError(f"无第 {position[:4]} 张照片 / no reference photo {position[:4]}")
        audit.record(
            uow,
            at=ctx.clock(),
            actor=actor,
            action="reference_photo_read",
            outcome="thumbnail",
            batch_code=batch_code,
            id_hash=expert.id_hash,
            id_masked=expert.id_masked,
            detail={"invitation": inv.id, "position": n},
        )
        uow.commit()
    image = decrypt(ctx.data_key, blob, associated=b"reference-photo")
    return thumbnail(image)


def thumbnail(image: bytes) -> bytes:
    """A small JPEG of an image (a grey square if the stored image cannot be decoded here)."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            small = opened.convert("RGB")
    except (UnidentifiedImageError, OSError):
        small = Image.new("RGB", (THUMBNAIL_PX, THUMBNAIL_PX), (200, 200, 200))
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return out.getvalue()
