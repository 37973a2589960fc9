"""Camera source strings, capture settings, and the capture worker over a failing camera."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from camera.driver import CaptureWorker, OpenCvCamera
from camera.errors import CameraOpenError, CameraReadError, CameraSourceError, CameraStreamEndedError
from camera.models import CameraSource, Frame, SourceKind
from camera.protocol import parse_source
from checkin.face.models import CaptureSettings

if TYPE_CHECKING:
    from pathlib import Path


def test_device_index() -> None:
    assert parse_source(" 0 ") == CameraSource(SourceKind.DEVICE, device_index=0)
    assert parse_source("2").device_index == 2


def test_files_and_folders(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.jpg").write_bytes(b"x")
    assert parse_source(str(video)).kind is SourceKind.VIDEO_FILE
    assert parse_source(str(tmp_path / "frames")).kind is SourceKind.IMAGE_FOLDER


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("64", "0..63"), ("/no/such/thing.mp4", "not a device index")],
)
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises(CameraSourceError, match=message):
        parse_source(text)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CameraSourceError, match=r"no \.jpg"):
        parse_source(str(tmp_path))


def test_unopenable_video(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video")
    camera = OpenCvCamera(str(bogus), paced=False)
    with pytest.raises(CameraOpenError, match=r"bogus\.mp4 could not be opened"):
        camera.open()


def test_unreadable_image_in_folder(tmp_path: Path) -> None:
    (tmp_path / "frame_0.jpg").write_bytes(b"broken")
    camera = OpenCvCamera(str(tmp_path), paced=False)
    camera.open()
    with pytest.raises(CameraReadError, match=r"frame_0\.jpg"):
        camera.read()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detect_width": 100}, "detect_width"),
        ({"min_face_share": 0.8, "max_face_share": 0.5}, "min_face_share"),
        ({"closed_ratio": 0.9, "reopened_ratio": 0.85}, "closed_ratio"),
        ({"best_frames": 4}, "best_frames"),
        ({"blink_deadline_s": float("nan")}, "blink_deadline_s"),
    ],
)
def test_capture_settings_are_range_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaptureSettings(**kwargs)  # type: ignore[arg-type]


class FlakyCamera:
    """A fake camera: delivers `good` frames, then fails every read (an unplugged USB camera)."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.opens = 0
        self.reads = 0
        self.closed = 0

    @property
    def source(self) -> CameraSource:
        return CameraSource(SourceKind.DEVICE, device_index=9)

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Frame:
        self.reads += 1
        if self.reads > self.good:
            raise CameraReadError("no frame")
        return Frame(self.reads, float(self.reads), np.zeros((4, 4, 3), dtype=np.uint8))

    def close(self) -> None:
        self.closed += 1


def wait_finished(worker: CaptureWorker) -> None:
    while not worker.finished:
        worker.wait_for_frame(10**9, timeout=0.05)


def test_worker_reopens_a_failing_camera_a_bounded_number_of_times() -> None:
    camera = FlakyCamera(good=2)
    worker = CaptureWorker(camera, max_reopen=3, backoff_s=0.001)
    worker.start()
    wait_finished(worker)
    assert isinstance(worker.error, CameraReadError)
    assert "failed 4 times" in str(worker.error)
    assert camera.opens == 4  # the first open and three reopens
    assert worker.latest() is not None
    worker.stop()
    assert worker.latest() is None


class EndingCamera(FlakyCamera):
    def read(self) -> Frame:
        if self.reads >= self.good:
            raise CameraStreamEndedError("end")
        return super().read()


def test_worker_ends_cleanly_at_the_end_of_a_file() -> None:
    worker = CaptureWorker(EndingCamera(good=3))
    worker.start()
    wait_finished(worker)
    assert worker.error is None
    frame = worker.latest()
    assert frame is not None
    assert frame.index == 3
    assert worker.wait_for_frame(3, timeout=0.01) is None


class GatedCamera(FlakyCamera):
    """A camera whose every read waits until the test lets one frame through (a read in progress)."""

    def __init__(self) -> None:
        super().__init__(good=10**6)
        self.started = 0
        self.in_second_read = threading.Event()
        self.let_through = threading.Event()

    def read(self) -> Frame:
        self.started += 1
        if self.started == 2:
            self.in_second_read.set()
        assert self.let_through.wait(30), "the test never let the frame through"
        self.let_through.clear()
        return super().read()


def test_request_stop_answers_at_once_keeps_no_later_frame_and_join_waits_for_the_release() -> None:
    camera = GatedCamera()
    worker = CaptureWorker(camera)
    worker.start()
    camera.let_through.set()
    assert worker.wait_for_frame(0, timeout=30) is not None
    assert camera.in_second_read.wait(30)  # blocked in its second read, as a camera between two frames
    worker.request_stop()  # returns although the read goes on
    assert worker.latest() is None
    assert camera.closed == 0
    assert not worker.join(timeout=0.01)  # still in the read
    camera.let_through.set()  # the frame that was being read arrives after the stop
    deadline = time.monotonic() + 30
    while not worker.finished:  # the thread's own end (join would also drop the frame)
        assert time.monotonic() < deadline, "the camera thread did not end"
        time.sleep(0.005)
    assert worker.latest() is None  # it ended without handing the late frame over
    assert worker.join(timeout=30)
    assert camera.closed == 1  # released by its own thread
    assert worker.latest() is None  # the late frame was never kept
