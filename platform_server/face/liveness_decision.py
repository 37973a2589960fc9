"""The liveness check's decision from its two parts, without dlib: the serving process combines them here.

`DlibLivenessChecker` (face/liveness_check.py) computes the parts: `MotionPart` from the challenge
frames, `EndsPart` from the last frame and the compared capture. With face workers the two parts come
from two processes and the serving process, which loads no dlib model, decides (face/pool.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from platform_server.face.api import LivenessVerdict


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
class MotionPart:
    """The challenge frames' part of a check: timing, the asked action, the first and the peak frame's faces.

    `refusal` (reason, measures) when the frames already fail; otherwise the action's measures and the
    descriptors of the first frame and of the action's peak frame, with the limits `decide` applies.
    """

    settings: LivenessSettings
    refusal: tuple[str, dict[str, float]] | None
    measures: dict[str, float]
    first: npt.NDArray[np.float64] | None = None
    peak: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class EndsPart:
    """The other end of the challenge and the captures: the last frame's face, the compared capture's.

    `last` is None when the last frame could not be measured (`last_refusal` says why); `capture` is
    None when there is no capture ("no_capture") or none could be described ("capture_unusable").
    """

    last: npt.NDArray[np.float64] | None
    last_refusal: tuple[str, dict[str, float]] | None
    capture: npt.NDArray[np.float64] | None
    capture_refusal: str | None


def decide(motion: MotionPart, ends: EndsPart | None) -> LivenessVerdict:
    """The verdict from the two parts: the motion's refusal first, then one face throughout and in the capture.

    The action's frame is held to a looser limit: shut eyes and a turned head move the descriptor
    (0.15-0.55 on the bench's bona fide clips), two people's faces are mostly beyond 0.6. `ends` may be
    None only when the motion part refused (the single-process check stops there).
    """
    if motion.refusal is not None:
        return LivenessVerdict(passed=False, reason=motion.refusal[0], measures=dict(motion.refusal[1]))
    if ends is None or motion.first is None or motion.peak is None:
        raise ValueError("a liveness decision on passed challenge frames needs their descriptors and the ends part")
    if ends.last is None:
        reason, refused = ends.last_refusal or ("frame_unusable", {})
        return LivenessVerdict(passed=False, reason=reason, measures=dict(refused))
    s = motion.settings
    measures = dict(motion.measures)
    limit = s.same_face_distance
    action = float(np.linalg.norm(motion.peak - motion.first))
    within = float(np.linalg.norm(ends.last - motion.first))
    measures["action"] = round(action, 4)
    measures["within"] = round(within, 4)
    if within > limit or action > s.action_face_distance:
        return LivenessVerdict(passed=False, reason="face_changed", measures=measures)
    if ends.capture is None:
        return LivenessVerdict(passed=False, reason=ends.capture_refusal or "capture_unusable", measures=measures)
    to_capture = float(np.linalg.norm(ends.capture - motion.first))
    measures["to_capture"] = round(to_capture, 4)
    if to_capture > limit:
        return LivenessVerdict(passed=False, reason="not_capture_face", measures=measures)
    return LivenessVerdict(passed=True, reason="passed", measures=measures)
