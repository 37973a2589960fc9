"""A face capture for one check-in: quality gates, the blink challenge, and the best frames to send.

`FaceCheck` is the logic: it takes analysed frames one by one (no threads, no clock of its own: it
uses the frames' timestamps), so tests drive it frame by frame. `FaceCaptureSession` runs it on a
worker thread over the newest camera frames, so the preview never waits for the analysis.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cv2

from checkin.face.liveness import BlinkDetector, TurnDetector
from checkin.face.models import (
    CaptureResult,
    CaptureSettings,
    CaptureStatus,
    ChallengeFrame,
    FrameAnalysis,
    GuidanceHint,
    LivenessChallenge,
    LivenessState,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from camera.models import BgrImage, FaceBox, Frame

logger = logging.getLogger(__name__)

# Margins of the crop sent to the platform, in face widths/heights: head and shoulders, no bystanders.
CROP_SIDE = 0.6
CROP_TOP = 0.7
CROP_BOTTOM = 0.5
# Frames of the challenge kept to pick the evidence from (neutral, action, neutral): the last few seconds.
RECENT_S = 3.0
CHALLENGE_HINTS = {
    LivenessChallenge.BLINK: GuidanceHint.BLINK_PLEASE,
    LivenessChallenge.TURN_LEFT: GuidanceHint.TURN_LEFT_PLEASE,
    LivenessChallenge.TURN_RIGHT: GuidanceHint.TURN_RIGHT_PLEASE,
}
# A blink is taken with the head still: yaw within this of the open frame before (the platform allows 0.2).
BLINK_HEAD_STILL = 0.15
# The blink sent has a frame at most this open against its two open frames (the platform wants < 0.6).
BLINK_SHUT = 0.55
BLINK_SPAN_S = 1.2  # open frame before to open frame after, at most (a blink lasts 100-400 ms)
ACTION_FRAMES = 4  # at most this many frames of the action are sent (with the two neutral ones: 6)
# A turn to the person's own left points the nose to the (unmirrored) picture's right: yaw above 0.
TURN_SIDES = {LivenessChallenge.TURN_LEFT: 1.0, LivenessChallenge.TURN_RIGHT: -1.0}


class FrameAnalyser(Protocol):
    """What FaceCheck needs from the analysis: FaceAnalyser, or a scripted fake in unit tests."""

    def analyse(self, image: BgrImage) -> FrameAnalysis:
        """Find the faces in a BGR frame and measure the one face."""
        ...


class FrameFeed(Protocol):
    """Where a session gets frames: CaptureWorker, or anything that hands out the newest frame."""

    @property
    def finished(self) -> bool:
        """True once no more frames will come."""
        ...

    def wait_for_frame(self, after_index: int, timeout: float) -> Frame | None:
        """The newest frame with an index above after_index, or None after timeout."""
        ...


@dataclass(order=True)
class _Candidate:
    """A frame good enough to send, ranked by sharpness (heap order: worst first)."""

    sharpness: float
    sequence: int
    image: BgrImage = field(compare=False, repr=False)
    box: FaceBox = field(compare=False)


@dataclass(frozen=True, slots=True)
class _Seen:
    """A frame seen during the challenge, kept a few seconds in case it becomes evidence."""

    timestamp: float
    image: BgrImage = field(repr=False)
    box: FaceBox
    openness: float | None
    yaw: float
    eyes: tuple[float, float] = (0.0, 0.0)  # (eye aspect ratio, eye darkness) as measured


def _clearly_shut(before: _Seen, shut: list[_Seen], after: _Seen) -> bool:
    """The blink as the platform will judge it: a frame well under the two open frames' mean openness.

    The platform measures the open level on the frames sent, not on the last seconds as the kiosk's
    detector does; judging the same way here (with a margin) keeps a shallow dip from being sent.
    """
    open_ear = (before.eyes[0] + after.eyes[0]) / 2
    open_dark = (before.eyes[1] + after.eyes[1]) / 2
    cues = [i for i, level in enumerate((open_ear, open_dark)) if level > 0.05]
    if not cues:
        return False
    levels = (open_ear, open_dark)
    return min(min(f.eyes[i] / levels[i] for i in cues) for f in shut) <= BLINK_SHUT


class FaceCheck:
    """Quality gates, the liveness challenge and frame selection over a sequence of analysed frames.

    The challenge (blink, turn left, turn right) is drawn at random for each capture from `challenges`,
    so a recording of one capture does not answer the next; its frames go to the platform, which
    checks them itself.
    """

    def __init__(
        self,
        analyser: FrameAnalyser,
        settings: CaptureSettings | None = None,
        *,
        challenges: Sequence[LivenessChallenge] = tuple(LivenessChallenge),
        rng: random.Random | None = None,
    ) -> None:
        if not challenges:
            raise ValueError("at least one liveness challenge is needed")
        self._analyser = analyser
        self._settings = settings or CaptureSettings()
        self._challenges = tuple(challenges)
        self._rng = rng or random.SystemRandom()
        self._challenge = self._rng.choice(self._challenges)
        self._blink = BlinkDetector(
            self._settings.closed_ratio, self._settings.reopened_ratio, self._settings.max_closed_s
        )
        self._turn = TurnDetector(self._settings.turn_yaw, self._settings.max_turn_s)
        self._recent: collections.deque[_Seen] = collections.deque()
        self._evidence: tuple[_Seen, ...] | None = None
        self._sequence = itertools.count()
        self._candidates: list[_Candidate] = []
        self._state = LivenessState.WAITING
        self._challenge_started = 0.0
        self._passed_at = 0.0
        self._last_seen: float | None = None
        self._last_centre: tuple[float, float, float] | None = None  # (t, x, y)
        self._shown_hint: GuidanceHint | None = None
        self._pending_hint: tuple[GuidanceHint, float] | None = None
        self._result: CaptureResult | None = None

    @property
    def challenge(self) -> LivenessChallenge:
        """The challenge this capture asks for."""
        return self._challenge

    @property
    def result(self) -> CaptureResult | None:
        """The outcome once the capture is done (liveness passed with frames, or refused)."""
        return self._result

    def clear(self) -> None:
        """Drop every frame and measurement (end of the check-in, or a retry)."""
        self._candidates.clear()
        self._result = None
        self._restart()
        self._challenge = self._rng.choice(self._challenges)
        self._state = LivenessState.WAITING
        self._shown_hint = None
        self._pending_hint = None

    def process(self, frame: Frame) -> CaptureStatus:  # noqa: C901 (gates, liveness and frames, in order)
        """Analyse one frame and return what the face screen should show."""
        if self._result is not None:
            return CaptureStatus(self._shown_hint or GuidanceHint.NO_FACE, self._result.liveness, None, done=True)
        analysis = self._analyser.analyse(frame.image)
        now = frame.timestamp
        gate = self._gate(analysis, now)
        face = analysis.face
        trackable = face is not None and gate not in (GuidanceHint.TOO_FAR, GuidanceHint.NO_FACE)
        blinked, turned, eyes_measured = False, 0.0, False
        if trackable and face is not None:
            self._last_seen = now
            turned = self._turn.observe(now, face.yaw)
            eyes_measured = self._turn.facing
            if eyes_measured:
                # Eyes are measured on a frontal face only: a turned head narrows them in the picture.
                blinked = self._blink.observe(now, face.eye_aspect_ratio, face.eye_darkness)
        elif self._last_seen is not None and now - self._last_seen > self._settings.lost_face_s:
            # The face left (or a second one came): whatever follows may be another face or a photo,
            # so the blink and the frames must all come again from one continuous view.
            self._restart()
        if gate is GuidanceHint.OK and face is not None:
            if self._state is LivenessState.WAITING:
                self._state = LivenessState.CHALLENGE
                self._challenge_started = now
            if self._blink.eyes_open and self._turn.facing:
                self._offer(frame.image, face.box, face.sharpness)
        if self._state is LivenessState.CHALLENGE and trackable and face is not None:
            openness = self._blink.last_openness if eyes_measured else None
            eyes = (face.eye_aspect_ratio, face.eye_darkness)
            self._keep_recent(_Seen(now, frame.image, face.box, openness, face.yaw, eyes))
            if self._evidence is None:
                self._evidence = self._find_evidence(blinked=blinked, turned=turned)
        self._advance_liveness(now)
        hint = self._debounced(self._wanted_hint(gate), now)
        if self._state is LivenessState.PASSED:
            hint = self._shown_hint = GuidanceHint.OK  # the capture is over: no gate hint is pending any more
        done = self._finish_if_done(now)
        return CaptureStatus(hint, self._state, face.box if face else None, done=done)

    def _keep_recent(self, seen: _Seen) -> None:
        self._recent.append(seen)
        while self._recent and seen.timestamp - self._recent[0].timestamp > RECENT_S:
            self._recent.popleft()

    def _find_evidence(self, *, blinked: bool, turned: float) -> tuple[_Seen, ...] | None:  # noqa: PLR0911
        """(neutral, action, neutral) frames once the asked action has just been completed, else None."""
        recent = list(self._recent)
        now = recent[-1]
        if self._challenge is LivenessChallenge.BLINK:
            if not blinked:
                return None
            window = [f for f in recent[:-1] if f.openness is not None and now.timestamp - f.timestamp <= 1.5]
            if not window:
                return None
            shut = min(window, key=lambda f: f.openness or 0.0)
            reopened = self._settings.reopened_ratio
            before = [f for f in recent if f.timestamp < shut.timestamp and (f.openness or 0.0) >= reopened]
            if not before:
                return None
            # The most shut frames between the open ones (up to four, in time order), as for a turn.
            between = [f for f in window if before[-1].timestamp < f.timestamp]
            shut_most = sorted(
                sorted(between, key=lambda f: f.openness or 0.0)[:ACTION_FRAMES], key=lambda f: f.timestamp
            )
            if any(abs(f.yaw - before[-1].yaw) > BLINK_HEAD_STILL for f in (*shut_most, now)):
                return None  # the head turned (narrowing the eyes in the picture): not a blink
            if now.timestamp - before[-1].timestamp > BLINK_SPAN_S:
                return None  # a slow reopening (the head may have moved meanwhile): wait for a crisp blink
            if not _clearly_shut(before[-1], shut_most, now):
                return None  # a shallow dip against these open frames: wait for a clear blink
            return (before[-1], *shut_most, now)
        side = TURN_SIDES[self._challenge]
        if turned != side:
            return None
        started = self._turn.turned_at
        rest = self._turn.neutral_yaw
        calm = self._settings.turn_yaw / 3  # the neutral frames sent: well inside the neutral pose
        before = [f for f in recent if f.timestamp < started and rest is not None and abs(f.yaw - rest) <= calm]
        during = [f for f in recent[:-1] if f.timestamp >= started]
        if not before or not during or rest is None or abs(now.yaw - rest) > calm:
            return None
        # The most turned frames (up to four, in time order): the platform measures on the crops, where
        # landmarks are as noisy as here, so one frame alone could read less turned there.
        turned_most = sorted(sorted(during, key=lambda f: side * f.yaw)[-ACTION_FRAMES:], key=lambda f: f.timestamp)
        return (before[-1], *turned_most, now)

    def _advance_liveness(self, now: float) -> None:
        """Pass once the asked action was seen with a good frame in hand, refuse at the deadline."""
        if self._state is not LivenessState.CHALLENGE:
            return
        if self._evidence is not None and self._candidates:
            self._state = LivenessState.PASSED
            self._passed_at = now
            logger.info("face capture: %s seen; liveness passed", self._challenge.value)
        elif now - self._challenge_started > self._settings.blink_deadline_s:
            self._state = LivenessState.REFUSED
            logger.info(
                "face capture: no %s in %.1f s; liveness refused",
                self._challenge.value,
                self._settings.blink_deadline_s,
            )

    def _gate(self, analysis: FrameAnalysis, now: float) -> GuidanceHint:  # noqa: PLR0911 (one return per gate, in order)
        """The first quality gate the frame fails, or OK."""
        s = self._settings
        if not analysis.face_boxes:
            return GuidanceHint.NO_FACE
        if len(analysis.face_boxes) > 1:
            return GuidanceHint.SEVERAL_FACES
        face = analysis.face
        assert face is not None  # exactly one box is always measured
        width, height = analysis.frame_size
        share = face.box.width / width
        cx, cy = face.box.centre
        previous, self._last_centre = self._last_centre, (now, cx, cy)
        if share < s.min_face_share:
            return GuidanceHint.TOO_FAR
        if share > s.max_face_share:
            return GuidanceHint.TOO_CLOSE
        if abs(cx - width / 2) > s.centre_tolerance * width or abs(cy - height / 2) > s.centre_tolerance * height:
            return GuidanceHint.NOT_CENTRED
        if face.brightness < s.min_brightness:
            return GuidanceHint.TOO_DARK
        if previous is not None and now > previous[0]:
            speed = math.dist((cx, cy), previous[1:]) / face.box.width / (now - previous[0])
            if speed > s.max_motion_per_s:
                return GuidanceHint.HOLD_STILL
        if face.sharpness < s.min_sharpness:
            return GuidanceHint.BLURRY
        return GuidanceHint.OK

    def _wanted_hint(self, gate: GuidanceHint) -> GuidanceHint:
        if gate is not GuidanceHint.OK:
            return gate
        return CHALLENGE_HINTS[self._challenge] if self._state is LivenessState.CHALLENGE else GuidanceHint.OK

    def _debounced(self, wanted: GuidanceHint, now: float) -> GuidanceHint:
        """Show a new hint only once it has held for hint_hold_s, so words and speech do not flicker."""
        if self._shown_hint is None or wanted is self._shown_hint:
            # The first hint shows at once; an unchanged one cancels any pending change.
            self._shown_hint = wanted
            self._pending_hint = None
        elif self._pending_hint is None or self._pending_hint[0] is not wanted:
            self._pending_hint = (wanted, now)
        if self._pending_hint is not None and now - self._pending_hint[1] >= self._settings.hint_hold_s:
            self._shown_hint = wanted
            self._pending_hint = None
        return self._shown_hint

    def _offer(self, image: BgrImage, box: FaceBox, sharpness: float) -> None:
        candidate = _Candidate(sharpness, next(self._sequence), image, box)
        if len(self._candidates) < self._settings.best_frames:
            heapq.heappush(self._candidates, candidate)
        elif candidate > self._candidates[0]:
            heapq.heapreplace(self._candidates, candidate)

    def _finish_if_done(self, now: float) -> bool:
        s = self._settings
        if self._state is LivenessState.REFUSED:
            self._candidates.clear()
            self._result = CaptureResult(LivenessState.REFUSED)
            return True
        if self._state is LivenessState.PASSED and (
            len(self._candidates) >= s.best_frames or now - self._passed_at >= s.settle_after_blink_s
        ):
            best = sorted(self._candidates, reverse=True)
            self._candidates.clear()
            evidence = self._evidence or ()
            self._result = CaptureResult(
                LivenessState.PASSED,
                tuple(encode_crop(c.image, c.box, s.jpeg_quality) for c in best),
                challenge=self._challenge,
                challenge_frames=tuple(
                    ChallengeFrame(
                        encode_crop(f.image, f.box, s.jpeg_quality),
                        max(0, round((f.timestamp - self._challenge_started) * 1000)),
                    )
                    for f in evidence
                ),
            )
            self._recent.clear()
            self._evidence = None
            return True
        return False

    def _restart(self) -> None:
        self._blink.reset()
        self._turn.reset()
        self._recent.clear()
        self._evidence = None
        self._candidates.clear()
        self._last_seen = None
        self._last_centre = None
        if self._state is LivenessState.CHALLENGE:
            self._state = LivenessState.WAITING


def encode_crop(image: BgrImage, box: FaceBox, quality: int) -> bytes:
    """JPEG of the head and shoulders around box: what the platform needs, and no bystanders."""
    height, width = image.shape[:2]
    left = max(0, round(box.left - CROP_SIDE * box.width))
    right = min(width, round(box.right + CROP_SIDE * box.width))
    top = max(0, round(box.top - CROP_TOP * box.height))
    bottom = min(height, round(box.bottom + CROP_BOTTOM * box.height))
    ok, buffer = cv2.imencode(".jpg", image[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the face crop as JPEG")
    return bytes(buffer)


class FaceCaptureSession:
    """Runs a FaceCheck on its own thread over the newest frames of a feed, until done or cleared.

    `on_status` is called from the analysis thread with each new status: a GUI must hand it to its
    own thread (Tk: `after`).
    """

    def __init__(
        self,
        feed: FrameFeed,
        analyser: FrameAnalyser,
        settings: CaptureSettings | None = None,
        on_status: Callable[[CaptureStatus], None] | None = None,
        *,
        challenges: Sequence[LivenessChallenge] = tuple(LivenessChallenge),
        rng: random.Random | None = None,
    ) -> None:
        self._feed = feed
        self._check = FaceCheck(analyser, settings, challenges=challenges, rng=rng)
        self._on_status = on_status
        self._lock = threading.Lock()
        self._status = CaptureStatus(GuidanceHint.NO_FACE, LivenessState.WAITING)
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._analysed: list[float] = []
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> CaptureStatus:
        """The latest status (hint, liveness, face box)."""
        with self._lock:
            return self._status

    def start(self) -> None:
        """Start analysing on the worker thread."""
        if self._thread is not None:
            raise RuntimeError("this face capture session was already started")
        self._thread = threading.Thread(target=self._run, name="face-capture", daemon=True)
        self._thread.start()

    def wait_result(self, timeout: float) -> CaptureResult | None:
        """The result once done, waiting up to timeout; None if not done (or the camera stopped)."""
        self._done.wait(timeout)
        with self._lock:
            return self._check.result

    def analysis_fps(self) -> float:
        """Frames analysed per second over the session so far."""
        with self._lock:
            times = list(self._analysed)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0

    def clear(self, timeout: float = 2.0) -> None:
        """Stop analysing and drop every frame and result: the check-in ended or was cancelled."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            self._check.clear()
            self._analysed.clear()
        self._done.set()

    def _run(self) -> None:
        last_index = -1
        while not self._stopping.is_set():
            frame = self._feed.wait_for_frame(last_index, timeout=0.25)
            if frame is None:
                if self._feed.finished:
                    logger.warning("face capture: the camera stopped before the capture was done")
                    break
                continue
            last_index = frame.index
            with self._lock:
                status = self._check.process(frame)
                self._status = status
                self._analysed.append(time.monotonic())
            if self._on_status is not None:
                self._on_status(status)
            if status.done:
                break
        self._done.set()
