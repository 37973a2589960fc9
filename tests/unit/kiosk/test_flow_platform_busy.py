"""The flow when the platform answers "busy" (every face worker taken): wait as advised, resend the same request;
and the client's reading of the advice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from checkin.flow.ports import PlatformBusyError
from checkin.flow.views import RefusalView, VerifyingView
from checkin.platform_client import RETRY_AFTER_KEY, advised_wait_s
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


# ---- the advice in the busy answer's trailing metadata ---------------------------------------------------

_KEYS = st.sampled_from([RETRY_AFTER_KEY, "grpc-status", "x-other", "retry-after"])
_VALUES = st.one_of(st.integers(-(10**6), 10**9).map(str), st.text(max_size=12), st.binary(max_size=8))


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=5))
def test_any_trailing_metadata_gives_a_wait_of_zero_or_more_seconds_or_none(
    trailing: list[tuple[str, str | bytes]],
) -> None:
    wait = advised_wait_s(trailing)
    advice = [value for key, value in trailing if key == RETRY_AFTER_KEY]
    try:
        millis: int | None = int(advice[0])  # the first advice, read as whole milliseconds
    except (IndexError, ValueError):
        millis = None
    if millis is None or millis < 0:
        assert wait is None
    else:
        assert wait == millis / 1000
        assert wait >= 0


def test_the_advice_is_read_in_milliseconds_and_a_bad_one_advises_nothing() -> None:
    assert advised_wait_s(((RETRY_AFTER_KEY, "1500"),)) == 1.5
    assert advised_wait_s(((RETRY_AFTER_KEY, "-5"),)) is None
    assert advised_wait_s(((RETRY_AFTER_KEY, "soon"),)) is None
    assert advised_wait_s((("retry-after", "1500"),)) is None
    assert advised_wait_s(None) is None
