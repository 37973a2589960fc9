"""Conversions between service-layer values and expertcheckin.v1 messages."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, cast

from expertcheckin.v1 import common_pb2, kiosk_pb2, organiser_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from platform_server.face.api import ChallengeFrame, LivenessChallenge, LivenessEvidence

if TYPE_CHECKING:
    from platform_server.services.batches import BatchView
    from platform_server.services.cases import CaseView
    from platform_server.services.events import EventView
    from platform_server.services.refusals import Refusal
    from platform_server.services.statistics import BatchStats
    from platform_server.services.views import CheckInView


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    """Protobuf Timestamp from an aware datetime (None stays unset)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def from_timestamp(ts: Timestamp, present: bool) -> dt.datetime | None:
    """Aware UTC datetime from a Timestamp field, or None if the field is unset."""
    return ts.ToDatetime(tzinfo=dt.UTC) if present else None


def refusal(value: Refusal) -> common_pb2.Refusal:
    """Refusal message with the platform's wording."""
    return common_pb2.Refusal(
        reason=cast("common_pb2.RefusalReason", common_pb2.RefusalReason.Value("REFUSAL_REASON_" + value.reason.value)),
        params=value.params,
        message_zh=value.message_zh,
        message_en=value.message_en,
    )


def check_in(view: CheckInView) -> common_pb2.CheckIn:
    """CheckIn message (masked ID only)."""
    return common_pb2.CheckIn(
        check_in_id=view.check_in_id,
        batch_code=view.batch_code,
        expert_name=view.expert_name,
        id_number_masked=view.id_number_masked,
        kiosk_id=view.kiosk_id,
        checked_in_at=timestamp(view.checked_in_at),
        hotel_name=view.hotel_name,
        hotel_address=view.hotel_address,
        room_number=view.room_number,
        band_uid=view.band_uid,
        evaluation_venue=view.evaluation_venue,
        evaluation_start=timestamp(view.evaluation_start),
        uwb_state=cast(
            "common_pb2.UwbDeliveryState",
            common_pb2.UwbDeliveryState.Value("UWB_DELIVERY_STATE_" + view.uwb_state.value),
        ),
        annulled=view.annulled,
        needs_staff=view.needs_staff,
        annul_until=timestamp(view.annul_until),
        uwb_tag_id=view.uwb_tag_id,
        slip_code=view.slip_code,
        slip_serial=view.slip_serial,
    )


def batch(view: BatchView) -> common_pb2.Batch:
    """Batch message."""
    return common_pb2.Batch(
        code=view.code,
        name=view.name,
        venue=view.venue,
        hotel_name=view.hotel_name,
        hotel_address=view.hotel_address,
        evaluation_start=timestamp(view.evaluation_start),
        evaluation_end=timestamp(view.evaluation_end),
        check_in_opens=timestamp(view.check_in_opens),
        closed=view.closed,
        allow_id_only=view.allow_id_only,
        hotel_code=view.hotel_code,
    )


def statistics(stats: BatchStats) -> organiser_pb2.GetBatchStatisticsResponse:
    """Statistics message."""
    return organiser_pb2.GetBatchStatisticsResponse(
        code=stats.code,
        invited=stats.invited,
        arrived=stats.arrived,
        missing=stats.missing,
        rooms_total=stats.rooms_total,
        rooms_left=stats.rooms_left,
        bands_left=stats.bands_left,
        annulled=stats.annulled,
        needs_staff=stats.needs_staff,
        uwb_pending=stats.uwb_pending,
        uwb_delivered=stats.uwb_delivered,
        kiosks=[
            organiser_pb2.KioskStatistics(
                kiosk_id=k.kiosk_id,
                check_ins=k.check_ins,
                last_heartbeat=timestamp(k.last_heartbeat),
                out_of_service=k.out_of_service,
                band_stock=k.band_stock or 0,
                printer_paper=k.printer_paper,
            )
            for k in stats.kiosks
        ],
    )


def event(view: EventView) -> organiser_pb2.StreamCheckInEventsResponse:
    """One streamed event."""
    message = organiser_pb2.StreamCheckInEventsResponse(
        event_id=view.event_id,
        kind=cast(
            "organiser_pb2.StreamCheckInEventsResponse.Kind",
            organiser_pb2.StreamCheckInEventsResponse.Kind.Value("KIND_" + view.kind.value),
        ),
        occurred_at=timestamp(view.occurred_at),
        kiosk_id=view.kiosk_id,
    )
    if view.check_in is not None:
        message.check_in.CopyFrom(check_in(view.check_in))
    if view.refusal_reason:
        message.refusal_reason = cast(
            "common_pb2.RefusalReason", common_pb2.RefusalReason.Value("REFUSAL_REASON_" + view.refusal_reason)
        )
    if view.needs_staff_case is not None:
        message.needs_staff_case.CopyFrom(needs_staff_case(view.needs_staff_case))
    return message


def printer_paper(value: int) -> str:
    """PrinterPaper enum to the stored word: ok, near_end, out, or "" (unspecified: no printer or no answer)."""
    if value == kiosk_pb2.PRINTER_PAPER_UNSPECIFIED:
        return ""
    return kiosk_pb2.PrinterPaper.Name(cast("kiosk_pb2.PrinterPaper", value)).removeprefix("PRINTER_PAPER_").lower()


def needs_staff_case(view: CaseView) -> organiser_pb2.NeedsStaffCase:
    """A needs-staff case as organisers see it (the expert masked)."""
    return organiser_pb2.NeedsStaffCase(
        case_id=view.case_id,
        kind=view.kind,
        state=view.state.value,
        kiosk_id=view.kiosk_id,
        band_uid=view.band_uid,
        reason=view.reason,
        id_number_masked=view.id_number_masked or "",
        expert_name=view.expert_name or "",
        check_in_id=view.check_in_id or "",
        detail=view.detail,
        created_at=timestamp(view.created_at),
    )


def liveness_evidence(message: kiosk_pb2.LivenessEvidence) -> LivenessEvidence:
    """The kiosk's challenge and its frames, as the liveness checker takes them."""
    known = {f"LIVENESS_CHALLENGE_{c.name}": c for c in LivenessChallenge}
    try:
        challenge = known.get(kiosk_pb2.LivenessChallenge.Name(message.challenge))
    except ValueError:  # a number this platform does not know: no challenge it can check
        challenge = None
    return LivenessEvidence(
        challenge=challenge,
        challenge_id=message.challenge_id,
        frames=tuple(ChallengeFrame(f.image, f.captured_at_ms) for f in message.frames),
    )
