"""OpenCV camera (device, video file or image folder) and the worker thread that keeps the latest frame.

The worker reads frames as fast as the camera delivers them and keeps only the newest, so the
preview never waits for face analysis and analysis never queues stale frames.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np

from camera.errors import (
    CameraError,
    CameraOpenError,
    CameraReadError,
    CameraStreamEndedError,
)
from camera.models import CameraSource, Frame, SourceKind
from camera.protocol import IMAGE_SUFFIXES, parse_source

if TYPE_CHECKING:
    from pathlib import Path

    from camera.models import BgrImage
    from camera.protocol import Camera

logger = logging.getLogger(__name__)

DEFAULT_FILE_FPS: Final = 15.0
FPS_WINDOW_S: Final = 2.0


class OpenCvCamera:
    """Camera through OpenCV: VideoCapture of a device index or a video file, or cv2.imread over a folder.

    Files are paced at their frame rate by default, so a simulated camera delivers frames like a real
    one; `paced=False` reads them as fast as possible (tests, benchmarks). `loop` restarts a file at
    its end instead of ending the stream.
    """

    def __init__(
        self,
        source: str | CameraSource,
        *,
        loop: bool = False,
        paced: bool = True,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        self._source = parse_source(source) if isinstance(source, str) else source
        if fps is not None and not 1.0 <= fps <= 120.0:
            raise ValueError(f"camera fps must be between 1 and 120, got {fps}")
        self._loop = loop
        self._paced = paced
        self._requested_fps = fps
        self._size = (width, height)
        self._capture: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._fps = fps or DEFAULT_FILE_FPS
        self._position = 0  # next frame within the file or folder
        self._delivered = 0  # frames delivered since construction: survives a reopen
        self._started_at = 0.0
        self._closed = threading.Event()

    @property
    def source(self) -> CameraSource:
        """Where the frames come from."""
        return self._source

    @property
    def fps(self) -> float:
        """Nominal frame rate: the file's, the requested one, or DEFAULT_FILE_FPS for a folder."""
        return self._fps

    def open(self) -> None:
        """Open the device, file or folder; raise CameraOpenError."""
        self._closed.clear()
        self._position = 0
        kind = self._source.kind
        if kind is SourceKind.IMAGE_FOLDER:
            assert self._source.path is not None
            self._images = sorted(p for p in self._source.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise CameraOpenError(f"camera folder {self._source.path} holds no images")
        else:
            target: int | str = (
                self._source.device_index if kind is SourceKind.DEVICE else str(self._source.path)  # type: ignore[assignment]
            )
            capture = cv2.VideoCapture(target)
            if not capture.isOpened():
                capture.release()
                raise CameraOpenError(f"camera {self._source} could not be opened")
            width, height = self._size
            if kind is SourceKind.DEVICE:
                # Drivers pick the nearest mode they support; what they picked is read back below.
                if width and height:
                    capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                if self._requested_fps:
                    capture.set(cv2.CAP_PROP_FPS, self._requested_fps)
            file_fps = capture.get(cv2.CAP_PROP_FPS)
            if self._requested_fps is None and 1.0 <= file_fps <= 120.0:
                self._fps = file_fps
            self._capture = capture
        self._started_at = time.monotonic() - self._delivered / self._fps
        logger.info("camera %s opened (%s, %.1f fps)", self._source, kind.value, self._fps)

    def read(self) -> Frame:
        """Block until the next frame; raise CameraReadError, or CameraStreamEndedError at the end of a file."""
        if self._closed.is_set():
            raise CameraReadError(f"camera {self._source} is closed")
        if self._source.kind is SourceKind.DEVICE:
            image = self._read_capture()
            timestamp = time.monotonic()
        else:
            if self._paced:
                # A file has no shutter: wait until this frame is due, as a real camera would.
                due = self._started_at + self._delivered / self._fps
                delay = due - time.monotonic()
                if delay > 0 and self._closed.wait(delay):
                    raise CameraReadError(f"camera {self._source} was closed while waiting for a frame")
            image = self._read_file_frame()
            timestamp = self._delivered / self._fps
        frame = Frame(index=self._delivered, timestamp=timestamp, image=image)
        self._delivered += 1
        return frame

    def close(self) -> None:
        """Release the device or file. Call it from the reading thread or after reading stopped."""
        self._closed.set()
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _read_capture(self) -> BgrImage:
        if self._capture is None:
            raise CameraReadError(f"camera {self._source} is not open")
        ok, image = self._capture.read()
        if not ok or image is None:
            raise CameraReadError(f"camera {self._source} delivered no frame")
        return _as_bgr(image)

    def _read_file_frame(self) -> BgrImage:
        if self._source.kind is SourceKind.VIDEO_FILE:
            if self._capture is None:
                raise CameraReadError(f"camera {self._source} is not open")
            ok, image = self._capture.read()
            if not ok and self._loop and self._position > 0:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._position = 0
                ok, image = self._capture.read()
            if not ok or image is None:
                if self._position == 0:
                    raise CameraReadError(f"video {self._source} holds no readable frame")
                raise CameraStreamEndedError(f"video {self._source} ended after {self._position} frames")
            self._position += 1
            return _as_bgr(image)
        if self._position >= len(self._images):
            if not self._loop:
                raise CameraStreamEndedError(f"image folder {self._source} ended after {self._position} frames")
            self._position = 0
        path = self._images[self._position]
        loaded = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies the EXIF orientation
        if loaded is None:
            raise CameraReadError(f"image {path.name} in {self._source} is not readable")
        self._position += 1
        return _as_bgr(loaded)


def _as_bgr(image: object) -> BgrImage:
    """OpenCV's untyped Mat as our typed 8-bit BGR array (no copy)."""
    return np.asarray(image, dtype=np.uint8)


class CaptureWorker:
    """Reads a camera on its own thread and keeps the newest frame for the preview and the analysis.

    A read failure is retried by reopening the camera, `max_reopen` times with doubling back-off,
    then the worker stops with `error` set (the kiosk goes out of service and says why).
    """

    def __init__(self, camera: Camera, *, max_reopen: int = 3, backoff_s: float = 0.5) -> None:
        self._camera = camera
        self._max_reopen = max_reopen
        self._backoff_s = backoff_s
        self._condition = threading.Condition()
        self._latest: Frame | None = None
        self._stopping = threading.Event()
        self._finished = False
        self._error: CameraError | None = None
        self._delivery_times: collections.deque[float] = collections.deque()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera.source}", daemon=True)

    @property
    def error(self) -> CameraError | None:
        """Why the worker stopped, if it stopped on a failure (None at the end of a non-looping file)."""
        return self._error

    @property
    def finished(self) -> bool:
        """True once no more frames will come (stopped, ended or failed)."""
        return self._finished

    def start(self) -> None:
        """Start reading on the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading, release the camera and drop the last frame."""
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Stop reading without waiting: the thread ends after its current read and releases the camera.

        The newest frame is dropped now and no later frame is kept. A read in progress lasts up to one
        frame interval; `join` waits for it (before the camera is opened again).
        """
        with self._condition:  # under the lock _publish checks the flag in: no frame is kept after this
            self._stopping.set()
            self._latest = None
            self._condition.notify_all()

    def join(self, timeout: float = 2.0) -> bool:
        """Wait until the reading thread has ended and released the camera; False if it is still running."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def clear(self) -> None:
        """Forget the newest frame (the check-in ended: no picture of the expert stays in memory)."""
        with self._condition:
            self._latest = None

    def latest(self) -> Frame | None:
        """The newest frame, for the preview; None before the first one."""
        with self._condition:
            return self._latest

    def wait_for_frame(self, after_index: int, timeout: float) -> Frame | None:
        """The newest frame with an index above after_index, waiting up to timeout; None if none came."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._finished and (self._latest is None or self._latest.index <= after_index):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return None
                self._condition.wait(remaining)
            latest = self._latest
            return latest if latest is not None and latest.index > after_index else None

    def preview_fps(self) -> float:
        """Frames delivered per second over the last two seconds of wall time."""
        with self._condition:
            times = list(self._delivery_times)
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _publish(self, frame: Frame) -> None:
        now = time.monotonic()
        with self._condition:
            if self._stopping.is_set():
                return  # read during a stop: never kept
            self._latest = frame
            self._delivery_times.append(now)
            while self._delivery_times and now - self._delivery_times[0] > FPS_WINDOW_S:
                self._delivery_times.popleft()
            self._condition.notify_all()

    def _run(self) -> None:
        try:
            self._read_until_stopped()
        except CameraStreamEndedError:
            logger.info("camera %s: end of stream", self._camera.source)
        except CameraError as err:
            logger.warning("camera %s stopped: %s", self._camera.source, err)
            self._error = err
        finally:
            self._camera.close()
            with self._condition:
                self._finished = True
                self._condition.notify_all()

    def _read_until_stopped(self) -> None:
        failures = 0
        self._open_with_retries()
        while not self._stopping.is_set():
            try:
                frame = self._camera.read()
            except CameraStreamEndedError:
                raise
            except CameraReadError as err:
                if self._stopping.is_set():
                    return
                failures += 1
                if failures > self._max_reopen:
                    raise CameraReadError(
                        f"camera {self._camera.source} failed {failures} times in a row: {err}"
                    ) from err
                logger.warning(
                    "camera %s: %s; reopening (%d of %d)", self._camera.source, err, failures, self._max_reopen
                )
                self._camera.close()
                if self._stopping.wait(self._backoff_s * 2 ** (failures - 1)):
                    return
                self._open_with_retries()
                continue
            failures = 0
            self._publish(frame)

    def _open_with_retries(self) -> None:
        for attempt in range(1, self._max_reopen + 2):
            try:
                self._camera.open()
            except CameraOpenError as err:
                if attempt > self._max_reopen:
                    raise
                logger.warning(
                    "camera %s: %s; retrying (%d of %d)", self._camera.source, err, attempt, self._max_reopen
                )
                if self._stopping.wait(self._backoff_s * 2 ** (attempt - 1)):
                    return
            else:
                return
