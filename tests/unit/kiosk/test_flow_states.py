"""One enum for the flow's states and its screens: the view published in a state is that state's screen."""

from __future__ import annotations

import pytest

from checkin.flow.machine import CANCELLABLE_STATES, Step
from checkin.flow.views import Screen
from tests.unit.kiosk.fakes import make_kiosk
from tests.unit.kiosk.test_flow import _drive_to


def test_the_machine_names_are_aliases_of_the_screens() -> None:
    assert Step is Screen
    assert (Step.READING_ID, Step.CAPTURING_FACE, Step.REFUSED) == (Screen.ID_CARD, Screen.FACE, Screen.REFUSAL)
    assert len(list(Step)) == 18  # aliases add no member


@pytest.mark.parametrize("step", sorted(CANCELLABLE_STATES, key=str), ids=str)
def test_every_state_publishes_its_own_screen(step: Step) -> None:
    k = make_kiosk()
    _drive_to(k, step)
    assert k.flow.state is step
    assert k.flow.view.screen is step


def test_home_and_staff_states_publish_their_own_screens() -> None:
    k = make_kiosk()
    assert (k.flow.view.screen, k.flow.state) == (Step.HOME, Step.HOME)
    k.flow.staff_gesture()
    assert (k.flow.view.screen, k.flow.state) == (Step.STAFF_PIN, Step.STAFF_PIN)
