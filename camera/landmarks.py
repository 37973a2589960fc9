"""Face geometry on dlib's 68 landmarks (iBUG 300-W layout): eye openness and head yaw. Pure: numpy only.

One implementation for the kiosk's capture (checkin.face), the camera simulator's synthetic blinks
and turns, and the platform's own liveness check, so the two ends measure a face the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

#: The two eyes, six points each, clockwise from the outer corner.
RIGHT_EYE: Final = slice(36, 42)
LEFT_EYE: Final = slice(42, 48)
NOSE_TIP: Final = 30
JAW_RIGHT_END: Final = 0  # the face's right side: the picture's left
JAW_LEFT_END: Final = 16
LANDMARK_COUNT: Final = 68


def eye_aspect_ratio(points: npt.NDArray[np.float64]) -> float:
    """Mean eye aspect ratio of both eyes (Soukupová & Čech 2016): lid gaps over eye width, 0 for a flat eye."""

    def one(eye: npt.NDArray[np.float64]) -> float:
        width = float(np.linalg.norm(eye[0] - eye[3]))
        if width == 0.0:
            return 0.0
        return float(np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / (2.0 * width)

    return (one(points[RIGHT_EYE]) + one(points[LEFT_EYE])) / 2.0


def eye_darkness(grey: npt.NDArray[np.uint8], points: npt.NDArray[np.float64]) -> float:
    """Height of the dark iris/pupil band over the eye width, mean of both eyes: near 0 when closed.

    A second openness cue beside the aspect ratio: dlib's landmark model was trained on few closed
    eyes and sometimes keeps an open-eye shape on a shut eye, whereas the dark band of an open eye
    disappears under the lid. "Dark" is relative to the skin just below the eye, so skin tone and
    lighting do not matter.
    """
    height, width = grey.shape[:2]
    values: list[float] = []
    for eye in (points[RIGHT_EYE], points[LEFT_EYE]):
        x0, x1 = float(eye[:, 0].min()), float(eye[:, 0].max())
        eye_width = max(x1 - x0, 1.0)
        cy = float(eye[:, 1].mean())
        # The central 60% of the eye (the iris), a band 0.5 eye widths tall (lids, not brows).
        xa, xb = int(max(0, x0 + 0.2 * eye_width)), int(min(width, x1 - 0.2 * eye_width))
        ya, yb = int(max(0, cy - 0.25 * eye_width)), int(min(height, cy + 0.25 * eye_width))
        sa, sb = int(max(0, cy + 0.45 * eye_width)), int(min(height, cy + 0.75 * eye_width))
        window = grey[ya:yb, xa:xb]
        cheek = grey[sa:sb, int(max(0, x0)) : int(min(width, x1))]
        if window.size == 0 or cheek.size == 0:
            values.append(0.0)
            continue
        dark = window < 0.55 * float(np.median(cheek))
        values.append(float(np.percentile(dark.sum(axis=0), 75)) / eye_width)
    return float(np.mean(values))


def head_yaw(points: npt.NDArray[np.float64]) -> float:
    """Head yaw, -1..1: the nose tip's place between the jaw's ends, 0 when frontal, 0 for a degenerate jaw.

    Above 0 the nose points toward the picture's right (the person's left, the camera not mirrored).
    Not an angle: about 0.3 at 25 degrees.
    """
    left, right = float(points[JAW_RIGHT_END][0]), float(points[JAW_LEFT_END][0])
    if right <= left:
        return 0.0
    return 2.0 * (float(points[NOSE_TIP][0]) - left) / (right - left) - 1.0
