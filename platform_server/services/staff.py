"""What staff do and look up from the operations console: annul a check-in, find an expert, the fleet.

Plain services over the same tables the kiosks write; the console's routes are thin over these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, CheckInEvent, Expert, Hotel, Invitation, Kiosk, Room, Wristband
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import audit, events, room_choice
from platform_server.services import check_in as check_in_service

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_REASON_CHARS = 200
MAX_QUERY_CHARS = 40


def annul_by_staff(uow: UnitOfWork, ctx: ServiceContext, check_in_id: str, reason: str, *, actor: str) -> str:
    """Annul a check-in at the desk (any kiosk's, any time): room and band freed, band clear queued.

    Unlike a kiosk's own annulment there is no time window, but a reason is required and the person
    is audited. Returns the batch code.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidRequestError("reason: 请填写撤销原因 / say why the check-in is annulled (required)")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequestError(f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}")

    def work(u: UnitOfWork) -> str:
        now = ctx.clock()
        row = u.execute(
            sa.select(CheckIn, Batch.code, Expert.id_hash, Expert.id_masked, Wristband, Room.number, Hotel.code)
            .join(Batch, Batch.id == CheckIn.batch_id)
            .join(Invitation, Invitation.id == CheckIn.invitation_id)
            .join(Expert, Expert.id == Invitation.expert_id)
            .join(Wristband, Wristband.id == CheckIn.wristband_id)
            .join(Room, Room.id == CheckIn.room_id)
            .join(Hotel, Hotel.id == Room.hotel_id)
            .where(CheckIn.public_id == check_in_id[:40])
        ).first()
        if row is None:
            raise NotFoundError(f"签到记录 {check_in_id[:40]} 不存在 / no check-in {check_in_id[:40]}")
        check_in: CheckIn = row[0]
        band: Wristband = row[4]
        if check_in.annulled_at is not None:
            raise InvalidRequestError(f"签到 {check_in.public_id} 已撤销 / check-in already annulled")
        u.execute(
            sa.update(CheckIn)
            .where(CheckIn.id == check_in.id, CheckIn.annulled_at.is_(None))
            .values(annulled_at=now, annul_reason="staff")
            .execution_options(synchronize_session=False)
        )
        room_choice.vacate(room_choice.through(u), check_in.room_id, check_in.id)
        check_in_service.release_band_and_clear_it(
            u, check_in.id, band, batch_code=row[1], hotel_code=row[6], room_number=row[5], now=now
        )
        audit.record(
            u,
            at=now,
            actor=actor,
            action="annul_check_in",
            outcome="annulled",
            batch_code=row[1],
            id_hash=row[2],
            id_masked=row[3],
            check_in_public_id=check_in.public_id,
            detail={"reason": reason, "room": row[5], "band_uid": band.rfid_uid, "by": "staff"},
        )
        events.append(
            u,
            ctx,
            batch_id=check_in.batch_id,
            kind=events.EventKind.ANNULLED,
            at=now,
            kiosk_id=check_in.kiosk_id,
            check_in_pk=check_in.id,
        )
        u.commit()
        return str(row[1])

    return run_transaction(uow, work)


@dataclass(frozen=True, slots=True)
class ExpertHit:
    """An expert found by the console's search (masked ID only)."""

    name: str
    id_masked: str
    organisation: str
    checked_in: bool
    check_in_id: str
    kiosk_id: str
    room: str
    face_failures: int
    invitation_id: int = 0  # the expert page's address: /batches/{code}/experts/{invitation_id}


def search_experts(uow: UnitOfWork, batch_code: str, query: str, *, limit: int = 50) -> list[ExpertHit]:
    """Invited experts of the batch whose name contains the query, or whose ID ends with its digits."""
    query = query.strip()[:MAX_QUERY_CHARS]
    if not query:
        return []
    digits = query.upper()
    if digits.isdigit() or (digits[:-1].isdigit() and digits.endswith("X")):
        if len(digits) > 4:
            raise InvalidRequestError("证件号只能按末 4 位查找 / search the ID by its last 4 digits at most")
        match = Expert.id_masked.endswith(digits)
    else:
        match = Expert.name.contains(query, autoescape=True)
    active = sa.and_(CheckIn.invitation_id == Invitation.id, CheckIn.annulled_at.is_(None))
    with uow:
        rows = uow.execute(
            sa.select(
                Expert.name,
                Expert.id_masked,
                Expert.organisation,
                CheckIn.public_id,
                CheckIn.kiosk_id,
                Room.number,
                Invitation.face_failures,
                Invitation.id,
            )
            .join(Invitation, Invitation.expert_id == Expert.id)
            .join(Batch, Batch.id == Invitation.batch_id)
            .outerjoin(CheckIn, active)
            .outerjoin(Room, Room.id == CheckIn.room_id)
            .where(Batch.code == batch_code, match)
            .order_by(Expert.name)
            .limit(limit)
        ).all()
    return [
        ExpertHit(r[0], r[1], r[2], r[3] is not None, r[3] or "", r[4] or "", r[5] or "", int(r[6]), int(r[7]))
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class KioskHealth:
    """One kiosk on the fleet page."""

    kiosk_id: str
    name: str
    location: str
    online: bool
    last_heartbeat: dt.datetime | None
    band_stock: int | None
    printer_paper: str
    pending_check_ins: int | None
    software_version: str
    out_of_service: bool
    devices: list[dict[str, object]]
    last_check_in: dt.datetime | None


def fleet(uow: UnitOfWork, ctx: ServiceContext, *, offline_after_s: float) -> list[KioskHealth]:
    """Every kiosk: online if its last heartbeat is younger than `offline_after_s`."""
    now = ctx.clock()
    with uow:
        last = dict(
            uow.execute(
                sa.select(CheckIn.kiosk_id, sa.func.max(CheckIn.checked_in_at)).group_by(CheckIn.kiosk_id)
            ).all()
        )
        kiosks = list(uow.session.scalars(sa.select(Kiosk).order_by(Kiosk.kiosk_id)))
        out = []
        for k in kiosks:
            try:
                devices = json.loads(k.devices_json or "[]")
            except ValueError:
                devices = []
            beat = k.last_heartbeat_at
            out.append(
                KioskHealth(
                    kiosk_id=k.kiosk_id,
                    name=k.name,
                    location=k.location,
                    online=beat is not None and (now - beat).total_seconds() <= offline_after_s,
                    last_heartbeat=beat,
                    band_stock=k.band_stock,
                    printer_paper=k.printer_paper,
                    pending_check_ins=k.pending_check_ins,
                    software_version=k.software_version,
                    out_of_service=k.out_of_service,
                    devices=devices if isinstance(devices, list) else [],
                    last_check_in=last.get(k.kiosk_id),
                )
            )
        return out


def newest_event_id(uow: UnitOfWork, batch_id: int) -> int:
    """The id of the batch's newest event (0 if none): where a live view starts reading."""
    with uow:
        return int(
            uow.execute(sa.select(sa.func.max(CheckInEvent.id)).where(CheckInEvent.batch_id == batch_id)).scalar() or 0
        )


def check_ins_per_hour(uow: UnitOfWork, batch_code: str, tz: dt.tzinfo) -> list[tuple[str, int]]:
    """Active check-ins of the batch per hour of the day in `tz` ("09:00", count), in hour order."""
    with uow:
        times = uow.execute(
            sa.select(CheckIn.checked_in_at)
            .join(Batch, Batch.id == CheckIn.batch_id)
            .where(Batch.code == batch_code, CheckIn.annulled_at.is_(None))
        ).scalars()
        hours: dict[str, int] = {}
        for at in times:
            key = at.astimezone(tz).strftime("%m-%d %H:00")
            hours[key] = hours.get(key, 0) + 1
    return sorted(hours.items())
