"""The platform's own liveness check: the kiosk's challenge frames must show the asked action by one face.

The kiosk runs a random challenge (blink, turn left, turn right) and sends, besides its best captures,
the frames of the challenge with their capture times: neutral, the action, neutral again. This module
measures each frame itself (68 dlib landmarks: eye aspect ratio and the dark iris band for the eyes,
the nose's place between the jaw ends for the head's yaw; the geometry is camera.landmarks, the
kiosk's own), checks the times are those of a person,
and that one face, the face of the compared capture, is there throughout. `liveness_passed` from the
kiosk is not trusted: a client that speaks the protocol can set it. See docs/face.md for what this
stops and what it does not.

The compared capture is the one the comparison encodes first (the first capture with one usable
face, dlib_verifier.verify_and_describe), described as the comparison describes it, so with face
workers its descriptor is computed once for both (face/pool.py). The check is two parts and one
decision: `motion_part` (every frame measured, the action judged, the first and peak frames
described), `ends_part` (the last frame described, the compared capture's descriptor taken) and the
pure `decide`; `DlibLivenessChecker.check` runs them in turn, the face workers side by side.
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
import numpy.typing as npt

from camera.landmarks import eye_aspect_ratio, eye_darkness, head_yaw
from platform_server.face.api import (
    FaceImageError,
    LivenessChallenge,
    LivenessEvidence,
    LivenessVerdict,
)
from platform_server.face.dlib_verifier import DlibFaceVerifier, face_recognition_models  # type: ignore[attr-defined]
from platform_server.face.image_decoding import decode_image
from platform_server.face.liveness_decision import EndsPart, LivenessSettings, MotionPart, decide

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from platform_server.face.api import ChallengeFrame
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
    landmarks, and four descriptors (~55 ms of a core each): the first, peak and last frames', and
    the compared capture's, described as the verifier describes it (`verifier`, which the comparison
    shares: with face workers the comparison's own descriptor is used, see face/pool.py).

    The check is made of two parts that can run in two processes, `motion_part` (all frames) and
    `ends_part` (the last frame and the captures), and one pure `decide`: `check` runs them in turn.
    """

    def __init__(self, settings: LivenessSettings | None = None, *, verifier: DlibFaceVerifier | None = None) -> None:
        """Build the models; `verifier` describes the captures (the comparison's own, where it is at hand)."""
        self._settings = settings or LivenessSettings()
        self._verifier = verifier or DlibFaceVerifier()
        self._lock = threading.Lock()
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    @property
    def settings(self) -> LivenessSettings:
        """The decision limits in use."""
        return self._settings

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        """Decide whether the frames show the asked action by one live face, the face of the compared capture.

        The compared capture is the one the verifier encodes first for these captures (the first with
        one usable face); when the verifier refuses the captures, the first capture, described alone.
        """
        motion, last = self._motion_part(evidence)
        ends = None
        if motion.refusal is None:
            # The last frame as measured for the motion: it is not measured twice in one process.
            ends = self._ends(last, None, captures, self._describe_compared(captures))
        verdict = decide(motion, ends)
        if not verdict.passed:
            log.info("liveness refused: %s", verdict.reason)
        return verdict

    def motion_part(self, evidence: LivenessEvidence) -> MotionPart:
        """Measure every challenge frame, judge the asked action, describe the first and the peak frame."""
        return self._motion_part(evidence)[0]

    def ends_part(
        self, last: ChallengeFrame | None, captures: Sequence[bytes], compared: npt.NDArray[np.float64] | None
    ) -> EndsPart:
        """Measure and describe the last challenge frame, and take the compared capture's descriptor.

        `compared` is the descriptor of the capture the comparison encoded (`verify_and_describe`);
        None when the comparison refused the captures: then the first capture is described alone, as
        before the comparison's descriptor was shared, so a capture problem the comparison reports
        (a second face in a later capture, say) still reaches the expert as that problem.
        """
        if last is None:
            return self._ends(None, ("no_evidence", {}), captures, compared)
        try:
            measured = self._measure(last.image, last.captured_at_ms)
        except _Refused as refused:
            return self._ends(None, (refused.reason, refused.measures), captures, compared)
        return self._ends(measured, None, captures, compared)

    def _motion_part(self, evidence: LivenessEvidence) -> tuple[MotionPart, _Measured | None]:
        """The motion part, and the last frame as measured for it (None when refused)."""
        try:
            measured, peak, measures = self._motion(evidence)
            first, peak_face = self._describe(measured[0]), self._describe(peak)
        except _Refused as refused:
            return MotionPart(self._settings, (refused.reason, refused.measures), {}), None
        return MotionPart(self._settings, None, measures, first, peak_face), measured[-1]

    def _ends(
        self,
        last: _Measured | None,
        last_refusal: tuple[str, dict[str, float]] | None,
        captures: Sequence[bytes],
        compared: npt.NDArray[np.float64] | None,
    ) -> EndsPart:
        last_face = self._describe(last) if last is not None else None
        if not captures:
            return EndsPart(last_face, last_refusal, None, "no_capture")
        if compared is None:
            try:
                compared = self._verifier.encode(captures[0])
            except FaceImageError:
                return EndsPart(last_face, last_refusal, None, "capture_unusable")
        return EndsPart(last_face, last_refusal, compared, None)

    def measure_frame(self, image: bytes) -> tuple[float, float, float]:
        """(eye aspect ratio, eye darkness, yaw) of one frame's one face: for the bench and tests."""
        frame = self._measure(image, 0)
        return frame.ear, frame.darkness, frame.yaw

    def _describe_compared(self, captures: Sequence[bytes]) -> npt.NDArray[np.float64] | None:
        """The descriptor the comparison would share for these captures; None where it refuses them."""
        if not captures:
            return None
        try:
            return self._verifier.describe_compared(captures)
        except FaceImageError:
            return None

    def _motion(self, evidence: LivenessEvidence) -> tuple[list[_Measured], _Measured, dict[str, float]]:
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
        return measured, peak, measures

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
