"""BlinkDetector: open-closed-open within the time limit is a blink; a still photo's noise never is."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkin.face.liveness import BlinkDetector, EyePhase

FPS = 15.0


def feed(detector: BlinkDetector, samples: list[tuple[float, float]], start: float = 0.0) -> int:
    """Feed (ear, darkness) samples at 15 fps; return how many calls reported a completed blink."""
    return sum(detector.observe(start + i / FPS, ear, dark) for i, (ear, dark) in enumerate(samples))


OPEN = (0.30, 0.35)
CLOSED = (0.12, 0.02)


def test_a_blink_is_open_closed_open() -> None:
    detector = BlinkDetector()
    assert feed(detector, [OPEN] * 10 + [CLOSED] * 3 + [OPEN] * 3) == 1
    assert detector.blinks == 1
    assert detector.phase is EyePhase.OPEN


def test_either_cue_alone_can_show_the_closure() -> None:
    # dlib's landmarks may keep an open shape on a shut eye; the dark band still disappears.
    detector = BlinkDetector()
    assert feed(detector, [OPEN] * 10 + [(0.29, 0.02)] * 3 + [OPEN] * 3) == 1


def test_eyes_shut_for_too_long_is_not_a_blink() -> None:
    detector = BlinkDetector(max_closed_s=1.0)
    assert feed(detector, [OPEN] * 10 + [CLOSED] * 20 + [OPEN] * 5) == 0


def test_closed_from_the_start_is_not_a_blink() -> None:
    detector = BlinkDetector()
    assert feed(detector, [CLOSED] * 10 + [OPEN] * 10) == 0


def test_reset_forgets_a_half_blink() -> None:
    detector = BlinkDetector()
    feed(detector, [OPEN] * 10 + [CLOSED] * 2)
    detector.reset()
    assert feed(detector, [OPEN] * 5, start=5.0) == 0
    assert detector.blinks == 0


def test_eyes_open_is_known_only_after_a_baseline() -> None:
    detector = BlinkDetector()
    assert not detector.eyes_open
    feed(detector, [OPEN] * 3)
    assert detector.eyes_open
    feed(detector, [CLOSED], start=1.0)
    assert not detector.eyes_open


@settings(max_examples=200, deadline=None)
@given(
    base_ear=st.floats(0.15, 0.45),
    base_dark=st.floats(0.08, 0.6),
    noise=st.lists(st.tuples(st.floats(-0.12, 0.12), st.floats(-0.12, 0.12)), min_size=5, max_size=150),
)
def test_a_still_photo_never_blinks(base_ear: float, base_dark: float, noise: list[tuple[float, float]]) -> None:
    # Landmark and pixel noise on a photo stays within about ±10%: never a closure of 40%.
    detector = BlinkDetector()
    samples = [(base_ear * (1 + e), base_dark * (1 + d)) for e, d in noise]
    assert feed(detector, samples) == 0


@settings(max_examples=100, deadline=None)
@given(
    base_ear=st.floats(0.15, 0.45),
    open_before=st.integers(3, 30),
    closed_frames=st.integers(1, 12),
    depth=st.floats(0.0, 0.5),
)
def test_any_clear_short_closure_is_a_blink(
    base_ear: float, open_before: int, closed_frames: int, depth: float
) -> None:
    detector = BlinkDetector()
    samples = (
        [(base_ear, 0.3)] * open_before + [(base_ear * depth, 0.3 * depth)] * closed_frames + [(base_ear, 0.3)] * 2
    )
    assert feed(detector, samples) == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="closed_ratio"):
        BlinkDetector(closed_ratio=0.9, reopened_ratio=0.8)
    with pytest.raises(ValueError, match="max_closed_s"):
        BlinkDetector(max_closed_s=0)


def test_turn_detector_sees_a_turn_and_back_and_not_jitter() -> None:
    from checkin.face.liveness import TurnDetector  # noqa: PLC0415

    rng = np.random.default_rng(3)
    still = TurnDetector()
    assert not any(still.observe(i / 15, float(rng.uniform(-0.05, 0.05))) for i in range(150))
    turn = TurnDetector()
    yaws = [0.0] * 10 + [0.1, 0.25, 0.3, 0.25, 0.1] + [0.0] * 5
    sides = [turn.observe(i / 15, y) for i, y in enumerate(yaws)]
    assert [s for s in sides if s] == [1.0]  # toward the picture's right: the person's own left
    assert turn.facing
    held = TurnDetector(max_turn_s=1.0)
    yaws = [0.0] * 10 + [-0.3] * 30 + [0.0] * 5  # turned for 2 s: not a turn and back
    assert not any(held.observe(i / 15, y) for i, y in enumerate(yaws))
