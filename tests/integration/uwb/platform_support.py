"""Check-ins through the platform's real services, for the UWB delivery tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from platform_server.db.models import CheckIn, Room, UwbDelivery, Wristband
from platform_server.services import check_in as check_in_svc
from tests.unit.platform_server.support import Seeded, check_in_expert


@dataclass(frozen=True)
class Made:
    """A completed check-in: its public id, room and band."""

    check_in_id: str
    room: str
    tag_id: int
    band_uid: str


def check_in(seeded: Seeded, expert: int, band: int) -> Made:
    """Identify expert `expert` and complete the check-in with band `band` (ID-only batch)."""
    done = check_in_expert(seeded, expert, band=band)
    assert done.refusal is None, done.refusal
    assert done.check_in is not None
    uid = seeded.bands[band][0]
    return Made(done.check_in.check_in_id, done.check_in.room_number, int(done.check_in.uwb_tag_id, 16), uid)


def annul(seeded: Seeded, made: Made) -> None:
    """Annul a check-in from the kiosk that made it."""
    result = check_in_svc.annul_check_in(
        seeded.new_uow(),
        seeded.ctx,
        check_in_svc.AnnulCommand(uuid.uuid4().hex, "K1", made.check_in_id, "band_not_taken"),
    )
    assert result.refusal is None, result.refusal


def deliveries(seeded: Seeded) -> list[dict[str, object]]:
    """Every outbox row, oldest first, with its check-in's public id."""
    with seeded.new_uow() as uow:
        rows = uow.session.execute(
            sa.select(UwbDelivery, CheckIn.public_id)
            .join(CheckIn, CheckIn.id == UwbDelivery.check_in_id)
            .order_by(UwbDelivery.id)
        ).all()
        return [
            {
                "id": d.id,
                "check_in_id": public_id,
                "tag_id": d.tag_id,
                "kind": d.kind,
                "room": d.room_number,
                "state": d.state,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d, public_id in rows
        ]


def states(seeded: Seeded) -> list[str]:
    """The state of every outbox row, oldest first."""
    return [str(row["state"]) for row in deliveries(seeded)]


def needs_staff(seeded: Seeded, check_in_id: str) -> bool:
    """Whether the check-in is flagged for staff."""
    with seeded.new_uow() as uow:
        return bool(
            uow.session.execute(sa.select(CheckIn.needs_staff).where(CheckIn.public_id == check_in_id)).scalar()
        )


def set_room_number(seeded: Seeded, delivery_id: int, room: str) -> None:
    """Corrupt one outbox row's room (as a bad import would) to test the payload guard."""
    with seeded.new_uow() as uow:
        uow.session.execute(sa.update(UwbDelivery).where(UwbDelivery.id == delivery_id).values(room_number=room))
        uow.commit()


def remap_band(seeded: Seeded, band_uid: str, new_tag: str) -> None:
    """Change a band's UWB tag id in the inventory (a corrected import)."""
    with seeded.new_uow() as uow:
        uow.session.execute(sa.update(Wristband).where(Wristband.rfid_uid == band_uid).values(uwb_tag_id=new_tag))
        uow.commit()


__all__ = ["Made", "Room", "annul", "check_in", "deliveries", "needs_staff", "remap_band", "set_room_number", "states"]
