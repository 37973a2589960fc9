"""Blink detection from eye-openness samples: a pure state machine, fed one sample per analysed frame.

Openness is measured against the expert's own open-eye level (a high percentile of the recent
samples), so it works for narrow and wide eyes alike. A blink is: eyes open, then closed (below
`closed_ratio` of the open level), then open again (above `reopened_ratio`) within `max_closed_s`.
A still photo gives the same openness in every frame, give or take noise of about ±10%, so it never
blinks.
"""

from __future__ import annotations

import collections
from enum import Enum
from typing import Final

import numpy as np

BASELINE_WINDOW_S: Final = 3.0
BASELINE_PERCENTILE: Final = 80  # eyes are open most of the time, so this is the open level
MIN_BASELINE_SAMPLES: Final = 3
# Below these open levels a channel cannot tell open from closed (sunglasses, a face in deep shadow).
MIN_OPEN_EAR: Final = 0.12
MIN_OPEN_DARKNESS: Final = 0.05


class EyePhase(Enum):
    """Where the eyes are in a blink."""

    UNKNOWN = "unknown"  # no open-eye level yet, or a long closure ended
    OPEN = "open"
    CLOSED = "closed"


class BlinkDetector:
    """Recognises a blink in a stream of (time, eye aspect ratio, eye darkness) samples."""

    def __init__(self, closed_ratio: float = 0.6, reopened_ratio: float = 0.85, max_closed_s: float = 1.0) -> None:
        if not 0.0 < closed_ratio < reopened_ratio <= 1.0:
            raise ValueError(f"need 0 < closed_ratio < reopened_ratio <= 1, got {closed_ratio} and {reopened_ratio}")
        if max_closed_s <= 0:
            raise ValueError(f"max_closed_s must be above 0, got {max_closed_s}")
        self._closed_ratio = closed_ratio
        self._reopened_ratio = reopened_ratio
        self._max_closed_s = max_closed_s
        self._samples: collections.deque[tuple[float, float, float]] = collections.deque()
        self._phase = EyePhase.UNKNOWN
        self._closed_at = 0.0
        self._blinks = 0
        self._last_openness: float | None = None

    @property
    def blinks(self) -> int:
        """Complete blinks seen since the last reset."""
        return self._blinks

    @property
    def phase(self) -> EyePhase:
        """Whether the eyes are open, closed or not yet known."""
        return self._phase

    @property
    def eyes_open(self) -> bool:
        """True when the last sample was at the open level (frames with closed eyes are not sent)."""
        return self._last_openness is not None and self._last_openness >= self._reopened_ratio

    @property
    def last_openness(self) -> float | None:
        """Openness of the last sample as a share of the open level; None while unknown."""
        return self._last_openness

    def reset(self) -> None:
        """Forget everything: a new face, or the face was lost."""
        self._samples.clear()
        self._phase = EyePhase.UNKNOWN
        self._blinks = 0
        self._last_openness = None

    def openness(self, ear: float, darkness: float) -> float | None:
        """Openness of a sample as a share of the open level (the lower of the two cues); None if unknown."""
        if len(self._samples) < MIN_BASELINE_SAMPLES:
            return None
        ears = np.array([s[1] for s in self._samples])
        darks = np.array([s[2] for s in self._samples])
        open_ear = float(np.percentile(ears, BASELINE_PERCENTILE))
        open_dark = float(np.percentile(darks, BASELINE_PERCENTILE))
        ratios = []
        if open_ear >= MIN_OPEN_EAR:
            ratios.append(ear / open_ear)
        if open_dark >= MIN_OPEN_DARKNESS:
            ratios.append(darkness / open_dark)
        return min(ratios) if ratios else None

    def observe(self, timestamp: float, ear: float, darkness: float) -> bool:
        """Take one sample; True when it completes a blink."""
        self._samples.append((timestamp, ear, darkness))
        while self._samples and timestamp - self._samples[0][0] > BASELINE_WINDOW_S:
            self._samples.popleft()
        openness = self.openness(ear, darkness)
        self._last_openness = openness
        if openness is None:
            return False
        if self._phase is EyePhase.CLOSED and timestamp - self._closed_at > self._max_closed_s:
            # Shut for too long: eyes closed on purpose or covered, not a blink. Start again from open.
            self._phase = EyePhase.UNKNOWN
        if openness >= self._reopened_ratio:
            completed = self._phase is EyePhase.CLOSED
            self._phase = EyePhase.OPEN
            if completed:
                self._blinks += 1
            return completed
        if openness < self._closed_ratio and self._phase is EyePhase.OPEN:
            self._phase = EyePhase.CLOSED
            self._closed_at = timestamp
        return False


NEUTRAL_WINDOW_S: Final = 1.0


class TurnDetector:
    """Recognises a head turn and back in a stream of (time, yaw) samples: a pure state machine.

    The neutral pose is the median yaw of the last second while the head is not turned, so a person
    standing a little askew still turns from their own pose. A turn is: yaw `turn_yaw` or more away from
    the neutral pose, then back within half of that, all within `max_turn_s`.
    """

    def __init__(self, turn_yaw: float = 0.15, max_turn_s: float = 3.0) -> None:
        if not 0.0 < turn_yaw < 1.0:
            raise ValueError(f"turn_yaw must be between 0 and 1, got {turn_yaw}")
        self._turn_yaw = turn_yaw
        self._max_turn_s = max_turn_s
        self._neutral: collections.deque[tuple[float, float]] = collections.deque()
        self._turned_side = 0.0
        self._turned_at = 0.0
        self._last_yaw: float | None = None

    @property
    def facing(self) -> bool:
        """True when the last sample was not turned from the neutral pose (eyes are measured, frames sent)."""
        rest = self.neutral_yaw
        return self._turned_side == 0.0 and (
            rest is None or self._last_yaw is None or abs(self._last_yaw - rest) < self._turn_yaw
        )

    @property
    def neutral_yaw(self) -> float | None:
        """The neutral pose's yaw, or None before there are samples."""
        if len(self._neutral) < MIN_BASELINE_SAMPLES:
            return None
        return float(np.median([y for _t, y in self._neutral]))

    @property
    def turned_at(self) -> float:
        """When the current or last turn began."""
        return self._turned_at

    def reset(self) -> None:
        """Forget everything: a new face, or the face was lost."""
        self._neutral.clear()
        self._turned_side = 0.0
        self._last_yaw = None

    def observe(self, timestamp: float, yaw: float) -> float:
        """Take one sample; the side of a turn it completes (+1 nose to the picture's right, -1 left) or 0."""
        self._last_yaw = yaw
        rest = self.neutral_yaw
        if self._turned_side != 0.0:
            if timestamp - self._turned_at > self._max_turn_s:
                self._turned_side = 0.0  # held too long: not a turn and back; wait for the next one
                self._neutral.clear()
            elif rest is not None and abs(yaw - rest) <= self._turn_yaw / 2:
                side, self._turned_side = self._turned_side, 0.0
                return side
            return 0.0
        if rest is not None and abs(yaw - rest) >= self._turn_yaw:
            self._turned_side = 1.0 if yaw > rest else -1.0
            self._turned_at = timestamp
            return 0.0
        self._neutral.append((timestamp, yaw))
        while self._neutral and timestamp - self._neutral[0][0] > NEUTRAL_WINDOW_S:
            self._neutral.popleft()
        return 0.0
