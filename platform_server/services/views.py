"""Read models the kiosk and organisers see: a check-in as one flat value, never a full ID or card."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, Expert, Hotel, Invitation, Room, UwbDelivery, Wristband

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork


class UwbState(StrEnum):
    """Where the room assignment stands on the band (mirrors expertcheckin.v1.UwbDeliveryState)."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    CLEARED = "CLEARED"
    FAILED = "FAILED"


def uwb_state_of(kind: str | None, state: str | None) -> UwbState:
    """The check-in's UWB state from its newest outbox row (kind, state)."""
    if kind is None or state is None:
        return UwbState.UNSPECIFIED
    if state == "failed":
        return UwbState.FAILED
    if state == "delivered":
        return UwbState.CLEARED if kind == "clear" else UwbState.DELIVERED
    return UwbState.PENDING


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(str(value)) if value else None


@dataclass(frozen=True, slots=True)
class CheckInView:
    """A check-in as the kiosk and organisers see it."""

    check_in_id: str
    batch_code: str
    expert_name: str
    id_number_masked: str
    kiosk_id: str
    checked_in_at: dt.datetime
    hotel_name: str
    hotel_address: str
    room_number: str
    band_uid: str
    uwb_tag_id: str
    evaluation_venue: str
    evaluation_start: dt.datetime
    uwb_state: UwbState
    annulled: bool
    needs_staff: bool
    annul_until: dt.datetime
    #: The slip's verification code and the kiosk's running number ("" / 0 for check-ins before slips).
    slip_code: str = ""
    slip_serial: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # flat values: no deep copy needed
        for key in ("checked_in_at", "evaluation_start", "annul_until"):
            data[key] = _iso(data[key])
        data["uwb_state"] = self.uwb_state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckInView:
        """Inverse of to_dict()."""
        values = dict(data)
        for key in ("checked_in_at", "evaluation_start", "annul_until"):
            values[key] = _from_iso(values[key])
        values["uwb_state"] = UwbState(values["uwb_state"])
        return cls(**values)


def _latest_delivery() -> sa.Subquery:
    """Per check-in, the id of its newest non-superseded outbox row."""
    return (
        sa.select(UwbDelivery.check_in_id, sa.func.max(UwbDelivery.id).label("delivery_id"))
        .where(UwbDelivery.state != "superseded")
        .group_by(UwbDelivery.check_in_id)
        .subquery()
    )


def check_in_views(uow: UnitOfWork, where: sa.ColumnElement[bool], annul_window_s: int) -> list[CheckInView]:
    """Every check-in matching `where` (over CheckIn columns), oldest first, as views."""
    latest = _latest_delivery()
    query = (
        sa.select(
            CheckIn.public_id,
            Batch.code,
            Expert.name,
            Expert.id_masked,
            CheckIn.kiosk_id,
            CheckIn.checked_in_at,
            Hotel.name,
            Hotel.address,
            Room.number,
            Wristband.rfid_uid,
            Wristband.uwb_tag_id,
            Batch.venue,
            Batch.evaluation_start,
            UwbDelivery.kind,
            UwbDelivery.state,
            CheckIn.annulled_at,
            CheckIn.needs_staff,
            CheckIn.slip_code,
            CheckIn.slip_serial,
        )
        .join(Batch, Batch.id == CheckIn.batch_id)
        .join(Invitation, Invitation.id == CheckIn.invitation_id)
        .join(Expert, Expert.id == Invitation.expert_id)
        .join(Room, Room.id == CheckIn.room_id)
        .join(Hotel, Hotel.id == Room.hotel_id)
        .join(Wristband, Wristband.id == CheckIn.wristband_id)
        .outerjoin(latest, latest.c.check_in_id == CheckIn.id)
        .outerjoin(UwbDelivery, UwbDelivery.id == latest.c.delivery_id)
        .where(where)
        .order_by(CheckIn.id)
    )
    window = dt.timedelta(seconds=annul_window_s)
    return [
        CheckInView(
            check_in_id=row[0],
            batch_code=row[1],
            expert_name=row[2],
            id_number_masked=row[3],
            kiosk_id=row[4],
            checked_in_at=row[5],
            hotel_name=row[6],
            hotel_address=row[7],
            room_number=row[8],
            band_uid=row[9],
            uwb_tag_id=row[10],
            evaluation_venue=row[11],
            evaluation_start=row[12],
            uwb_state=uwb_state_of(row[13], row[14]),
            annulled=row[15] is not None,
            needs_staff=row[16],
            annul_until=row[5] + window,
            slip_code=row[17] or "",
            slip_serial=row[18] or 0,
        )
        for row in uow.execute(query).all()
    ]


def check_in_view(uow: UnitOfWork, check_in_pk: int, annul_window_s: int) -> CheckInView:
    """One check-in by primary key."""
    return check_in_views(uow, CheckIn.id == check_in_pk, annul_window_s)[0]
