"""The dispense transaction on its own: write-ahead, the bind ledger, band retries and the settlement."""

from __future__ import annotations

from checkin.flow.dispense import BindStatus, DispenseTransaction, Verdict
from checkin.flow.models import CardSource, CheckInInfo, NewCard, RefusalCode
from checkin.flow.ports import DispensePhase
from tests.unit.kiosk.fakes import PAN, FakeDispenser, FakePending, FakePlatform, completed, platform_down, refused


def transaction(
    behaviour: str = "take", *, attempts: int = 2
) -> tuple[DispenseTransaction, FakeDispenser, FakePlatform, FakePending, list[object]]:
    platform = FakePlatform()
    pending = FakePending(platform.log)
    dispenser = FakeDispenser(behaviour=behaviour)
    seen: list[object] = []
    t = DispenseTransaction(
        dispenser=dispenser,
        platform=platform,
        pending=pending,
        token="tok-123",
        card=NewCard(pan=PAN, source=CardSource.CHIP, expiry_yymm="3012", holder_name=None),
        signature_png=b"\x89PNG",
        max_band_attempts=attempts,
        on_progress=seen.append,
        on_completed=seen.append,
    )
    return t, dispenser, platform, pending, seen


def test_the_request_is_written_ahead_then_sent_and_forgotten_once_the_band_is_out() -> None:
    t, dispenser, platform, pending, seen = transaction()
    result = t.run()
    (request,) = platform.complete_requests
    assert platform.log == [f"write_ahead {request.request_id}", f"complete {request.request_id}"]
    assert (request.identification_token, request.band_uid, request.signature_png) == (
        "tok-123",
        "04A1B2C3D4E5F0",
        b"\x89PNG",
    )
    assert result.ledger.status is BindStatus.ACKNOWLEDGED
    assert pending.records == {request.request_id: "acknowledged ci-1"}
    info = result.ledger.check_in
    assert isinstance(info, CheckInInfo)
    assert seen == [DispensePhase.PREPARING, info, DispensePhase.AT_PICKUP]  # the slip starts before pickup
    settled = t.settle(result)
    assert (settled.verdict, settled.check_in) == (Verdict.DONE, info)
    assert pending.records == {}
    assert dispenser.decisions[0][1].bound


def test_no_answer_hands_the_band_out_and_leaves_the_record_to_deliver() -> None:
    t, _, platform, pending, _ = transaction()
    platform.complete_script.append(platform_down())
    result = t.run()
    assert result.ledger.status is BindStatus.UNCONFIRMED
    assert t.settle(result).verdict is Verdict.ROOM_PENDING
    assert list(pending.records.values()) == ["deliver"]


def test_a_refused_band_is_replaced_up_to_the_limit() -> None:
    t, dispenser, platform, _, _ = transaction(attempts=3)
    platform.complete_script.extend(
        [refused(RefusalCode.BAND_NOT_AVAILABLE), refused(RefusalCode.BAND_UNKNOWN), completed()]
    )
    result = t.run()
    assert [uid for uid, _ in dispenser.decisions] == ["04A1B2C3D4E5F0", "04A1B2C3D4E5F1", "04A1B2C3D4E5F2"]
    assert len(t.ledgers) == 3
    assert t.settle(result).verdict is Verdict.DONE


def test_band_refusals_past_the_limit_are_a_band_problem_and_leave_nothing_queued() -> None:
    t, dispenser, platform, pending, _ = transaction(attempts=2)
    platform.complete_script.extend([refused(RefusalCode.BAND_UNKNOWN)] * 2)
    settled = t.settle(t.run())
    assert settled.verdict is Verdict.BAND_PROBLEM
    assert len(dispenser.decisions) == 2
    assert pending.records == {}


def test_a_refusal_of_the_check_in_itself_is_not_retried_with_another_band() -> None:
    t, dispenser, platform, _, _ = transaction()
    platform.complete_script.append(refused(RefusalCode.NO_ROOM_LEFT))
    settled = t.settle(t.run())
    assert settled.verdict is Verdict.REFUSED
    assert settled.refusal is not None
    assert settled.refusal.code is RefusalCode.NO_ROOM_LEFT
    assert len(dispenser.decisions) == 1


def test_a_band_not_taken_is_annulled_through_the_queue() -> None:
    t, _, _, pending, _ = transaction("leave")
    settled = t.settle(t.run())
    assert (settled.verdict, settled.band_not_taken) == (Verdict.BAND_PROBLEM, True)
    assert list(pending.records.values()) == ["annul band_not_taken"]


def test_an_unreadable_band_never_reaches_the_platform() -> None:
    t, _, platform, pending, _ = transaction("unreadable")
    settled = t.settle(t.run())
    assert (settled.verdict, settled.band_not_taken) == (Verdict.BAND_PROBLEM, False)
    assert platform.complete_requests == []
    assert pending.records == {}


def test_a_dispenser_that_raises_after_binding_is_annulled_as_dispense_failed() -> None:
    t, _, _, pending, _ = transaction("raise")
    try:
        t.run()
    except Exception as err:
        settled = t.settle(err)
    else:  # pragma: no cover
        raise AssertionError("the fake dispenser should have raised")
    assert settled.verdict is Verdict.BAND_PROBLEM
    assert settled.audit == (("dispense", "error", "DeviceFaultError"),)
    assert list(pending.records.values()) == ["annul dispense_failed"]
