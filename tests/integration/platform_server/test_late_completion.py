"""No band without a check-in: the kiosk's queue replays against the real platform, however late.

The kiosk side is its own PendingQueue, QueueReplayer and PlatformClient; the platform is the real
server on a free port (SQLite, and PostgreSQL when PLATFORM_TEST_PG_URL is set). The identification
lifetime is the default 600 s; the platform's clock is moved past it, as an outage would.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, organiser_pb2

from checkin.flow.models import CardSource, CompleteRequest, DispenseState, NewCard, Refused
from checkin.pending_queue import PendingQueue, QueueReplayer, RecordState
from checkin.platform_client import PlatformClient
from personal_data import crypto
from platform_server.db.models import AuditEntry, CheckIn, CheckInEvent, NeedsStaffCase, UwbDelivery
from platform_server.services import batches, cases, events, kiosks
from tests.integration.kiosk.fake_platform import settings_for
from tests.integration.platform_server.rpc_helpers import SIGNATURE, complete_request, identify_request
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import luhn_pan

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KIOSK_KEY = crypto.DataKey.from_text("kiosk-test-secret-kiosk-test-secret")
PAST_THE_LIFETIME_S = 600 + 3600  # an outage of more than an hour after the identification


@pytest.fixture
def one_room(db_url: str) -> Iterator[Running]:
    running = start(db_url, rooms=1)
    yield running
    stop(running)


class Kiosk:
    """K1's queue and replayer, talking to the real platform."""

    def __init__(self, running: Running, path: Path) -> None:
        self.running = running
        self.queue = PendingQueue(path, KIOSK_KEY)
        self.client = PlatformClient(settings_for(running.port, max_attempts=2), "K1")
        self.replayer = QueueReplayer(self.queue, self.client, backoff_initial_s=0.02, backoff_max_s=0.1)

    def identify(self, expert: int) -> str:
        seeded = self.running.seeded
        answer = self.running.kiosk.IdentifyExpert(identify_request("K1", seeded.batch_code, seeded.ids[expert]))
        assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED, answer.refusal
        return str(answer.identification_token)

    def band_left_the_arm_unconfirmed(self, request_id: str, token: str, band: int) -> None:
        """The dispense step: written ahead, no answer (platform down), band handed out."""
        self.queue.write_ahead(self.request(request_id, token, band))
        self.queue.deliver_later(request_id)

    def request(self, request_id: str, token: str, band: int) -> CompleteRequest:
        return CompleteRequest(
            request_id=request_id,
            identification_token=token,
            new_card=NewCard(pan=luhn_pan(), source=CardSource.CHIP),
            signature_png=SIGNATURE,
            band_uid=self.running.seeded.bands[band][0],
        )

    def close(self) -> None:
        self.client.close()
        self.queue.close()


@pytest.fixture
def kiosk(running: Running, tmp_path: Path) -> Iterator[Kiosk]:
    k = Kiosk(running, tmp_path / "queue.sqlite3")
    yield k
    k.close()


def count(running: Running, statement: sa.Select[int]) -> int:
    with running.platform.engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def test_a_band_handed_out_in_an_outage_longer_than_the_lifetime_is_checked_in(kiosk: Kiosk) -> None:
    running = kiosk.running
    token = kiosk.identify(0)
    kiosk.band_left_the_arm_unconfirmed("late-1", token, band=0)
    running.clock.advance(PAST_THE_LIFETIME_S)

    # A live call with the same expired token is still refused: only a handed-out band is honoured late.
    live = running.kiosk.CompleteCheckIn(complete_request("K1", token, running.seeded.bands[1][0]))
    assert live.refusal.reason == common_pb2.REFUSAL_REASON_IDENTIFICATION_EXPIRED

    stats = kiosk.replayer.replay_once()
    assert (stats.delivered, stats.refused) == (1, 0)
    assert kiosk.queue.depth() == 0
    assert count(running, sa.select(sa.func.count()).select_from(CheckIn)) == 1
    assert count(running, sa.select(sa.func.count()).where(UwbDelivery.kind == "assign")) == 1  # the room to the band
    assert count(running, sa.select(sa.func.count()).select_from(NeedsStaffCase)) == 0
    with running.platform.engine.connect() as connection:
        detail = connection.execute(
            sa.select(AuditEntry.detail).where(
                AuditEntry.outcome == "completed", AuditEntry.action == "complete_check_in"
            )
        ).scalar_one()
    assert '"dispense": "handed_out"' in detail
    assert '"late_s": 3600' in detail


def test_single_use_still_holds_for_a_late_replay(kiosk: Kiosk) -> None:
    running = kiosk.running
    token = kiosk.identify(0)
    kiosk.band_left_the_arm_unconfirmed("first", token, band=0)
    kiosk.band_left_the_arm_unconfirmed("second", token, band=1)  # the same token replayed for another band
    running.clock.advance(PAST_THE_LIFETIME_S)
    stats = kiosk.replayer.replay_once()
    assert (stats.delivered, stats.refused) == (1, 1)
    assert count(running, sa.select(sa.func.count()).select_from(CheckIn)) == 1
    (case,) = cases.list_cases(running.seeded.new_uow())
    assert case.kind == "queued_check_in_refused"
    assert case.reason == "ALREADY_CHECKED_IN"
    assert case.band_uid == running.seeded.bands[1][0]


def test_a_replay_that_cannot_be_honoured_becomes_one_case_with_what_staff_need(kiosk: Kiosk) -> None:
    running = kiosk.running
    seeded = running.seeded
    token = kiosk.identify(2)
    kiosk.band_left_the_arm_unconfirmed("closed-1", token, band=3)
    batches.close_batch(seeded.new_uow(), seeded.ctx, seeded.batch_code)
    running.clock.advance(PAST_THE_LIFETIME_S)

    assert kiosk.replayer.replay_once().refused == 1
    record = kiosk.queue.load("closed-1")
    assert record.state is RecordState.REFUSED
    assert kiosk.queue.due() == []  # never retried
    (case,) = cases.list_cases(seeded.new_uow())
    assert record.last_error == "batch_closed"
    assert (case.kind, case.state, case.reason) == ("queued_check_in_refused", cases.CaseState.OPEN, "BATCH_CLOSED")
    assert (case.kiosk_id, case.band_uid, case.batch_code) == ("K1", seeded.bands[3][0], seeded.batch_code)
    assert case.expert_name == "专家2"
    assert case.id_number_masked == seeded.ids[2][:4] + "*" * 10 + seeded.ids[2][-4:]
    assert "closed-1" in case.detail
    assert case.created_by == "K1"
    # The kiosk's record names the case; its staff signal landed on the same case, not a second one.
    listed = kiosk.queue.staff_list()
    assert [(r.request_id, r.state, r.case_id, r.band_uid) for r in listed] == [
        ("closed-1", RecordState.REFUSED, case.case_id, seeded.bands[3][0])
    ]
    assert count(running, sa.select(sa.func.count()).select_from(NeedsStaffCase)) == 1
    # The organisers' event stream carries it.
    uow = seeded.new_uow()
    with uow:
        streamed = events.read_after(uow, seeded.ctx, events.batch_id_of(uow, seeded.batch_code), 0)
    needs_staff = [e for e in streamed if e.kind is events.EventKind.NEEDS_STAFF]
    assert [e.needs_staff_case.case_id for e in needs_staff if e.needs_staff_case] == [case.case_id]
    # A retry of the same request (its answer lost again) finds the same case.
    again = kiosk.client.complete_check_in(
        dataclasses.replace(kiosk.queue.load("closed-1").request, dispense=DispenseState.HANDED_OUT)
    )
    assert isinstance(again, Refused)
    assert again.needs_staff_case_id == case.case_id
    assert count(running, sa.select(sa.func.count()).select_from(NeedsStaffCase)) == 1
    # Staff handle it (platform case resolved, kiosk record cleared in staff mode).
    cases.resolve_case(seeded.new_uow(), seeded.ctx, case.case_id, reason="band taken back at the desk", actor="li")
    assert kiosk.queue.staff_clear("closed-1")
    assert kiosk.queue.depth() == 0


def test_the_organisers_event_stream_carries_the_case(kiosk: Kiosk) -> None:
    running = kiosk.running
    seeded = running.seeded
    kiosk.band_left_the_arm_unconfirmed("stream-1", kiosk.identify(3), band=4)
    batches.close_batch(seeded.new_uow(), seeded.ctx, seeded.batch_code)
    kiosk.replayer.replay_once()
    stream = running.organiser.StreamCheckInEvents(
        organiser_pb2.StreamCheckInEventsRequest(batch_code=seeded.batch_code), metadata=running.auth, timeout=20
    )
    try:
        kinds = []
        for item in stream:
            kinds.append(item.kind)
            if item.kind == organiser_pb2.StreamCheckInEventsResponse.KIND_NEEDS_STAFF:
                break
    finally:
        stream.cancel()
    assert kinds[-2:] == [
        organiser_pb2.StreamCheckInEventsResponse.KIND_REFUSED,
        organiser_pb2.StreamCheckInEventsResponse.KIND_NEEDS_STAFF,
    ]
    case = item.needs_staff_case
    assert (case.kind, case.state, case.kiosk_id, case.reason) == (
        "queued_check_in_refused",
        "open",
        "K1",
        "BATCH_CLOSED",
    )
    assert (case.band_uid, case.expert_name) == (seeded.bands[4][0], "专家3")
    assert case.id_number_masked.endswith(seeded.ids[3][-4:])
    assert case.case_id == kiosk.queue.staff_list()[0].case_id
    assert case.HasField("created_at")


def test_an_empty_room_pool_makes_a_case_too(one_room: Running, tmp_path: Path) -> None:
    k = Kiosk(one_room, tmp_path / "queue.sqlite3")
    try:
        first, second = k.identify(0), k.identify(1)
        k.band_left_the_arm_unconfirmed("room-a", first, band=0)
        k.band_left_the_arm_unconfirmed("room-b", second, band=1)
        one_room.clock.advance(PAST_THE_LIFETIME_S)
        stats = k.replayer.replay_once()
        assert (stats.delivered, stats.refused) == (1, 1)
        (case,) = cases.list_cases(one_room.seeded.new_uow())
        assert (case.reason, case.band_uid) == ("NO_ROOM_LEFT", one_room.seeded.bands[1][0])
    finally:
        k.close()


def test_an_orphan_is_recorded_as_of_unknown_fate_not_as_handed_out(kiosk: Kiosk) -> None:
    running = kiosk.running
    seeded = running.seeded
    token = kiosk.identify(1)
    kiosk.queue.write_ahead(kiosk.request("orphan-1", token, band=2))
    assert kiosk.queue.recover_after_restart() == 1  # the kiosk died mid-dispense
    running.clock.advance(PAST_THE_LIFETIME_S)
    kiosk.replayer.replay_once()
    assert kiosk.queue.depth() == 0
    with running.platform.engine.connect() as connection:
        flagged = connection.execute(sa.select(CheckIn.id, CheckIn.needs_staff)).one()
        event_kinds = [k for (k,) in connection.execute(sa.select(CheckInEvent.kind).order_by(CheckInEvent.id))]
    assert flagged[1] is True
    (case,) = cases.list_cases(seeded.new_uow())
    assert (case.kind, case.reason) == ("dispense_outcome_unknown", "dispense_outcome_unknown")
    assert case.check_in_id is not None
    assert case.band_uid == seeded.bands[2][0]
    assert event_kinds[-2:] == ["CHECKED_IN", "NEEDS_STAFF"]
    # Staff found the expert with the band: resolving the case clears the check-in's flag.
    cases.resolve_case(seeded.new_uow(), seeded.ctx, case.case_id, reason="expert has the band", actor="li")
    assert count(running, sa.select(sa.func.count()).where(CheckIn.needs_staff.is_(True))) == 0


def test_an_orphan_whose_first_send_was_answered_still_becomes_a_case(kiosk: Kiosk) -> None:
    running = kiosk.running
    token = kiosk.identify(1)
    request = kiosk.request("orphan-2", token, band=2)
    kiosk.queue.write_ahead(request)
    assert kiosk.client.complete_check_in(request)  # answered, but the kiosk died before the arm finished
    kiosk.queue.recover_after_restart()
    kiosk.replayer.replay_once()
    (case,) = cases.list_cases(running.seeded.new_uow())
    assert case.kind == "dispense_outcome_unknown"
    assert count(running, sa.select(sa.func.count()).where(CheckIn.needs_staff.is_(True))) == 1


def test_kiosk_staff_signals_become_cases_once(running: Running) -> None:
    seeded = running.seeded
    for _ in range(2):  # the same signal twice (a retried report): one case
        kiosks.report_event(
            seeded.new_uow(),
            seeded.ctx,
            kiosk_id="K1",
            event="queued_check_in_refused",
            outcome="batch_closed",
            detail="request_id=abc-1",
            id_hint="",
            kiosk_time=None,
            request_id=None,
        )
    kiosks.report_event(
        seeded.new_uow(),
        seeded.ctx,
        kiosk_id="K1",
        event="dispense",
        outcome="needs_staff",
        detail="arm E40",
        id_hint="",
        kiosk_time=None,
        request_id="evt-1",
    )
    listed = cases.list_cases(seeded.new_uow())
    assert [(c.kind, c.reason) for c in listed] == [
        ("queued_check_in_refused", "batch_closed"),
        ("kiosk_signal", "dispense"),
    ]


def test_resolving_needs_a_reason_and_happens_once(running: Running) -> None:
    seeded = running.seeded
    case_id = cases.open_case_now(seeded.new_uow(), seeded.ctx, kind=cases.CaseKind.KIOSK_SIGNAL, created_by="K1")
    with pytest.raises(Exception, match="needs a reason"):
        cases.resolve_case(seeded.new_uow(), seeded.ctx, case_id, reason="  ", actor="li")
    cases.resolve_case(seeded.new_uow(), seeded.ctx, case_id, reason="done", actor="li")
    with pytest.raises(Exception, match="already resolved by li"):
        cases.resolve_case(seeded.new_uow(), seeded.ctx, case_id, reason="again", actor="wang")
    with running.platform.engine.connect() as connection:
        actions = [
            a for (a,) in connection.execute(sa.select(AuditEntry.action).where(AuditEntry.action.like("needs_staff%")))
        ]
    assert actions == ["needs_staff_open", "needs_staff_resolve"]
