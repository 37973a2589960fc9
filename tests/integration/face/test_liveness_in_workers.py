"""The server's liveness check runs in the face worker processes, with the in-process check's verdicts."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from camera.simulator import make_clip
from platform_server.bootstrap import face_verifier_from, liveness_checker_from
from platform_server.config import FaceSection, PlatformConfig, ServerSection
from platform_server.errors import OverloadedError
from platform_server.face import api
from platform_server.face.pool import PooledLivenessChecker, ProcessFaceVerifier
from tests.integration.face.test_camera_capture import run_check
from tests.integration.face.test_liveness_check import evidence

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from checkin.face.face_analysis import FaceAnalyser
    from platform_server.face.liveness_check import DlibLivenessChecker

pytestmark = pytest.mark.xdist_group("dlib")


def test_a_face_queue_too_long_for_the_request_threads_is_shortened_and_said_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = PlatformConfig(server=ServerSection(max_workers=8), face=FaceSection(processes=1, queue=40))
    with caplog.at_level("WARNING"):
        verifier = face_verifier_from(config, worker_processes=True)
    assert isinstance(verifier, ProcessFaceVerifier)
    try:
        # 6 of the 8 threads: the worker's place and 5 in the queue; a call beyond them is answered busy.
        assert verifier.free_places == 6
        assert "[face] shortened: processes 1 → 1, queue 40 → 5" in caplog.text
    finally:
        verifier.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessFaceVerifier]:
    config = PlatformConfig(face=FaceSection(processes=1, queue=2))
    verifier = face_verifier_from(config, worker_processes=True)
    assert isinstance(verifier, ProcessFaceVerifier)
    yield verifier
    verifier.close()


def test_the_server_checks_liveness_in_the_workers_with_the_same_verdicts(
    tmp_path: Path,
    faces_dir: Path,
    analyser: FaceAnalyser,
    liveness_checker: DlibLivenessChecker,
    pool: ProcessFaceVerifier,
) -> None:
    checker = liveness_checker_from(PlatformConfig(), pool)
    assert isinstance(checker, PooledLivenessChecker)  # no dlib model in the serving process
    clip = make_clip(faces_dir / "obama_1.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _statuses, result = run_check(clip, analyser)
    assert result is not None
    assert result.passed
    live = evidence(result)
    in_worker = checker.check(live, result.jpeg_frames)
    assert in_worker.passed, in_worker
    assert in_worker == liveness_checker.check(live, result.jpeg_frames)
    # A still photo's frames: refused in the worker for the same reason as in process.
    still_clip = make_clip(faces_dir / "obama_2.jpg", tmp_path / "still", blink=False, frames=10, finder=analyser)
    frames = sorted(still_clip.iterdir())
    still = api.LivenessEvidence(
        api.LivenessChallenge.BLINK, "x", tuple(api.ChallengeFrame(frames[i].read_bytes(), 100 * i) for i in (0, 4, 8))
    )
    refused = checker.check(still, [frames[9].read_bytes()])
    assert not refused.passed
    assert refused == liveness_checker.check(still, [frames[9].read_bytes()])


def test_the_check_and_the_comparison_side_by_side_give_what_each_gives_alone(
    tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser, pool: ProcessFaceVerifier
) -> None:
    checker = liveness_checker_from(PlatformConfig(), pool)
    assert isinstance(checker, PooledLivenessChecker)
    clip = make_clip(faces_dir / "obama_1.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _statuses, result = run_check(clip, analyser)
    assert result is not None
    live = evidence(result)
    reference = pool.encode_reference((faces_dir / "obama_2.jpg").read_bytes())
    free_before = pool.free_places
    verdict, compared = checker.check_and_verify(live, result.jpeg_frames, reference)
    assert pool.free_places == free_before  # both places given back
    assert verdict == checker.check(live, result.jpeg_frames)
    assert isinstance(compared, api.FaceVerdict)
    alone = pool.verify(reference, result.jpeg_frames)
    assert (compared.distance, compared.matched) == (alone.distance, alone.matched)
    # An unusable capture comes back as the comparison's value, beside the check's own verdict.
    verdict, compared = checker.check_and_verify(live, [b"not an image"], reference)
    assert isinstance(compared, api.FaceImageError)
    assert not verdict.passed  # the check could not find the live face in that capture either


def test_an_admission_holds_the_pairs_places_until_its_call_or_its_end(
    faces_dir: Path, pool: ProcessFaceVerifier
) -> None:
    checker = liveness_checker_from(PlatformConfig(), pool)
    assert isinstance(checker, PooledLivenessChecker)
    reference = pool.encode_reference((faces_dir / "obama_2.jpg").read_bytes())
    nothing_live = api.LivenessEvidence(api.LivenessChallenge.BLINK, "x", ())
    free = pool.free_places
    assert free == 3  # one worker, a queue of two
    refused: list[OverloadedError] = []

    def another_identify() -> None:
        try:
            with checker.admission():
                pass
        except OverloadedError as err:
            refused.append(err)

    with checker.admission():
        assert pool.free_places == free - 2
        other = threading.Thread(target=another_identify)
        other.start()
        other.join(30)
        assert len(refused) == 1  # one place left: the other identify is refused at once, nothing taken
        assert refused[0].retry_after_s > 0
        assert pool.free_places == free - 2
        verdict, compared = checker.check_and_verify(nothing_live, [b"not an image"], reference)
        assert not verdict.passed
        assert isinstance(compared, api.FaceImageError)
        assert pool.free_places == free  # the call ran in the admission's places and gave them back
    assert pool.free_places == free
    with checker.admission():  # an identify that ended before its face work
        assert pool.free_places == free - 2
    assert pool.free_places == free


def test_a_verify_admission_holds_one_place_until_its_verify_or_its_end(
    faces_dir: Path, pool: ProcessFaceVerifier
) -> None:
    reference = pool.encode_reference((faces_dir / "obama_1.jpg").read_bytes())
    capture = (faces_dir / "obama_2.jpg").read_bytes()
    free = pool.free_places
    with pool.admission(places=1):  # [face] liveness = kiosk: an identify's comparison alone
        assert pool.free_places == free - 1
        verdict = pool.verify(reference, [capture])
        assert verdict.matched
        assert pool.free_places == free  # the verify ran in the admission's place and gave it back
    assert pool.free_places == free
    with pool.admission(places=1):  # an identify that ended before its comparison
        assert pool.free_places == free - 1
    assert pool.free_places == free


def test_check_room_refuses_while_the_places_are_taken_and_takes_none_itself(pool: ProcessFaceVerifier) -> None:
    free = pool.free_places
    pool.check_room(places=2)  # room for a pair: nothing raised, nothing taken
    assert pool.free_places == free
    with pool.admission(places=2):
        pool.check_room(places=1, sent_again=True)  # one place left, kept for an identify sent again
        with pytest.raises(OverloadedError):
            pool.check_room(places=1)  # not for one sent the first time
        with pytest.raises(OverloadedError) as refused:
            pool.check_room(places=2, sent_again=True)
        assert refused.value.retry_after_s > 0
        assert pool.free_places == free - 2
    pool.check_room(places=2)
