"""Errors of the camera: one root, a leaf for each way a camera or a capture can fail.

Each error carries a stable `key` the kiosk translates (user-facing failures are data) and whether
trying again may help.
"""

from __future__ import annotations

from typing import ClassVar


class CameraError(Exception):
    """Root of every error raised by the camera package."""

    key: ClassVar[str] = "camera_error"
    #: True when trying the same step again may succeed (a dropped USB frame, a busy device).
    retryable: ClassVar[bool] = False


class CameraSourceError(CameraError):
    """A camera source string that is not a device index, a video file or a folder of images."""

    key = "camera_source_invalid"


class CameraOpenError(CameraError):
    """The device, video file or image folder could not be opened."""

    key = "camera_unavailable"
    retryable = True


class CameraReadError(CameraError):
    """An opened camera stopped delivering frames (unplugged, driver error, unreadable image)."""

    key = "camera_read_failed"
    retryable = True


class CameraStreamEndedError(CameraError):
    """A video file or image folder opened without looping has no more frames."""

    key = "camera_stream_ended"


class SyntheticClipError(CameraError):
    """A synthetic camera clip that cannot be made (no face to blink, unreadable image)."""

    key = "synthetic_clip_invalid"
