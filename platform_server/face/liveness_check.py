"""The platform's own liveness check: the kiosk's challenge frames must show the asked action by one face.

The kiosk runs a random challenge (blink, turn left, turn right) and sends, besides its best captures,
the frames of the challenge with their capture times: neutral, the action, neutral again. This module
measures each frame itself (68 dlib landmarks: eye aspect ratio and the dark iris band for the eyes,
the nose's place between the jaw ends for the head's yaw; the geometry is camera.landmarks, the
kiosk's own), checks the times are those of a person,
and that one face, the face of the captures, is there throughout. `liveness_passed` from the kiosk is
not trusted: a client that speaks the protocol can set it. See docs/face.md for what this stops and
what it does not.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import cv2
import dlib
import numpy as np

from camera.landmarks import eye_aspect_ratio, eye_darkness, head_yaw
from platform_server.face.api import (
    FaceImageError,
    LivenessChallenge,
    LivenessEvidence,
    LivenessVerdict,
)
from platform_server.face.dlib_verifier import face_recognition_models  # type: ignore[attr-defined]
from platform_server.face.image_decoding import decode_image

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from platform_server.face.image_decoding import RgbImage

log = logging.getLogger(__name__)

MIN_FRAMES: Final = 3  # neutral, action, neutral
MAX_FRAMES: Final = 6
MAX_FRAME_BYTES: Final = 512 * 1024  # a 640×480 crop at JPEG quality 90 is 30-80 KB
MAX_FRAME_PIXELS: Final = 4_000_000
WORK_MAX_SIDE: Final = 800
MIN_GAP_MS: Final = 15  # two frames closer than this cannot come from one camera (30 fps is 33 ms)
MAX_SPAN_MS: Final = {  # first to last challenge frame
    LivenessChallenge.BLINK: 2500,  # open, shut, open: a blink lasts 100-400 ms
    LivenessChallenge.TURN_LEFT: 5000,
    LivenessChallenge.TURN_RIGHT: 5000,
}
MIN_SPAN_MS: Final = 60
MAX_START_MS: Final = 30_000  # the first frame comes within the kiosk's challenge deadline

# Below these open levels a cue cannot tell open from closed (sunglasses, deep shadow).
MIN_OPEN_EAR: Final = 0.12
MIN_OPEN_DARKNESS: Final = 0.05


@dataclass(frozen=True, slots=True)
class LivenessSettings:
    """Decision limits of the check, chosen on the bench's bona fide and attack clips (docs/face.md)."""

    closed_ratio: float = 0.6  # the shut frame's openness, as a share of the open frames', below this
    open_agreement: float = 0.65  # each neutral frame's openness at least this share of their mean
    neutral_yaw: float = 0.4  # the two neutral frames' yaws differ by at most this (yaw: -1..1, 0 frontal)
    min_turn_yaw: float = 0.12  # the turned frame's yaw, toward the asked side, beyond the neutral frames'

    blink_head_still: float = 0.35  # during a blink the head's yaw stays within this of the open frames'
    turn_eyes_open: float = 0.35  # during a turn the eyes stay open: openness of the turned frame at least this
    same_face_distance: float = 0.5  # descriptor distance: first to last (neutral) frame, and to the capture
    action_face_distance: float = 0.7  # first frame to the action's frame (shut eyes, a turned head)


@dataclass(frozen=True, slots=True)
class _Measured:
    """One challenge frame, measured."""

    rgb: RgbImage
    shape: dlib.full_object_detection
    ear: float
    darkness: float
    yaw: float
    at_ms: int


class _Refused(Exception):  # noqa: N818 (an outcome, not an error)
    def __init__(self, reason: str, **measures: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.measures = measures


class DlibLivenessChecker:
    """LivenessChecker on dlib's HOG detector, 68-point landmarks and ResNet descriptor.

    Thread-safe (dlib calls under a lock). Costs, per check: a few ms per frame for detection and
    landmarks, and three descriptors (~70 ms of a core each) for the same-face checks.
    """

    def __init__(self, settings: LivenessSettings | None = None) -> None:
        self._settings = settings or LivenessSettings()
        self._lock = threading.Lock()
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    @property
    def settings(self) -> LivenessSettings:
        """The decision limits in use."""
        return self._settings

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        """Decide whether the frames show the asked action by one live face, the face of the captures."""
        try:
            measures = self._check(evidence, captures)
        except _Refused as refused:
            log.info("liveness refused: %s", refused.reason)
            return LivenessVerdict(passed=False, reason=refused.reason, measures=refused.measures)
        return LivenessVerdict(passed=True, reason="passed", measures=measures)

    def measure_frame(self, image: bytes) -> tuple[float, float, float]:
        """(eye aspect ratio, eye darkness, yaw) of one frame's one face: for the bench and tests."""
        frame = self._measure(image, 0)
        return frame.ear, frame.darkness, frame.yaw

    def _check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> dict[str, float]:
        challenge = evidence.challenge
        frames = evidence.frames
        if challenge is None or not frames:
            raise _Refused("no_evidence")
        if not MIN_FRAMES <= len(frames) <= MAX_FRAMES:
            raise _Refused("frame_count", frames=float(len(frames)))
        _check_times([f.captured_at_ms for f in frames], MAX_SPAN_MS[challenge])
        measured = [self._measure(f.image, f.captured_at_ms) for f in frames]
        if challenge is LivenessChallenge.BLINK:
            peak, measures = self._blink(measured)
        else:
            peak, measures = self._turn(measured, challenge)
        self._same_face(measured[0], peak, measured[-1], captures, measures)
        return measures

    def _measure(self, image: bytes, at_ms: int) -> _Measured:
        try:
            rgb = decode_image(
                image, max_bytes=MAX_FRAME_BYTES, max_pixels=MAX_FRAME_PIXELS, work_max_side=WORK_MAX_SIDE
            )
        except FaceImageError as err:
            raise _Refused("frame_unusable") from err
        grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        with self._lock:
            boxes = list(self._detector(grey, 0))
            if not boxes:
                boxes = list(self._detector(grey, 1))
            if len(boxes) != 1:
                raise _Refused("no_single_face", faces=float(len(boxes)))
            shape = self._landmarks(grey, boxes[0])
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return _Measured(rgb, shape, eye_aspect_ratio(points), eye_darkness(grey, points), head_yaw(points), at_ms)

    def _blink(self, frames: list[_Measured]) -> tuple[_Measured, dict[str, float]]:
        s = self._settings
        ends, middle = (frames[0], frames[-1]), frames[1:-1]
        openness = _openness(ends)
        ends_open = min(openness(f) for f in ends)
        # Shut is judged on the dark iris band when it can be measured: it vanishes under a lid, while
        # a turned head (a recorded turn sent as a blink) narrows the landmarks' eye but keeps the iris.
        open_dark = (ends[0].darkness + ends[1].darkness) / 2
        shut = (lambda f: f.darkness / open_dark) if open_dark >= MIN_OPEN_DARKNESS else openness
        peak = min(middle, key=shut)
        closed = shut(peak)
        measures = {"ends_open": round(ends_open, 3), "closed": round(closed, 3)}
        if ends_open < s.open_agreement:
            raise _Refused("eyes_not_open", **measures)
        if closed >= s.closed_ratio:
            raise _Refused("no_blink", **measures)
        # A turned head also narrows the eyes in the picture: a recorded turn is not a blink.
        rest = (ends[0].yaw + ends[1].yaw) / 2
        measures["head_moved"] = round(max(abs(f.yaw - rest) for f in middle), 3)
        if measures["head_moved"] > s.blink_head_still:
            raise _Refused("no_blink", **measures)
        return peak, measures

    def _turn(self, frames: list[_Measured], challenge: LivenessChallenge) -> tuple[_Measured, dict[str, float]]:
        s = self._settings
        # In the camera's (unmirrored) picture, a head turned to the person's own left points the nose
        # toward the picture's right: yaw above 0.
        side = 1.0 if challenge is LivenessChallenge.TURN_LEFT else -1.0
        ends, middle = (frames[0], frames[-1]), frames[1:-1]
        # Relative to the neutral pose (a person may stand a little askew, and a photo may be): from the
        # neutral frame turned the least toward the asked side, as landmarks jitter on some faces.
        neutral = abs(ends[0].yaw - ends[1].yaw)
        rest = min(ends, key=lambda f: side * f.yaw).yaw
        peak = max(middle, key=lambda f: side * f.yaw)
        toward = side * (peak.yaw - rest)
        away = max(-side * (f.yaw - max(ends, key=lambda f: side * f.yaw).yaw) for f in middle)
        measures = {"neutral_yaw": round(neutral, 3), "turn": round(toward, 3)}
        if neutral > s.neutral_yaw:
            raise _Refused("not_facing", **measures)
        if toward < s.min_turn_yaw:
            raise _Refused("wrong_turn" if away >= s.min_turn_yaw else "no_turn", **measures)
        # Eyes open while turning: a recorded blink is not a turn.
        measures["eyes_open"] = round(_openness(ends)(peak), 3)
        if measures["eyes_open"] < s.turn_eyes_open:
            raise _Refused("no_turn", **measures)
        return peak, measures

    def _same_face(
        self,
        first: _Measured,
        peak: _Measured,
        last: _Measured,
        captures: Sequence[bytes],
        measures: dict[str, float],
    ) -> None:
        """One face throughout the challenge, and the face of the first capture.

        The action's frame is held to a looser limit: shut eyes and a turned head move the descriptor
        (0.15-0.55 on the bench's bona fide clips), two people's faces are mostly beyond 0.6.
        """
        limit = self._settings.same_face_distance
        base = self._describe(first)
        action = float(np.linalg.norm(self._describe(peak) - base))
        within = float(np.linalg.norm(self._describe(last) - base))
        measures["action"] = round(action, 4)
        measures["within"] = round(within, 4)
        if within > limit or action > self._settings.action_face_distance:
            raise _Refused("face_changed", **measures)
        if not captures:
            raise _Refused("no_capture", **measures)
        try:
            capture = self._measure(captures[0], 0)
        except _Refused as err:
            raise _Refused("capture_unusable", **measures) from err
        to_capture = float(np.linalg.norm(self._describe(capture) - base))
        measures["to_capture"] = round(to_capture, 4)
        if to_capture > limit:
            raise _Refused("not_capture_face", **measures)

    def _describe(self, frame: _Measured) -> npt.NDArray[np.float64]:
        with self._lock:
            descriptor = self._encoder.compute_face_descriptor(frame.rgb, frame.shape, 1)
        return np.asarray(descriptor, dtype=np.float64)


def _openness(ends: tuple[_Measured, _Measured]) -> Callable[[_Measured], float]:
    """Eye openness of a frame as a share of the two neutral frames' (the lower of the two cues)."""
    open_ear = (ends[0].ear + ends[1].ear) / 2
    open_dark = (ends[0].darkness + ends[1].darkness) / 2
    use_ear, use_dark = open_ear >= MIN_OPEN_EAR, open_dark >= MIN_OPEN_DARKNESS
    if not (use_ear or use_dark):
        raise _Refused("eyes_not_measurable", open_ear=open_ear, open_dark=open_dark)

    def openness(f: _Measured) -> float:
        ratios = ([f.ear / open_ear] if use_ear else []) + ([f.darkness / open_dark] if use_dark else [])
        return min(ratios)

    return openness


def _check_times(times: list[int], max_span_ms: int) -> None:
    """Frames in capture order, from one camera, within the challenge's deadline and a human action's span."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    span = float(times[-1] - times[0])
    if times[0] < 0 or times[-1] > MAX_START_MS or min(gaps) < MIN_GAP_MS:
        raise _Refused("timing", span_ms=span, min_gap_ms=float(min(gaps)))
    if not MIN_SPAN_MS <= span <= max_span_ms:
        raise _Refused("timing", span_ms=span)
