"""FaceCheck's quality gates, hint debouncing and face-loss rules, driven by a scripted analyser."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from camera.models import FaceBox, Frame
from checkin.face.capture_session import FaceCheck
from checkin.face.models import (
    CaptureSettings,
    CaptureStatus,
    FaceMeasurement,
    FrameAnalysis,
    GuidanceHint,
    LivenessChallenge,
    LivenessState,
)

SIZE = (640, 480)
CENTRED = FaceBox(left=220, top=130, right=420, bottom=330)  # 200 px: 31% of the width, centred
GOOD = FaceMeasurement(box=CENTRED, eye_aspect_ratio=0.3, eye_darkness=0.35, sharpness=300.0, brightness=120.0)
SHUT = replace(GOOD, eye_aspect_ratio=0.1, eye_darkness=0.0)
PIXELS = np.zeros((480, 640, 3), dtype=np.uint8)
FPS = 15.0


class ScriptedAnalyser:
    """A fake analyser that returns the next prepared analysis for each frame."""

    def __init__(self, analyses: list[FrameAnalysis]) -> None:
        self.analyses = list(analyses)

    def analyse(self, image: np.ndarray) -> FrameAnalysis:
        return self.analyses.pop(0)


def one(face: FaceMeasurement) -> FrameAnalysis:
    return FrameAnalysis(frame_size=SIZE, face_boxes=(face.box,), face=face)


NOBODY = FrameAnalysis(frame_size=SIZE, face_boxes=(), face=None)
TWO = FrameAnalysis(frame_size=SIZE, face_boxes=(CENTRED, FaceBox(0, 0, 100, 100)), face=None)


def run(
    analyses: list[FrameAnalysis], settings: CaptureSettings | None = None
) -> tuple[FaceCheck, list[CaptureStatus]]:
    check = FaceCheck(
        ScriptedAnalyser(analyses),
        settings or CaptureSettings(hint_hold_s=0.0),
        challenges=(LivenessChallenge.BLINK,),
    )
    statuses = [check.process(Frame(i, i / FPS, PIXELS)) for i in range(len(analyses))]
    return check, statuses


def moved(dx: int) -> FaceMeasurement:
    b = CENTRED
    return replace(GOOD, box=FaceBox(b.left + dx, b.top, b.right + dx, b.bottom))


@pytest.mark.parametrize(
    ("analysis", "hint"),
    [
        (NOBODY, GuidanceHint.NO_FACE),
        (TWO, GuidanceHint.SEVERAL_FACES),
        (one(replace(GOOD, box=FaceBox(300, 200, 380, 280))), GuidanceHint.TOO_FAR),
        (one(replace(GOOD, box=FaceBox(50, 0, 590, 480))), GuidanceHint.TOO_CLOSE),
        (one(moved(200)), GuidanceHint.NOT_CENTRED),
        (one(replace(GOOD, brightness=30.0)), GuidanceHint.TOO_DARK),
        (one(replace(GOOD, sharpness=5.0)), GuidanceHint.BLURRY),
        (one(GOOD), GuidanceHint.BLINK_PLEASE),
    ],
)
def test_each_gate(analysis: FrameAnalysis, hint: GuidanceHint) -> None:
    _, statuses = run([analysis])
    assert statuses[-1].hint is hint


def test_blurry_is_the_hold_still_hint() -> None:
    assert GuidanceHint.BLURRY is GuidanceHint.HOLD_STILL  # type: ignore[comparison-overlap]  # an enum alias
    assert GuidanceHint.BLURRY.value == "hold_still"


def test_a_moving_face_must_hold_still() -> None:
    _, statuses = run([one(GOOD), one(moved(60))])  # 60 px in 1/15 s: 4.5 face widths per second
    assert statuses[-1].hint is GuidanceHint.HOLD_STILL


def test_blink_passes_and_sends_open_eyed_frames() -> None:
    check, statuses = run([one(GOOD)] * 10 + [one(SHUT)] * 3 + [one(GOOD)] * 4)
    assert statuses[-1].done
    assert statuses[-1].liveness is LivenessState.PASSED
    assert statuses[-1].hint is GuidanceHint.OK
    assert check.result is not None
    assert len(check.result.jpeg_frames) == 3
    check.clear()
    assert check.result is None


def test_no_blink_before_the_deadline_is_refused() -> None:
    settings = CaptureSettings(hint_hold_s=0.0, blink_deadline_s=2.0)
    check, statuses = run([one(GOOD)] * 40, settings)
    assert statuses[-1].done
    assert check.result is not None
    assert check.result.liveness is LivenessState.REFUSED
    assert check.result.jpeg_frames == ()


def test_losing_the_face_restarts_the_challenge() -> None:
    # Open eyes, the face goes away (a photo swap), then "closed then open" on whatever came back:
    # the blink must be seen again from a fresh open-eye level, not completed across the gap.
    frames = [one(GOOD)] * 10 + [NOBODY] * 12 + [one(SHUT)] * 3 + [one(GOOD)] * 3
    check, statuses = run(frames)
    assert check.result is None
    assert statuses[-1].liveness is LivenessState.CHALLENGE


def test_hints_are_debounced() -> None:
    settings = CaptureSettings(hint_hold_s=0.4)
    # One dark frame in a run of good ones does not flash "too dark".
    _, statuses = run([one(GOOD)] * 3 + [one(replace(GOOD, brightness=10.0))] + [one(GOOD)] * 3, settings)
    assert GuidanceHint.TOO_DARK not in {s.hint for s in statuses}
    # A lasting change shows once it has held for 0.4 s (6 frames at 15 fps).
    _, statuses = run([one(GOOD)] * 3 + [one(replace(GOOD, brightness=10.0))] * 8, settings)
    hints = [s.hint for s in statuses]
    assert hints[:9] == [GuidanceHint.BLINK_PLEASE] * 9
    assert hints[-1] is GuidanceHint.TOO_DARK


def turned(yaw: float) -> FaceMeasurement:
    return replace(GOOD, yaw=yaw)


def run_challenge(analyses: list[FrameAnalysis], challenge: LivenessChallenge) -> FaceCheck:
    check = FaceCheck(
        ScriptedAnalyser(analyses), CaptureSettings(hint_hold_s=0.0, blink_deadline_s=3.0), challenges=(challenge,)
    )
    for i in range(len(analyses)):
        if check.process(Frame(i, i / FPS, PIXELS)).done:
            break
    return check


# Neutral, then a turn toward the picture's right (the person's own left) and back.
TURN_TO_PERSONS_LEFT = [one(turned(0.0))] * 8 + [one(turned(0.3))] * 4 + [one(turned(0.0))] * 20


def test_a_turn_to_the_left_answers_turn_left_with_its_frames() -> None:
    check = run_challenge(TURN_TO_PERSONS_LEFT, LivenessChallenge.TURN_LEFT)
    result = check.result
    assert result is not None
    assert result.passed
    assert result.challenge is LivenessChallenge.TURN_LEFT
    # The neutral frame before, the turned frames (at most four), the neutral frame after.
    assert 3 <= len(result.challenge_frames) <= 6
    times = [f.at_ms for f in result.challenge_frames]
    assert times == sorted(times)
    assert times[0] >= 0


def test_a_turn_to_the_left_does_not_answer_turn_right_or_blink() -> None:
    for challenge in (LivenessChallenge.TURN_RIGHT, LivenessChallenge.BLINK):
        check = run_challenge(TURN_TO_PERSONS_LEFT + [one(GOOD)] * 40, challenge)
        assert check.result is not None
        assert check.result.liveness is LivenessState.REFUSED, challenge


def test_the_challenge_is_asked_for_in_the_hint() -> None:
    check = FaceCheck(
        ScriptedAnalyser([one(GOOD)] * 3), CaptureSettings(hint_hold_s=0.0), challenges=(LivenessChallenge.TURN_RIGHT,)
    )
    statuses = [check.process(Frame(i, i / FPS, PIXELS)) for i in range(3)]
    assert statuses[-1].hint is GuidanceHint.TURN_RIGHT_PLEASE


def test_the_challenge_is_drawn_from_the_allowed_ones() -> None:
    import random  # noqa: PLC0415

    drawn = {FaceCheck(ScriptedAnalyser([]), rng=random.Random(seed)).challenge for seed in range(30)}
    assert drawn == set(LivenessChallenge)
