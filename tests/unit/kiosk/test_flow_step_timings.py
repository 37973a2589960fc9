"""The kiosk reports each screen of a session it leaves: which, how long, and how the session went on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.unit.kiosk.fakes import PIN, FakeIdentity, make_kiosk

if TYPE_CHECKING:
    from tests.unit.kiosk.fakes import Kiosk


def steps(k: Kiosk) -> list[tuple[str, str]]:
    return [(e.outcome, e.detail) for e in k.audit.events if e.event == "step"]


def test_cancel_on_the_face_screen_reports_both_steps_with_their_time() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.clock.advance(3)
    k.id_card.script.append(FakeIdentity())
    k.worker.step_until(lambda: k.screen == "face")
    k.clock.advance(7)
    k.flow.press_cancel()
    k.settle()
    assert k.screen == "home"
    assert steps(k) == [("id_card", "ms=3000 end=next"), ("face", "ms=7000 end=cancelled")]


def test_a_step_left_to_the_inactivity_timeout_says_so() -> None:
    k = make_kiosk()
    k.flow.press_start()
    k.clock.advance(60 + 15)
    assert k.screen == "home"
    assert steps(k) == [("id_card", "ms=75000 end=timeout")]


def test_staff_screens_report_no_steps() -> None:
    k = make_kiosk()
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    assert k.screen == "staff_menu"
    k.clock.advance(5)
    k.flow.press_cancel()
    assert k.screen == "home"
    k.flow.press_start()
    k.clock.advance(2)
    k.flow.press_cancel()
    assert steps(k) == [("id_card", "ms=2000 end=cancelled")]
