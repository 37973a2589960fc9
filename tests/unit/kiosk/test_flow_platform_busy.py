"""The flow when the platform answers "busy" (every face worker taken): wait as advised, resend the same request."""

from __future__ import annotations

from checkin.flow.ports import PlatformBusyError
from checkin.flow.views import RefusalView, VerifyingView
from tests.unit.kiosk.fakes import FakeIdentity, Kiosk, identified, make_kiosk


def busy(retry_after_s: float) -> PlatformBusyError:
    return PlatformBusyError("IdentifyExpert: face verification is busy", retry_after_s)


def to_verifying(k: Kiosk) -> None:
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()


def test_a_busy_answer_is_sent_again_after_the_advised_wait_with_the_same_request() -> None:
    k = make_kiosk()
    k.platform.identify_script.extend([busy(1.0), busy(1.0), identified()])
    to_verifying(k)
    assert k.shown(VerifyingView).busy
    assert len(k.platform.identify_requests) == 1
    k.clock.advance(0.99)  # the advised wait is not over: nothing is sent
    k.settle()
    assert len(k.platform.identify_requests) == 1
    k.clock.advance(0.26)  # past the longest stretched wait (1.25 × the advice)
    k.settle()
    assert len(k.platform.identify_requests) == 2
    k.clock.advance(1.25)
    k.settle()
    assert k.screen == "card_insert"
    assert len({r.request_id for r in k.platform.identify_requests}) == 1
    assert len(k.platform.identify_requests) == 3
    # One event for the whole wait, not one per answer.
    assert [(e.event, e.outcome) for e in k.audit.events if e.outcome == "platform_busy"] == [
        ("identify", "platform_busy")
    ]


def test_busy_past_the_kiosks_patience_is_a_refusal_with_retry() -> None:
    k = make_kiosk(platform_busy_wait_s=3.0)
    k.platform.identify_script.extend([busy(1.0)] * 5)
    to_verifying(k)
    for _ in range(5):
        k.clock.advance(1.25)
        k.settle()
    view = k.shown(RefusalView)
    assert (view.text_key, view.can_retry) == ("refusal.platform_busy", True)
    # At most 3 s of waits: the first answer and at most three resends (each wait is 1 to 1.25 s).
    sent = len(k.platform.identify_requests)
    assert 3 <= sent <= 4
    k.platform.identify_script.clear()
    k.platform.identify_script.append(identified())
    k.flow.press_retry()
    k.settle()
    assert k.screen == "card_insert"
    assert len({r.request_id for r in k.platform.identify_requests}) == 1


def test_an_expert_who_cancels_while_the_platform_is_busy_stops_the_resending() -> None:
    k = make_kiosk()
    k.platform.identify_script.extend([busy(1.0), identified()])
    to_verifying(k)
    assert k.shown(VerifyingView).busy
    k.flow.press_cancel()
    k.settle()
    assert k.screen == "home"
    k.clock.advance(5)
    k.settle()
    assert len(k.platform.identify_requests) == 1
