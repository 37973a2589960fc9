"""Live statistics of a batch: invited, arrived, missing, rooms and bands left, UWB delivery, kiosks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, Invitation, Kiosk, Room, UwbDelivery, Wristband
from platform_server.errors import NotFoundError

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class KioskStats:
    """Per-kiosk figures for the batch."""

    kiosk_id: str
    check_ins: int
    last_heartbeat: dt.datetime | None
    out_of_service: bool
    band_stock: int | None
    pending_check_ins: int | None
    #: ok, near_end, out, or "" (no printer / unknown).
    printer_paper: str = ""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Counts for the organiser's dashboard and `platform-server status`."""

    code: str
    invited: int
    arrived: int
    missing: int
    rooms_total: int
    rooms_left: int
    bands_left: int
    annulled: int
    needs_staff: int
    uwb_pending: int
    uwb_delivered: int
    uwb_failed: int
    kiosks: list[KioskStats] = field(default_factory=list)


def batch_statistics(uow: UnitOfWork, code: str) -> BatchStats:
    """Count everything in one read transaction (a consistent snapshot on PostgreSQL)."""
    with uow:
        batch_id = uow.execute(sa.select(Batch.id).where(Batch.code == code)).scalar_one_or_none()
        if batch_id is None:
            raise NotFoundError(f"批次 {code} 不存在 / batch {code} does not exist")

        def count(query: sa.Select[Any]) -> int:
            return int(uow.execute(query).scalar_one() or 0)

        active = sa.and_(CheckIn.batch_id == batch_id, CheckIn.annulled_at.is_(None))
        invited = count(sa.select(sa.func.count()).select_from(Invitation).where(Invitation.batch_id == batch_id))
        arrived = count(sa.select(sa.func.count(sa.distinct(CheckIn.invitation_id))).where(active))
        rooms_total = count(sa.select(sa.func.count()).select_from(Room).where(Room.batch_id == batch_id))
        rooms_used = count(sa.select(sa.func.count(sa.distinct(CheckIn.room_id))).where(active))
        bands_left = count(sa.select(sa.func.count()).select_from(Wristband).where(Wristband.state == "in_stock"))
        annulled = count(
            sa.select(sa.func.count()).where(CheckIn.batch_id == batch_id, CheckIn.annulled_at.is_not(None))
        )
        needs_staff = count(sa.select(sa.func.count()).where(active, CheckIn.needs_staff.is_(True)))
        uwb = dict(
            uow.execute(
                sa.select(UwbDelivery.state, sa.func.count())
                .join(CheckIn, CheckIn.id == UwbDelivery.check_in_id)
                .where(CheckIn.batch_id == batch_id)
                .group_by(UwbDelivery.state)
            ).all()
        )
        per_kiosk = dict(
            uow.execute(sa.select(CheckIn.kiosk_id, sa.func.count()).where(active).group_by(CheckIn.kiosk_id)).all()
        )
        kiosks = list(
            uow.session.execute(
                sa.select(Kiosk).where(sa.or_(Kiosk.batch_id == batch_id, Kiosk.kiosk_id.in_(list(per_kiosk))))
            ).scalars()
        )
        return BatchStats(
            code=code,
            invited=invited,
            arrived=arrived,
            missing=invited - arrived,
            rooms_total=rooms_total,
            rooms_left=rooms_total - rooms_used,
            bands_left=bands_left,
            annulled=annulled,
            needs_staff=needs_staff,
            uwb_pending=int(uwb.get("pending", 0)),
            uwb_delivered=int(uwb.get("delivered", 0)),
            uwb_failed=int(uwb.get("failed", 0)),
            kiosks=[
                KioskStats(
                    kiosk_id=k.kiosk_id,
                    check_ins=int(per_kiosk.get(k.kiosk_id, 0)),
                    last_heartbeat=k.last_heartbeat_at,
                    out_of_service=k.out_of_service,
                    band_stock=k.band_stock,
                    pending_check_ins=k.pending_check_ins,
                    printer_paper=k.printer_paper,
                )
                for k in sorted(kiosks, key=lambda k: k.kiosk_id)
            ],
        )
