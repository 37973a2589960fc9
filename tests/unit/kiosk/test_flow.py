"""The check-in flow, branch by branch, driven without a screen (asserting on screen and error keys)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import weakref

import pytest
from expertcheckin.v1 import common_pb2

from checkin.flow.machine import ATTENTION_STATES, CANCELLABLE_STATES, Step
from checkin.flow.models import (
    CardSource,
    DeviceHealth,
    DeviceState,
    FaceFrames,
    RefusalCode,
    ServiceHealth,
)
from checkin.flow.ports import DeviceFaultError, DispensePhase, InvalidEntryError, UnreadableError
from checkin.flow.views import (
    BandProblemView,
    CardConfirmView,
    CardInsertView,
    CardOnFileView,
    DoneView,
    FaceView,
    HomeView,
    OutOfServiceView,
    RefusalView,
    Screen,
    SignatureView,
    StaffMenuView,
    StaffPinView,
)
from checkin.signature import Signature
from checkin.texts import Language, has_text
from tests.unit.kiosk.fakes import (
    BATCH,
    PAN,
    PIN,
    FakeCardData,
    FakeIdentity,
    Kiosk,
    completed,
    healthy,
    identified,
    make_kiosk,
    nothing,
    platform_down,
    refused,
)


def signed() -> Signature:
    sig = Signature(600, 200)
    sig.begin_stroke(10, 100)
    for x in range(10, 300, 10):
        sig.extend_stroke(x, 100 + (x % 40))
    return sig


def to_face(k: Kiosk) -> None:
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()


def to_verified(k: Kiosk, *, card_on_file: bool = False) -> None:
    k.platform.identify_script.append(identified(card_on_file=card_on_file))
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()


def to_signature(k: Kiosk) -> None:
    to_verified(k, card_on_file=True)
    assert k.screen == "card_on_file"
    k.flow.press_use_card_on_file()
    assert k.screen == "signature"


def screens(k: Kiosk) -> list[str]:
    out: list[str] = []
    for v in k.views:
        if not out or out[-1] != v.screen.value:
            out.append(v.screen.value)
    return out


# ---- service state -----------------------------------------------------------------------------------


def test_starts_out_of_service_until_the_first_health_report_and_comes_back_by_itself() -> None:
    k = make_kiosk(health=ServiceHealth(platform_reachable=False))
    assert k.screen == "out_of_service"
    assert k.shown(OutOfServiceView).problems == ("platform_unreachable",)
    k.flow.press_start()
    assert k.screen == "out_of_service"
    k.flow.health_changed(healthy())
    assert k.screen == "home"
    assert k.shown(HomeView).batch_name == BATCH.name
    assert k.shown(HomeView).evaluation_start == "2026-03-09 09:30"  # Beijing time


@pytest.mark.parametrize(
    ("health", "code"),
    [
        (ServiceHealth(platform_reachable=False, batch=BATCH), "platform_unreachable"),
        (ServiceHealth(platform_reachable=True, batch=None), "no_open_batch"),
        (ServiceHealth(platform_reachable=True, batch=BATCH, band_stock=0), "band_stock_empty"),
        (
            ServiceHealth(
                platform_reachable=True, batch=BATCH, devices=(DeviceHealth("arm", DeviceState.FAULT, "E40"),)
            ),
            "arm_fault",
        ),
    ],
)
def test_goes_out_of_service_when_platform_device_batch_or_stock_fails(health: ServiceHealth, code: str) -> None:
    k = make_kiosk()
    assert k.screen == "home"
    k.flow.health_changed(health)
    assert k.screen == "out_of_service"
    assert code in k.shown(OutOfServiceView).problems
    k.flow.health_changed(healthy())
    assert k.screen == "home"


def test_a_failure_during_a_check_in_lets_it_finish_then_goes_out_of_service() -> None:
    k = make_kiosk()
    to_signature(k)
    k.flow.health_changed(ServiceHealth(platform_reachable=False, batch=BATCH))
    assert k.screen == "signature"
    k.flow.press_cancel()
    assert k.screen == "out_of_service"


# ---- happy paths -------------------------------------------------------------------------------------


def test_new_card_by_chip_all_the_way_to_done_and_back_home_after_20_s() -> None:
    k = make_kiosk()
    k.flow.press_start()
    assert k.screen == "id_card"
    assert k.flow.view.step == 1
    k.id_card.script.append(FakeIdentity())
    k.settle()
    assert k.screen == "card_insert"
    assert k.flow.view.step == 2
    k.bank.script.append(FakeCardData(pan=PAN))
    k.settle()
    assert k.screen == "card_confirm"
    assert k.shown(CardConfirmView).pan_masked == "621234******1232"
    assert k.shown(CardConfirmView).source is CardSource.CHIP
    k.flow.press_confirm_card()
    assert k.screen == "signature"
    assert k.shown(SignatureView).id_number_masked == "1101**********002X"
    assert k.shown(SignatureView).pan_masked == "621234******1232"
    k.flow.submit_signature(signed())
    assert k.screen == "dispensing"
    assert k.flow.view.can_cancel is False
    k.settle()
    assert k.screen == "done"
    view = k.shown(DoneView)
    assert (view.hotel_name, view.room_number, view.step) == ("交易中心宾馆", "1208", 5)
    assert screens(k) == [
        "home",
        "id_card",
        "face",
        "verifying",
        "card_insert",
        "card_confirm",
        "signature",
        "dispensing",
        "done",
    ]
    # The face screen showed the camera's hints in order.
    assert [v.hint for v in k.views if v.screen is Screen.FACE and v.hint] == ["too_far", "blink_please", "ok"]
    # The dispensing screen went from preparing to take-the-band.
    assert [v.phase for v in k.views if v.screen is Screen.DISPENSING][-1] is DispensePhase.AT_PICKUP
    request = k.platform.complete_requests[0]
    assert request.new_card is not None
    assert request.new_card.pan == PAN
    assert request.identification_token == "tok-123"
    assert request.band_uid == "04A1B2C3D4E5F0"
    assert request.signature_png.startswith(b"\x89PNG")
    assert k.pending.records == {}  # acknowledged and handed out: nothing left to deliver
    k.clock.advance(19)
    assert k.screen == "done"
    assert k.shown(DoneView).seconds_left == 1
    k.clock.advance(1)
    assert k.screen == "home"
    assert not k.flow.session_active


def test_identify_request_carries_the_card_fields_and_faces() -> None:
    k = make_kiosk()
    to_verified(k)
    req = k.platform.identify_requests[0]
    assert req.id_card.id_number == "11010519491231002X"
    assert req.id_card.birth_date == "19491231"
    assert req.id_card.valid_to == "20400101"
    assert req.batch_code == BATCH.code
    assert req.faces == (b"\xff\xd8jpeg-1", b"\xff\xd8jpeg-2")
    assert req.liveness_passed is True
    assert req.face_attempt == 1
    assert k.face.cleared >= 1  # frames dropped as soon as the platform has them


def test_card_on_file_confirmed_sends_use_card_on_file() -> None:
    k = make_kiosk()
    to_verified(k, card_on_file=True)
    assert k.screen == "card_on_file"
    assert (k.shown(CardOnFileView).bank_name, k.shown(CardOnFileView).pan_masked) == (
        "中国农业银行",
        "622848******1234",
    )
    k.flow.press_use_card_on_file()
    assert k.shown(SignatureView).pan_masked == "622848******1234"
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "done"
    assert k.platform.complete_requests[0].new_card is None


def test_card_on_file_replaced_goes_to_insert() -> None:
    k = make_kiosk()
    to_verified(k, card_on_file=True)
    k.flow.press_replace_card()
    assert k.screen == "card_insert"


def test_id_only_long_validity_card_is_sent_as_changqi() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity(valid_to=None))
    k.settle()
    assert k.platform.identify_requests[0].id_card.valid_to == "长期"


# ---- ID card -----------------------------------------------------------------------------------------


def test_unreadable_id_card_shows_the_error_and_keeps_reading() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(UnreadableError("bad frame"))
    k.settle()
    assert (k.screen, k.flow.view.error) == ("id_card", "error.id_card_unreadable")
    k.id_card.script.append(FakeIdentity())
    k.settle()
    assert k.screen == "card_insert"


def test_expired_id_card_is_refused_without_asking_the_platform() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity(valid_to=dt.date(2025, 1, 1)))
    k.settle()
    assert (k.screen, k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == (
        "refusal",
        "refusal.id_card_expired",
        False,
    )
    assert k.platform.identify_requests == []


def test_id_card_with_a_bad_check_digit_is_refused() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity(id_number="110105194912310021"))
    k.settle()
    assert k.shown(RefusalView).text_key == "refusal.id_card_invalid"


def test_id_reader_fault_shows_device_unavailable() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(DeviceFaultError("SAM self-test failed"))
    k.settle()
    assert k.shown(RefusalView).text_key == "refusal.device_unavailable"


# ---- face ----------------------------------------------------------------------------------------------


def test_face_mismatch_allows_two_retries_then_sends_to_staff() -> None:
    k = make_kiosk()
    k.platform.identify_script.extend(
        [
            refused(RefusalCode.FACE_MISMATCH, attempts_left="2"),
            refused(RefusalCode.FACE_MISMATCH, attempts_left="1"),
            refused(RefusalCode.FACE_MISMATCH, attempts_left="0"),
        ]
    )
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()
    for n in (1, 2):
        view = k.shown(RefusalView)
        assert (view.screen, view.text_key, view.params["n"], view.can_retry) == (
            Screen.REFUSAL,
            "refusal.face_mismatch",
            str(n),
            True,
        )
        k.flow.press_retry()
        assert k.screen == "face"
        assert k.shown(FaceView).attempt == n + 1
        k.settle()
    assert (k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == ("refusal.face_attempts_exhausted", False)
    assert [r.face_attempt for r in k.platform.identify_requests] == [1, 2, 3]
    assert len({r.request_id for r in k.platform.identify_requests}) == 3


def test_platform_saying_attempts_exhausted_is_final() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(refused(RefusalCode.FACE_ATTEMPTS_EXHAUSTED))
    to_face(k)
    assert (k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == ("refusal.face_attempts_exhausted", False)


def test_still_photo_refused_by_liveness_three_times_then_staff() -> None:
    k = make_kiosk()
    still = FaceFrames(images_jpeg=(b"x",), quality=0.8, liveness_passed=False)
    k.face.script.extend([still, still, still])
    to_face(k)
    assert (k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == ("refusal.not_live", True)
    k.flow.press_retry()
    k.settle()
    assert k.shown(RefusalView).text_key == "refusal.not_live"
    k.flow.press_retry()
    k.settle()
    assert k.shown(RefusalView).text_key == "refusal.face_attempts_exhausted"
    assert k.platform.identify_requests == []  # a photo never reaches the platform


def test_no_usable_face_offers_a_retry_that_succeeds() -> None:
    k = make_kiosk()
    k.face.script.append(nothing())
    to_face(k)
    assert (k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == ("refusal.face_not_usable", True)
    k.flow.press_retry()
    k.settle()
    assert k.screen == "card_insert"


def test_camera_fault_shows_device_unavailable() -> None:
    k = make_kiosk()
    k.face.script.append(DeviceFaultError("camera gone"))
    to_face(k)
    assert k.shown(RefusalView).text_key == "refusal.device_unavailable"


def test_platform_unavailable_on_identify_retries_the_same_request_id() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(platform_down())
    to_face(k)
    assert (k.shown(RefusalView).text_key, k.shown(RefusalView).can_retry) == ("refusal.platform_unavailable", True)
    k.flow.press_retry()
    assert k.screen == "verifying"
    k.settle()
    assert k.screen == "card_insert"
    first, second = k.platform.identify_requests
    assert first.request_id == second.request_id


# ---- refusals -------------------------------------------------------------------------------------------


_PLATFORM_REASONS = [r for r in common_pb2.RefusalReason.keys() if r != "REFUSAL_REASON_UNSPECIFIED"]  # noqa: SIM118


@pytest.mark.parametrize("reason", _PLATFORM_REASONS)
def test_every_platform_refusal_code_has_its_own_words(reason: str) -> None:
    code = RefusalCode[reason.removeprefix("REFUSAL_REASON_")]
    assert has_text(f"refusal.{code.value}"), f"texts.py has no words for {code}"


def test_not_invited_is_shown_with_no_retry() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(refused(RefusalCode.NOT_INVITED))
    to_face(k)
    view = k.shown(RefusalView)
    assert (view.screen, view.text_key, view.can_retry, view.can_cancel) == (
        Screen.REFUSAL,
        "refusal.not_invited",
        False,
        False,
    )
    k.flow.press_home()
    assert k.screen == "home"


def test_already_checked_in_shows_time_kiosk_and_room() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(
        refused(RefusalCode.ALREADY_CHECKED_IN, time="08:12", kiosk="K2 一楼大厅", room="1208")
    )
    to_face(k)
    assert k.shown(RefusalView).text_key == "refusal.already_checked_in"
    assert dict(k.shown(RefusalView).params) == {"time": "08:12", "kiosk": "K2 一楼大厅", "room": "1208"}


def test_an_unknown_refusal_code_falls_back_to_the_platforms_words() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(refused(RefusalCode.UNSPECIFIED))
    to_face(k)
    view = k.shown(RefusalView)
    assert (view.text_key, view.message_zh, view.message_en) == ("refusal.unknown", "平台说明", "platform says")


# ---- bank card -----------------------------------------------------------------------------------------


def test_chip_unreadable_then_read() -> None:
    k = make_kiosk()
    to_verified(k)
    k.bank.script.append(UnreadableError("card moved"))
    k.settle()
    assert (k.screen, k.flow.view.error) == ("card_insert", "error.card_unreadable")
    k.bank.script.append(FakeCardData(pan=PAN, source="contactless"))
    k.settle()
    assert (k.screen, k.shown(CardConfirmView).source) == ("card_confirm", CardSource.CONTACTLESS)


def test_chip_card_failing_luhn_is_refused_with_card_number_invalid() -> None:
    k = make_kiosk()
    to_verified(k)
    k.bank.script.append(FakeCardData(pan="6212345678901233"))
    k.settle()
    assert (k.screen, k.flow.view.error) == ("card_insert", "error.card_number_invalid")


def test_reader_fault_leaves_swipe_and_typing() -> None:
    k = make_kiosk()
    to_verified(k)
    k.bank.script.append(DeviceFaultError("no reader"))
    k.settle()
    view = k.shown(CardInsertView)
    assert (view.screen, view.error, view.reader_available) == (
        Screen.CARD_INSERT,
        "error.card_reader_unavailable",
        False,
    )
    reads = k.bank.reads
    k.flow.press_type()
    k.flow.press_insert()
    k.settle()
    assert k.bank.reads == reads  # a failed reader is not polled again in this session
    assert k.flow.view.error == "error.card_reader_unavailable"


@pytest.mark.parametrize(
    ("typed", "screen", "error"),
    [
        ("6212 3456 7890 1232", "card_confirm", None),
        ("6212345678901233", "card_type", "error.card_number_invalid"),
        ("12345", "card_type", "error.card_number_invalid"),
        ("abcd", "card_type", "error.card_number_invalid"),
    ],
)
def test_typed_card_numbers_are_luhn_checked_at_the_kiosk(typed: str, screen: str, error: str | None) -> None:
    k = make_kiosk()
    to_verified(k)
    k.flow.press_type()
    assert k.screen == "card_type"
    k.flow.submit_card_number(typed)
    assert (k.screen, k.flow.view.error) == (screen, error)


def test_swipe_good_bad_and_unreadable() -> None:
    k = make_kiosk()
    to_verified(k)
    k.flow.press_swipe()
    assert k.screen == "card_swipe"
    k.flow.submit_swipe("garbage")
    assert k.flow.view.error == "error.card_swipe_unreadable"
    k.flow.submit_swipe(";6212345678901233=3012101?")
    assert k.flow.view.error == "error.card_number_invalid"
    k.flow.submit_swipe(f";{PAN}=3012101?")
    assert (k.screen, k.shown(CardConfirmView).source) == ("card_confirm", CardSource.SWIPE)


def test_invalid_entry_from_the_chip_reader_is_shown() -> None:
    k = make_kiosk()
    to_verified(k)
    k.bank.script.append(InvalidEntryError("bad PAN"))
    k.settle()
    assert k.flow.view.error == "error.card_number_invalid"


def test_a_late_chip_read_after_switching_to_typing_is_ignored() -> None:
    k = make_kiosk()
    to_verified(k)
    k.flow.press_type()
    k.bank.script.append(FakeCardData(pan=PAN))
    k.settle()
    assert k.screen == "card_type"


def test_reenter_card_from_confirm_drops_the_card() -> None:
    k = make_kiosk()
    to_verified(k)
    k.bank.script.append(FakeCardData(pan=PAN))
    k.settle()
    k.flow.press_reenter_card()
    assert k.screen == "card_insert"


# ---- signature -----------------------------------------------------------------------------------------


def test_empty_signature_is_refused_and_a_real_one_accepted() -> None:
    k = make_kiosk()
    to_signature(k)
    blank = Signature(600, 200)
    k.flow.submit_signature(blank)
    assert (k.screen, k.flow.view.error) == ("signature", "error.signature_empty")
    tap = Signature(600, 200)
    tap.begin_stroke(100, 100)
    k.flow.submit_signature(tap)
    assert k.flow.view.error == "error.signature_empty"
    k.flow.submit_signature(signed())
    assert k.screen == "dispensing"


# ---- dispensing ----------------------------------------------------------------------------------------


def test_completion_is_written_ahead_before_it_is_sent() -> None:
    k = make_kiosk()
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    rid = k.platform.complete_requests[0].request_id
    assert k.platform.log == [f"write_ahead {rid}", f"complete {rid}"]


def test_platform_silent_when_binding_hands_the_band_out_and_queues_the_check_in() -> None:
    k = make_kiosk()
    k.platform.complete_script.append(platform_down())
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "room_pending"
    rid = k.platform.complete_requests[0].request_id
    assert k.pending.records == {rid: "deliver"}
    assert k.dispenser.decisions[0][1].bound is True
    k.clock.advance(20)
    assert k.screen == "home"


def test_band_not_taken_after_binding_annuls_through_the_queue() -> None:
    k = make_kiosk()
    k.dispenser.behaviour = "leave"
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert (k.screen, k.shown(BandProblemView).not_taken) == ("band_problem", True)
    rid = k.platform.complete_requests[0].request_id
    assert k.pending.records == {rid: "annul band_not_taken"}
    assert "band_problem" in k.audit.names()


def test_unreadable_band_is_rejected_before_binding_and_nothing_is_queued() -> None:
    k = make_kiosk()
    k.dispenser.behaviour = "unreadable"
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert (k.screen, k.shown(BandProblemView).not_taken) == ("band_problem", False)
    assert k.platform.complete_requests == []
    assert k.pending.records == {}


def test_arm_fault_after_binding_annuls_as_dispense_failed() -> None:
    k = make_kiosk()
    k.dispenser.behaviour = "raise"
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "band_problem"
    assert list(k.pending.records.values()) == ["annul dispense_failed"]


def test_no_room_left_when_binding_shows_the_refusal_and_rejects_the_band() -> None:
    k = make_kiosk()
    k.platform.complete_script.append(refused(RefusalCode.NO_ROOM_LEFT))
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert (k.screen, k.shown(RefusalView).text_key) == ("refusal", "refusal.no_room_left")
    assert k.dispenser.decisions[0][1].bound is False
    assert k.pending.records == {}


def test_a_band_the_platform_refuses_is_replaced_by_another_band() -> None:
    k = make_kiosk()
    k.platform.complete_script.extend([refused(RefusalCode.BAND_NOT_AVAILABLE), completed()])
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "done"
    assert [uid for uid, _ in k.dispenser.decisions] == ["04A1B2C3D4E5F0", "04A1B2C3D4E5F1"]
    first, second = k.platform.complete_requests
    assert first.request_id != second.request_id


def test_two_refused_bands_end_in_the_band_problem_screen() -> None:
    k = make_kiosk()
    k.platform.complete_script.extend([refused(RefusalCode.BAND_UNKNOWN), refused(RefusalCode.BAND_UNKNOWN)])
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "band_problem"
    assert len(k.dispenser.decisions) == 2


def test_cancel_is_not_offered_while_the_arm_holds_a_band() -> None:
    k = make_kiosk()
    to_signature(k)
    k.flow.submit_signature(signed())
    k.flow.press_cancel()
    assert k.screen == "dispensing"
    k.settle()
    assert k.screen == "done"


# ---- cancel, timeout and wiping ----------------------------------------------------------------------


def _drive_to(k: Kiosk, step: Step) -> None:  # noqa: C901
    """Put the flow in `step` the way an expert would."""
    if step == Step.READING_ID:
        k.flow.press_start()
        return
    if step is Step.CAPTURING_FACE:
        k.flow.press_start()
        k.id_card.script.append(FakeIdentity())
        k.worker.step_until(lambda: k.screen == "face")  # the capture job stays queued
        return
    if step is Step.VERIFYING:
        k.flow.press_start()
        k.id_card.script.append(FakeIdentity())
        k.worker.step_until(lambda: k.screen == "verifying")  # the identify job stays queued
        return
    if step is Step.REFUSED:
        k.platform.identify_script.append(refused(RefusalCode.NOT_INVITED))
        to_face(k)
        return
    if step is Step.CARD_ON_FILE:
        to_verified(k, card_on_file=True)
        return
    if step is Step.CARD_INSERT:
        to_verified(k)
        return
    if step is Step.CARD_SWIPE:
        to_verified(k)
        k.flow.press_swipe()
        return
    if step is Step.CARD_TYPE:
        to_verified(k)
        k.flow.press_type()
        return
    if step is Step.CARD_CONFIRM:
        to_verified(k)
        k.flow.press_type()
        k.flow.submit_card_number(PAN)
        return
    if step is Step.SIGNATURE:
        to_signature(k)
        return
    if step in {Step.DONE, Step.ROOM_PENDING, Step.BAND_PROBLEM}:
        if step is Step.ROOM_PENDING:
            k.platform.complete_script.append(platform_down())
        if step is Step.BAND_PROBLEM:
            k.dispenser.behaviour = "unreadable"
        to_signature(k)
        k.flow.submit_signature(signed())
        k.settle()
        return
    raise AssertionError(step)


@pytest.mark.parametrize("step", sorted(CANCELLABLE_STATES), ids=str)
def test_cancel_at_every_step_goes_home_and_wipes_the_expert(step: Step) -> None:
    k = make_kiosk()
    _drive_to(k, step)
    assert k.flow.state is step
    # 取消 everywhere; the ending and problem screens offer 返回首页 instead, which does the same.
    assert k.flow.view.can_cancel or step in {Step.DONE, Step.ROOM_PENDING, Step.REFUSED, Step.BAND_PROBLEM}
    cleared = k.face.cleared
    k.flow.press_cancel()
    assert k.screen == "home"
    assert not k.flow.session_active
    assert k.face.cleared > cleared
    k.settle()  # late results of jobs started before the cancel change nothing
    assert k.screen == "home"


@pytest.mark.parametrize("step", sorted(ATTENTION_STATES - {Step.STAFF_PIN, Step.STAFF_MENU}), ids=str)
def test_inactivity_shows_a_15_s_countdown_then_goes_home(step: Step) -> None:
    k = make_kiosk()
    _drive_to(k, step)
    k.clock.advance(59)
    assert k.flow.view.countdown is None
    k.clock.advance(1)
    assert k.flow.view.countdown == 15
    k.clock.advance(5)
    assert k.flow.view.countdown == 10
    k.clock.advance(10)
    assert k.screen == "home"
    assert not k.flow.session_active
    assert "timeout" in k.audit.names()


def test_a_touch_during_the_countdown_keeps_the_expert() -> None:
    k = make_kiosk()
    to_signature(k)
    k.clock.advance(65)
    assert k.flow.view.countdown == 10
    k.flow.touch()
    assert k.flow.view.countdown is None
    k.clock.advance(59)
    assert (k.screen, k.flow.view.countdown) == ("signature", None)


def test_verifying_and_dispensing_have_no_inactivity_timer() -> None:
    k = make_kiosk()
    _drive_to(k, Step.VERIFYING)
    k.clock.advance(600)
    assert k.screen == "verifying"


def test_cancel_while_verifying_drops_the_late_answer() -> None:
    k = make_kiosk()
    _drive_to(k, Step.VERIFYING)
    k.flow.press_cancel()
    k.settle()
    assert k.screen == "home"
    assert len(k.platform.identify_requests) == 1


def test_wipe_drops_every_reference_to_the_experts_identity() -> None:
    k = make_kiosk()
    identity = FakeIdentity()
    ref = weakref.ref(identity)
    k.flow.press_start()
    k.id_card.script.append(identity)
    k.settle()
    k.flow.press_type()
    k.flow.submit_card_number(PAN)
    del identity
    gc.collect()
    assert ref() is not None  # still needed mid-check-in
    k.flow.press_cancel()
    k.views.clear()
    gc.collect()
    assert ref() is None
    assert not any(PAN in repr(v) for v in k.views)


def test_views_never_carry_a_full_id_or_card_number() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()
    k.bank.script.append(FakeCardData(pan=PAN))
    k.settle()
    k.flow.press_confirm_card()
    k.flow.submit_signature(signed())
    k.settle()
    for view in k.views:
        text = repr(dataclasses.asdict(view))
        assert PAN not in text
        assert "11010519491231002X" not in text


# ---- language ------------------------------------------------------------------------------------------


def test_language_toggle_lasts_for_the_session_and_resets_for_the_next_expert() -> None:
    k = make_kiosk()
    k.flow.toggle_language()
    assert k.flow.view.language is Language.EN
    k.flow.press_start()
    assert k.flow.view.language is Language.EN
    k.flow.press_cancel()
    assert k.shown(HomeView).language is Language.ZH  # a fresh read: the flow moved on


def test_speech_toggle_is_in_every_view() -> None:
    k = make_kiosk()
    k.flow.toggle_speech()
    assert k.flow.view.speech_on is False
    k.flow.press_start()
    assert k.flow.view.speech_on is False


# ---- staff mode ----------------------------------------------------------------------------------------


def test_staff_pin_wrong_then_locked_then_right() -> None:
    k = make_kiosk()
    k.flow.staff_gesture()
    assert k.screen == "staff_pin"
    k.flow.submit_pin("000000")
    assert k.flow.view.error == "error.pin_wrong"
    for _ in range(4):
        k.flow.submit_pin("111111")
    assert k.shown(StaffPinView).locked_seconds == 60
    k.flow.submit_pin(PIN)  # locked: even the right PIN is not accepted
    assert k.screen == "staff_pin"
    k.clock.advance(59)  # (no touch: the 60 s inactivity timer would fire at 60)
    k.flow.touch()
    k.clock.advance(2)
    k.flow.submit_pin(PIN)
    assert k.screen == "staff_menu"


def test_staff_menu_self_test_refill_and_out_of_service() -> None:
    k = make_kiosk()
    k.devices["arm"].ok = False
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    view = k.shown(StaffMenuView)
    assert (view.band_stock, view.pending_check_ins, view.forced_out_of_service) == (50, 0, False)
    k.flow.staff_self_test()
    assert k.shown(StaffMenuView).self_test_running is True
    k.settle()
    lines = {line.device: line.ok for line in k.shown(StaffMenuView).self_test}
    assert lines == {"arm": False, "camera": True}
    k.flow.staff_refill("0")
    assert k.flow.view.error == "error.refill_count_invalid"
    k.flow.staff_refill("abc")
    assert k.flow.view.error == "error.refill_count_invalid"
    k.flow.staff_refill("30")
    assert (k.shown(StaffMenuView).band_stock, k.shown(StaffMenuView).error) == (80, None)
    k.flow.staff_toggle_out_of_service()
    k.flow.staff_exit()
    assert k.screen == "out_of_service"
    assert "staff" in k.shown(OutOfServiceView).problems
    k.flow.health_changed(healthy())
    assert k.screen == "out_of_service"  # staff said so: heartbeats do not override
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    k.flow.staff_toggle_out_of_service()
    k.flow.staff_exit()
    assert k.screen == "home"


def test_staff_mode_lists_queued_records_and_clears_only_refused_ones() -> None:
    k = make_kiosk()
    k.pending.records.update({"rid-waiting": "deliver", "rid-refused": "refused"})
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    assert [(r.request_id, r.state) for r in k.shown(StaffMenuView).queued] == [
        ("rid-waiting", "deliver"),
        ("rid-refused", "refused"),
    ]
    k.flow.staff_clear_queued("rid-waiting")  # still to be delivered: not staff's to drop
    k.flow.staff_clear_queued("rid-refused")
    assert [r.request_id for r in k.shown(StaffMenuView).queued] == ["rid-waiting"]
    assert k.shown(StaffMenuView).pending_check_ins == 1
    assert "staff_clear rid-refused" in k.pending.log


def test_refill_brings_an_empty_kiosk_back_into_service() -> None:
    k = make_kiosk(health=ServiceHealth(platform_reachable=True, batch=BATCH, band_stock=0))
    assert k.screen == "out_of_service"
    k.stock.value = 0
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    k.flow.staff_refill("100")
    k.flow.staff_exit()
    assert k.screen == "home"


def test_staff_mode_times_out_to_home() -> None:
    k = make_kiosk()
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    k.clock.advance(75)
    assert k.screen == "home"


def test_staff_gesture_does_nothing_during_a_check_in() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.flow.staff_gesture()
    assert k.screen == "id_card"


def test_audit_events_carry_only_the_last_four_of_the_id_number() -> None:
    k = make_kiosk()
    k.platform.identify_script.append(refused(RefusalCode.NOT_INVITED))
    to_face(k)
    k.flow.press_home()
    hints = {e.id_number_hint for e in k.audit.events}
    assert hints <= {"", "002X"}
    assert "002X" in hints
