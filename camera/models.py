"""What a camera gives: its parsed source, frames (BGR, with the camera's clock), and a face's box in a frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pathlib import Path

BgrImage: TypeAlias = npt.NDArray[np.uint8]


class SourceKind(Enum):
    """Where frames come from: a camera device, a video file, or a folder of still images."""

    DEVICE = "device"
    VIDEO_FILE = "video_file"
    IMAGE_FOLDER = "image_folder"


@dataclass(frozen=True, slots=True)
class CameraSource:
    """A parsed camera source: a device index, or a path to a video file or an image folder."""

    kind: SourceKind
    device_index: int | None = None
    path: Path | None = None

    def __str__(self) -> str:
        return str(self.device_index) if self.kind is SourceKind.DEVICE else str(self.path)


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera frame (BGR, as OpenCV delivers it) with its sequence number and the camera's clock.

    `timestamp` is seconds on the camera's own monotonic clock: time.monotonic() for a device, the
    media time (frame number / frame rate) for a file, so a file gives the same results at any speed.
    """

    index: int
    timestamp: float
    image: BgrImage = field(repr=False)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face's box in full-frame pixel coordinates."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.bottom - self.top

    @property
    def centre(self) -> tuple[float, float]:
        """Centre (x, y) in pixels."""
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)
