"""One identify's liveness check split over two face workers decides as the whole check does in one process.

The evidence is built as bench/liveness_attacks.py builds it: a synthetic live blink clip through the
kiosk's own FaceCheck (bona fide), the photo held still, and the recording replayed as the answer to
another challenge; the photo is the scenarios' (faces:obama_1.jpg, or the astronaut portrait).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from camera.simulator import make_clip
from checkin.face.models import CaptureSettings, LivenessChallenge
from platform_server.bootstrap import face_verifier_from
from platform_server.config import FaceSection, PlatformConfig
from platform_server.face import api
from platform_server.face.liveness_decision import EndsPart, LivenessSettings, MotionPart, decide
from platform_server.face.pool import ProcessFaceVerifier
from sim_world.faces import resolve_face
from tests.integration.face.test_camera_capture import run_check

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from checkin.face.face_analysis import FaceAnalyser
    from platform_server.face.liveness_check import DlibLivenessChecker

pytestmark = pytest.mark.xdist_group("dlib")

STILL_FRAMES = (0, 7, 14)  # the bench's: 15 fps, 0, 467 and 933 ms
FRAME_MS = 1000 / 15


@dataclass(frozen=True)
class Recorded:
    """A bona fide blink as the kiosk sends it, and the photo held still in front of the camera."""

    photo: Path
    frames: tuple[api.ChallengeFrame, ...]
    captures: tuple[bytes, ...]
    still_frames: tuple[api.ChallengeFrame, ...]
    still_capture: bytes


def _as_evidence(challenge: LivenessChallenge, frames: tuple[api.ChallengeFrame, ...]) -> api.LivenessEvidence:
    return api.LivenessEvidence(api.LivenessChallenge(challenge.value), "split", frames)


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buffer)


def _decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessFaceVerifier]:
    """The server's configuration on this machine: two workers, each with the verifier and the check."""
    verifier = face_verifier_from(PlatformConfig(face=FaceSection(processes=2, queue=2)), worker_processes=True)
    assert isinstance(verifier, ProcessFaceVerifier)
    yield verifier
    verifier.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, analyser: FaceAnalyser) -> Recorded:
    work = tmp_path_factory.mktemp("split")
    photo = resolve_face("faces:obama_1.jpg|astronaut", base=work, work=work).path
    assert photo is not None
    live = make_clip(photo, work / "live", blink=True, frames=60, finder=analyser)
    _statuses, result = run_check(live, analyser, CaptureSettings(), LivenessChallenge.BLINK)
    assert result is not None
    assert result.passed
    still = sorted(make_clip(photo, work / "still", blink=False, frames=21, finder=analyser).iterdir())
    return Recorded(
        photo=photo,
        frames=tuple(api.ChallengeFrame(f.jpeg, f.at_ms) for f in result.challenge_frames),
        captures=tuple(result.jpeg_frames),
        still_frames=tuple(api.ChallengeFrame(still[i].read_bytes(), round(i * FRAME_MS)) for i in STILL_FRAMES),
        still_capture=still[20].read_bytes(),
    )


@pytest.fixture(scope="module")
def reference(pool: ProcessFaceVerifier, recorded: Recorded) -> bytes:
    return pool.encode_reference(recorded.photo.read_bytes())


def assert_same(split: api.LivenessVerdict, alone: api.LivenessVerdict) -> None:
    """Same decision, same reason, the same measures (within 1e-6)."""
    assert (split.passed, split.reason) == (alone.passed, alone.reason), (split, alone)
    assert split.measures.keys() == alone.measures.keys(), (split, alone)
    for name, value in alone.measures.items():
        assert split.measures[name] == pytest.approx(value, abs=1e-6), (name, split, alone)


def split_check(
    pool: ProcessFaceVerifier, evidence: api.LivenessEvidence, captures: tuple[bytes, ...], reference: bytes
) -> tuple[api.LivenessVerdict, api.FaceVerdict | api.FaceImageError]:
    free = pool.free_places
    verdict, compared = pool.check_liveness_and_verify(evidence, captures, reference)
    assert pool.free_places == free  # both places given back
    return verdict, compared


def test_a_bona_fide_blink_and_the_attacks_get_the_in_process_verdicts(
    pool: ProcessFaceVerifier, recorded: Recorded, reference: bytes, liveness_checker: DlibLivenessChecker
) -> None:
    cases = [(LivenessChallenge.BLINK, recorded.frames, recorded.captures)]
    # The blink recording replayed as the answer to a turn; the photo held still, for every challenge.
    cases += [(c, recorded.frames, recorded.captures) for c in LivenessChallenge if c is not LivenessChallenge.BLINK]
    cases += [(c, recorded.still_frames, (recorded.still_capture,)) for c in LivenessChallenge]
    verdicts = []
    for challenge, frames, captures in cases:
        evidence = _as_evidence(challenge, frames)
        split, compared = split_check(pool, evidence, captures, reference)
        assert_same(split, liveness_checker.check(evidence, captures))
        assert isinstance(compared, api.FaceVerdict)
        verdicts.append(split)
    live, *attacks = verdicts
    assert live.passed
    assert {"action", "within", "to_capture"} <= live.measures.keys()  # both parts' descriptors counted
    assert not any(v.passed for v in attacks)
    assert {v.reason for v in attacks} <= {"no_blink", "no_turn", "wrong_turn", "eyes_not_open", "not_facing"}


def test_the_capture_compared_is_the_first_with_a_usable_face_in_both_paths(
    pool: ProcessFaceVerifier,
    recorded: Recorded,
    reference: bytes,
    liveness_checker: DlibLivenessChecker,
    no_face_jpeg: bytes,
) -> None:
    evidence = _as_evidence(LivenessChallenge.BLINK, recorded.frames)
    usual = liveness_checker.check(evidence, recorded.captures)
    # A first capture without a face: the comparison skips it, and so does the check.
    captures = (no_face_jpeg, *recorded.captures)
    split, compared = split_check(pool, evidence, captures, reference)
    alone = liveness_checker.check(evidence, captures)
    assert_same(split, alone)
    assert isinstance(compared, api.FaceVerdict)
    assert alone.passed
    assert alone.measures["to_capture"] == usual.measures["to_capture"]


def test_a_second_face_in_a_later_capture_stays_the_comparisons_refusal(
    pool: ProcessFaceVerifier, recorded: Recorded, reference: bytes, liveness_checker: DlibLivenessChecker
) -> None:
    # Two captures side by side: two faces, which the comparison refuses. The check, with no compared
    # capture, describes the first capture alone: it passes, so identify names the capture's problem.
    pair = np.hstack([_decoded(c) for c in recorded.captures[:2]])
    captures = (*recorded.captures[:2], _jpeg(pair))
    evidence = _as_evidence(LivenessChallenge.BLINK, recorded.frames)
    split, compared = split_check(pool, evidence, captures, reference)
    assert isinstance(compared, api.FaceImageError)
    assert compared.problem is api.FaceImageProblem.SEVERAL_FACES
    alone = liveness_checker.check(evidence, captures)
    assert_same(split, alone)
    assert alone.passed


def test_a_refusal_of_either_part_is_the_in_process_refusal(
    pool: ProcessFaceVerifier,
    recorded: Recorded,
    reference: bytes,
    liveness_checker: DlibLivenessChecker,
    faces_dir: Path,
    tmp_path: Path,
    analyser: FaceAnalyser,
) -> None:
    frames = recorded.frames
    other = sorted(make_clip(faces_dir / "biden_1.jpg", tmp_path / "other", blink=False, frames=3).iterdir())
    someone_else = other[1].read_bytes()
    cases = {
        # The motion part (the worker with the evidence) refuses:
        "timing": (tuple(api.ChallengeFrame(f.image, 500) for f in frames), recorded.captures),
        "frame_unusable": (
            (frames[0], api.ChallengeFrame(b"\xff\xd8 cut", frames[1].captured_at_ms), *frames[2:]),
            recorded.captures,
        ),
        "no_blink": (recorded.still_frames, (recorded.still_capture,)),
        # The ends part (the worker with the captures and the last frame) refuses:
        "face_changed": (
            (*frames[:-1], api.ChallengeFrame(someone_else, frames[-1].captured_at_ms)),
            recorded.captures,
        ),
        "not_capture_face": (frames, (someone_else,)),
        "capture_unusable": (frames, (b"not an image",)),
    }
    for reason, (challenge_frames, captures) in cases.items():
        evidence = _as_evidence(LivenessChallenge.BLINK, challenge_frames)
        split, _compared = split_check(pool, evidence, captures, reference)
        alone = liveness_checker.check(evidence, captures)
        assert alone.reason == reason, alone
        assert_same(split, alone)


def test_the_decision_takes_the_motion_refusal_first_and_needs_the_ends_otherwise() -> None:
    face = np.zeros(128)
    refused = MotionPart(settings=LivenessSettings(), refusal=("no_blink", {"closed": 0.9}), measures={})
    assert decide(refused, None) == api.LivenessVerdict(passed=False, reason="no_blink", measures={"closed": 0.9})
    passed = MotionPart(settings=LivenessSettings(), refusal=None, measures={"closed": 0.1}, first=face, peak=face)
    with pytest.raises(ValueError, match="needs"):
        decide(passed, None)
    far = np.full(128, 0.1)  # 0.1 × √128 ≈ 1.13 from the first frame's face
    assert decide(passed, EndsPart(face, None, far, None)).reason == "not_capture_face"
    assert decide(passed, EndsPart(far, None, face, None)).reason == "face_changed"
    assert decide(passed, EndsPart(face, None, None, "no_capture")).reason == "no_capture"
    assert decide(passed, EndsPart(face, None, face, None)).passed
