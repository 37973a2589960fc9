"""Kiosk face capture end to end: synthetic clips and the shared video through the real OpenCV camera."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from camera.driver import CaptureWorker, OpenCvCamera
from camera.errors import CameraStreamEndedError, SyntheticClipError
from camera.simulator import make_clip, make_no_face_clip
from checkin.face.capture_session import FaceCaptureSession, FaceCheck
from checkin.face.models import (
    CaptureResult,
    CaptureSettings,
    CaptureStatus,
    GuidanceHint,
    LivenessChallenge,
    LivenessState,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from checkin.face.face_analysis import FaceAnalyser
    from platform_server.face.dlib_verifier import DlibFaceVerifier

# A shorter challenge than the kiosk's 8 s keeps the still-photo tests quick; the logic is the same.
QUICK = CaptureSettings(blink_deadline_s=3.0)


def run_check(
    source: Path | str,
    analyser: FaceAnalyser,
    settings: CaptureSettings = QUICK,
    challenge: LivenessChallenge = LivenessChallenge.BLINK,
) -> tuple[list[CaptureStatus], CaptureResult | None]:
    """Feed every frame of a clip, in order and unpaced, to a FaceCheck until it is done or the clip ends."""
    camera = OpenCvCamera(str(source), paced=False)
    camera.open()
    check = FaceCheck(analyser, settings, challenges=(challenge,))
    statuses: list[CaptureStatus] = []
    try:
        while True:
            try:
                frame = camera.read()
            except CameraStreamEndedError:
                break
            statuses.append(check.process(frame))
            if statuses[-1].done:
                break
    finally:
        camera.close()
    return statuses, check.result


def test_live_blink_passes_and_the_frames_verify_on_the_platform(
    tmp_path: Path,
    faces_dir: Path,
    analyser: FaceAnalyser,
    verifier: DlibFaceVerifier,
    reference: Callable[[str], bytes],
) -> None:
    clip = make_clip(faces_dir / "obama_2.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    statuses, result = run_check(clip, analyser)
    assert result is not None
    assert result.passed
    assert 1 <= len(result.jpeg_frames) <= 3
    assert statuses[-1].hint is GuidanceHint.OK
    assert GuidanceHint.BLINK_PLEASE in {s.hint for s in statuses}
    # What the kiosk sends is what the platform can verify: same person matches, another does not.
    assert verifier.verify(reference("obama_1.jpg"), result.jpeg_frames).matched
    assert not verifier.verify(reference("biden_1.jpg"), result.jpeg_frames).matched


@pytest.mark.parametrize("name", ["obama_1.jpg", "biden_2.jpg", "rose_leslie_2.jpg"])
def test_still_photo_is_refused_by_liveness(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser, name: str) -> None:
    clip = make_clip(faces_dir / name, tmp_path / "still", blink=False, frames=60, finder=analyser)
    statuses, result = run_check(clip, analyser)
    assert result is not None
    assert result.liveness is LivenessState.REFUSED
    assert result.jpeg_frames == ()
    assert not result.passed
    # It was refused for not blinking, not for failing a quality gate: the challenge was on.
    assert LivenessState.CHALLENGE in {s.liveness for s in statuses}


def test_no_face(tmp_path: Path, analyser: FaceAnalyser) -> None:
    statuses, result = run_check(make_no_face_clip(tmp_path / "empty", frames=20), analyser)
    assert {s.hint for s in statuses} == {GuidanceHint.NO_FACE}
    assert {s.liveness for s in statuses} == {LivenessState.WAITING}
    assert result is None


def test_two_faces(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser) -> None:
    clip = make_clip(faces_dir / "multi" / "two_people.jpg", tmp_path / "two", blink=False, frames=15)
    statuses, _ = run_check(clip, analyser)
    assert statuses[-1].hint is GuidanceHint.SEVERAL_FACES
    assert LivenessState.PASSED not in {s.liveness for s in statuses}


def test_blink_clip_needs_exactly_one_face(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser) -> None:
    with pytest.raises(SyntheticClipError, match="2 faces"):
        make_clip(faces_dir / "multi" / "two_people.jpg", tmp_path / "x", blink=True, finder=analyser)


def test_shared_video_with_several_people_never_passes(faces_dir: Path, analyser: FaceAnalyser) -> None:
    statuses, _ = run_check(faces_dir / "video" / "short_hamilton_clip.mp4", analyser, CaptureSettings())
    hints = {s.hint for s in statuses}
    assert GuidanceHint.NO_FACE in hints
    assert LivenessState.PASSED not in {s.liveness for s in statuses}


def test_clip_as_video_file_plays_through_the_camera(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser) -> None:
    clip = make_clip(faces_dir / "obama_1.jpg", tmp_path / "live.avi", blink=True, frames=12, finder=analyser)
    camera = OpenCvCamera(str(clip), paced=False)
    camera.open()
    frames = [camera.read() for _ in range(12)]
    with pytest.raises(CameraStreamEndedError):
        camera.read()
    camera.close()
    assert len(frames) == 12
    assert frames[0].image.shape == (480, 640, 3)
    assert frames[1].timestamp == pytest.approx(1 / 15)


def test_threaded_capture_keeps_the_preview_smooth_and_clear_drops_frames(
    tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser
) -> None:
    clip = make_clip(faces_dir / "obama_1.jpg", tmp_path / "live", blink=True, frames=75, fps=25.0, finder=analyser)
    camera = OpenCvCamera(str(clip), loop=True, fps=25.0)  # paced like a real 25 fps camera
    worker = CaptureWorker(camera)
    seen: list[CaptureStatus] = []
    session = FaceCaptureSession(worker, analyser, CaptureSettings(), on_status=seen.append)
    worker.start()
    session.start()
    try:
        result = session.wait_result(timeout=20.0)
        preview_fps, analysis_fps = worker.preview_fps(), session.analysis_fps()
        print(f"\npreview {preview_fps:.1f} fps (camera 25.0) while analysis ran at {analysis_fps:.1f} fps")
        assert result is not None
        assert result.passed
        assert seen[-1].done
        # The preview is fed by the camera thread alone: it keeps the camera's pace however slow the
        # analysis is (a frame held back by analysis would show as a drop well below 25).
        assert preview_fps >= 20.0
        session.clear()
        assert session.wait_result(timeout=0) is None
        worker.clear()
        assert worker.latest() is None or worker.latest().index > 0  # type: ignore[union-attr]
    finally:
        session.clear()
        worker.stop()
    assert worker.latest() is None
    deadline = time.monotonic() + 5
    while not worker.finished and time.monotonic() < deadline:
        worker.wait_for_frame(10**9, timeout=0.05)
    assert worker.finished
    assert worker.error is None


def test_crops_hold_only_the_face_region(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser) -> None:
    clip = make_clip(faces_dir / "biden_1.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _, result = run_check(clip, analyser)
    assert result is not None
    assert result.passed
    for frame in result.jpeg_frames:
        decoded = cv2.imdecode(np.frombuffer(frame, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        height, width = decoded.shape[:2]
        assert width < 640  # the sides of the lobby, where a bystander would stand, are not sent
        assert height <= 480
