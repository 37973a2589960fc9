"""The kiosk's challenge frames, checked by the platform: each challenge passes live, and fails replayed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from camera.simulator import make_clip
from checkin.face.models import LivenessChallenge
from platform_server.face import api
from tests.integration.face.test_camera_capture import run_check

if TYPE_CHECKING:
    from pathlib import Path

    from checkin.face.face_analysis import FaceAnalyser
    from checkin.face.models import CaptureResult
    from platform_server.face.liveness_check import DlibLivenessChecker


def evidence(result: CaptureResult, challenge: LivenessChallenge | None = None) -> api.LivenessEvidence:
    """What the platform receives: the kiosk's frames, under the challenge the kiosk says it ran."""
    asked = challenge or result.challenge
    assert asked is not None
    return api.LivenessEvidence(
        challenge=api.LivenessChallenge(asked.value),
        challenge_id="test",
        frames=tuple(api.ChallengeFrame(f.jpeg, f.at_ms) for f in result.challenge_frames),
    )


@pytest.mark.parametrize("challenge", list(LivenessChallenge))
def test_each_challenge_done_live_passes_the_platform_and_fails_as_another(
    tmp_path: Path,
    faces_dir: Path,
    analyser: FaceAnalyser,
    liveness_checker: DlibLivenessChecker,
    challenge: LivenessChallenge,
) -> None:
    # obama_1 faces the camera; a photo already turned far (obama_2) cannot be turned further in 2-D.
    clip = make_clip(faces_dir / "obama_1.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _statuses, result = run_check(clip, analyser, challenge=challenge)
    assert result is not None
    assert result.passed
    assert result.challenge is challenge
    assert 3 <= len(result.challenge_frames) <= 6
    times = [f.at_ms for f in result.challenge_frames]
    assert times == sorted(times)
    verdict = liveness_checker.check(evidence(result), result.jpeg_frames)
    assert verdict.passed, verdict
    # The same recording sent as the answer to another challenge: the platform sees it is not.
    other = next(c for c in LivenessChallenge if c is not challenge)
    replayed = liveness_checker.check(evidence(result, other), result.jpeg_frames)
    assert not replayed.passed
    assert replayed.reason in {"no_blink", "no_turn", "wrong_turn", "eyes_not_open", "not_facing"}


def test_frames_of_a_still_photo_are_refused(
    tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser, liveness_checker: DlibLivenessChecker
) -> None:
    clip = make_clip(faces_dir / "obama_2.jpg", tmp_path / "still", blink=False, frames=10, finder=analyser)
    frames = sorted(clip.iterdir())
    still = tuple(api.ChallengeFrame(frames[i].read_bytes(), 100 * i) for i in (0, 4, 8))
    for challenge in api.LivenessChallenge:
        verdict = liveness_checker.check(api.LivenessEvidence(challenge, "x", still), [frames[9].read_bytes()])
        assert not verdict.passed
        assert verdict.reason in {"no_blink", "no_turn"}


def test_missing_or_malformed_evidence_is_refused_with_its_reason(
    tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser, liveness_checker: DlibLivenessChecker
) -> None:
    clip = make_clip(faces_dir / "obama_2.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _statuses, result = run_check(clip, analyser)
    assert result is not None
    good = evidence(result)
    captures = result.jpeg_frames
    assert liveness_checker.check(api.LivenessEvidence(None, "", ()), captures).reason == "no_evidence"
    assert liveness_checker.check(api.LivenessEvidence(good.challenge, "", good.frames[:2]), captures).reason == (
        "frame_count"
    )
    same_time = tuple(api.ChallengeFrame(f.image, 500) for f in good.frames)
    assert liveness_checker.check(api.LivenessEvidence(good.challenge, "", same_time), captures).reason == "timing"
    broken = (
        good.frames[0],
        api.ChallengeFrame(good.frames[1].image[:200], good.frames[1].captured_at_ms),
        good.frames[2],
    )
    assert liveness_checker.check(api.LivenessEvidence(good.challenge, "", broken), captures).reason == "frame_unusable"
    # The challenge done by one person, the captures of another.
    other = make_clip(faces_dir / "biden_1.jpg", tmp_path / "other", blink=False, frames=3, finder=analyser)
    someone_else = [sorted(other.iterdir())[1].read_bytes()]
    assert liveness_checker.check(good, someone_else).reason == "not_capture_face"
