"""What the kiosk's face capture produces: the face measured in a frame, guidance, liveness, results.

Frames, sources and face boxes are the camera device's (camera.models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from camera.models import FaceBox


class GuidanceHint(StrEnum):
    """What the expert should do next; the UI maps each value to words (checkin/texts.py `hint.<value>`)."""

    NO_FACE = "no_face"  # 请正视摄像头
    SEVERAL_FACES = "several_faces"  # 请一位一位办理
    TOO_FAR = "too_far"  # 请靠近一些
    TOO_CLOSE = "too_close"  # 请稍微后退
    NOT_CENTRED = "not_centred"  # 请将面部移到框内
    HOLD_STILL = "hold_still"  # 请保持不动 (the face moves, or the picture is blurred)
    BLURRY = "hold_still"  # alias of HOLD_STILL: a blurred face is nearly always a moving face
    TOO_DARK = "too_dark"  # 光线不足
    BLINK_PLEASE = "blink_please"  # 请眨眨眼
    TURN_LEFT_PLEASE = "turn_left_please"  # 请向左转头，再转回来
    TURN_RIGHT_PLEASE = "turn_right_please"  # 请向右转头，再转回来
    OK = "ok"  # 很好，请保持


class LivenessChallenge(StrEnum):
    """What the expert is asked to do to show a live face; picked at random for each capture."""

    BLINK = "blink"
    TURN_LEFT = "turn_left"  # to the expert's own left, and back
    TURN_RIGHT = "turn_right"


class LivenessState(StrEnum):
    """Progress of the blink challenge."""

    WAITING = "waiting"  # no usable face yet
    CHALLENGE = "challenge"  # a usable face is there; waiting for a blink until the deadline
    PASSED = "passed"  # a blink was seen on the same face, which stayed in view
    REFUSED = "refused"  # no blink before the deadline: a still photo or a screen (未检测到真人)


@dataclass(frozen=True, slots=True)
class FaceMeasurement:
    """What one analysed frame says about its one face: geometry, image quality, eye openness."""

    box: FaceBox
    eye_aspect_ratio: float  # from the 68 landmarks: about 0.25-0.35 open, under 0.15 closed
    eye_darkness: float  # height of the dark iris/pupil band over the eye width: gone when closed
    sharpness: float  # variance of the Laplacian of the face, scaled to 128×128
    brightness: float  # mean grey level of the face, 0-255
    yaw: float = 0.0  # head turn from the landmarks, -1..1; above 0 the nose points to the picture's right


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    """All faces found in a frame, and the measurement of the face when there is exactly one."""

    frame_size: tuple[int, int]  # (width, height)
    face_boxes: tuple[FaceBox, ...]
    face: FaceMeasurement | None


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    """What the face screen shows now: the hint, the liveness state, the face box for the oval guide."""

    hint: GuidanceHint
    liveness: LivenessState
    face_box: FaceBox | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class ChallengeFrame:
    """A frame of the liveness challenge for the platform to check: JPEG crop, ms since the challenge began."""

    jpeg: bytes = field(repr=False)
    at_ms: int


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """The end of a face capture: the liveness verdict and, if passed, the best 1-3 frames as JPEG.

    With a pass come the challenge that was run and its frames (neutral, the action, neutral again),
    which the platform checks itself.
    """

    liveness: LivenessState
    jpeg_frames: tuple[bytes, ...] = field(repr=False, default=())
    challenge: LivenessChallenge | None = None
    challenge_frames: tuple[ChallengeFrame, ...] = ()

    @property
    def passed(self) -> bool:
        """True when the capture may be sent for verification."""
        return self.liveness is LivenessState.PASSED and bool(self.jpeg_frames)


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """Quality gates, liveness challenge and frame selection; checked when built (kiosk config [camera])."""

    detect_width: int = 480  # frames are downscaled to this width for detection
    min_face_share: float = 0.2  # face width / frame width below which the expert is TOO_FAR
    max_face_share: float = 0.7  # above: TOO_CLOSE (the face is cut by the frame)
    centre_tolerance: float = 0.18  # largest offset of the face centre from the frame centre, per axis
    min_sharpness: float = 40.0  # Laplacian variance of the 128×128 face below which it is blurred
    min_brightness: float = 60.0  # mean grey of the face below which it is TOO_DARK
    max_motion_per_s: float = 1.5  # face centre speed in face widths per second above which: HOLD_STILL
    blink_deadline_s: float = 8.0  # from the first usable face to REFUSED if no blink was seen
    closed_ratio: float = 0.6  # eyes count as closed below this share of their open baseline
    reopened_ratio: float = 0.85  # and as open again above this share
    max_closed_s: float = 1.0  # a closure longer than this is not a blink (eyes shut, a hand)
    turn_yaw: float = 0.15  # a head turn: yaw this far toward the asked side from the neutral pose
    max_turn_s: float = 3.0  # a turn and back within this
    lost_face_s: float = 0.6  # a face missing this long starts the challenge again (no photo swap)
    hint_hold_s: float = 0.4  # a new hint must hold this long before it is shown or spoken
    best_frames: int = 3  # frames sent to the platform
    settle_after_blink_s: float = 1.0  # longest wait after the blink for more good frames
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        """Range-check every setting with a message that names it."""
        limits: dict[str, tuple[float, float]] = {
            "detect_width": (160, 1920),
            "min_face_share": (0.05, 0.9),
            "max_face_share": (0.1, 1.0),
            "centre_tolerance": (0.01, 0.5),
            "min_sharpness": (0.0, 10_000.0),
            "min_brightness": (0.0, 255.0),
            "max_motion_per_s": (0.0, 50.0),
            "blink_deadline_s": (1.0, 120.0),
            "closed_ratio": (0.05, 0.95),
            "reopened_ratio": (0.1, 1.0),
            "max_closed_s": (0.1, 5.0),
            "turn_yaw": (0.05, 0.8),
            "max_turn_s": (0.3, 10.0),
            "lost_face_s": (0.0, 10.0),
            "hint_hold_s": (0.0, 5.0),
            "best_frames": (1, 3),
            "settle_after_blink_s": (0.0, 10.0),
            "jpeg_quality": (50, 100),
        }
        for item in fields(self):
            low, high = limits[item.name]
            value = getattr(self, item.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"Option '{item.name}' in section 'camera' must be between {low} and {high}, got {value!r}"
                )
        if self.min_face_share >= self.max_face_share:
            raise ValueError("Option 'min_face_share' in section 'camera' must be below 'max_face_share'")
        if self.closed_ratio >= self.reopened_ratio:
            raise ValueError("Option 'closed_ratio' in section 'camera' must be below 'reopened_ratio'")
