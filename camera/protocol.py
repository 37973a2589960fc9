"""The camera interface the kiosk codes against, and the parsing of camera source strings.

A source string picks the implementation's input the way a serial URL picks a transport: "0" is
the first camera device, a path to a file is a video, a path to a folder is a sequence of images
(sorted by name). The simulator link of the camera is the same OpenCV driver reading a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

from camera.errors import CameraSourceError
from camera.models import CameraSource, Frame, SourceKind

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
MAX_DEVICE_INDEX: Final = 63


class Camera(Protocol):
    """A source of frames: opened once, read frame by frame on a worker thread, closed."""

    @property
    def source(self) -> CameraSource:
        """Where the frames come from."""
        ...

    def open(self) -> None:
        """Open the device or file; raise CameraOpenError."""
        ...

    def read(self) -> Frame:
        """Block until the next frame; raise CameraReadError, or CameraStreamEndedError at the end of a file."""
        ...

    def close(self) -> None:
        """Release the device or file; safe to call twice, and from another thread to end a blocked read."""
        ...


def parse_source(text: str) -> CameraSource:
    """Parse "0" (device index), a video file path or an image folder path; raise CameraSourceError."""
    value = text.strip()
    if not value:
        raise CameraSourceError(
            "camera source is empty: give a device index such as 0, a video file or an image folder"
        )
    if value.isdigit():
        index = int(value)
        if index > MAX_DEVICE_INDEX:
            raise CameraSourceError(f"camera device index must be 0..{MAX_DEVICE_INDEX}, got {index}")
        return CameraSource(kind=SourceKind.DEVICE, device_index=index)
    path = Path(value).expanduser()
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            raise CameraSourceError(f"camera source folder {path} holds no .jpg/.jpeg/.png/.bmp images")
        return CameraSource(kind=SourceKind.IMAGE_FOLDER, path=path)
    if path.is_file():
        return CameraSource(kind=SourceKind.VIDEO_FILE, path=path)
    raise CameraSourceError(f"camera source {value!r} is not a device index, an existing video file or an image folder")
