"""Per-frame face measurements on the kiosk: HOG detection on a downscaled copy, 68 landmarks, quality.

Detection runs on a copy `detect_width` pixels wide (about 10 ms at 480 px instead of about 50 ms
at 1280); landmarks and the image measures use the full-resolution frame, where eyes are large
enough to measure.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

import cv2
import dlib
import face_recognition_models
import numpy as np

from checkin.camera.models import FaceBox, FaceMeasurement, FrameAnalysis

if TYPE_CHECKING:
    import numpy.typing as npt

    from checkin.camera.models import BgrImage

# dlib's 68-point layout (iBUG 300-W): the two eyes, six points each, clockwise from the outer corner.
RIGHT_EYE: Final = slice(36, 42)
LEFT_EYE: Final = slice(42, 48)
SHARPNESS_SIZE: Final = 128  # the face is scaled to this before measuring blur, so distance does not matter


class FaceAnalyser:
    """Finds faces in a frame and measures the one face: box, eye openness, sharpness, brightness.

    Thread-safe: dlib's detector and shape predictor are called under a lock.
    """

    def __init__(self, detect_width: int = 480) -> None:
        if not 160 <= detect_width <= 1920:
            raise ValueError(f"detect_width must be between 160 and 1920 pixels, got {detect_width}")
        self._detect_width = detect_width
        self._lock = threading.Lock()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def find_faces(self, grey: npt.NDArray[np.uint8]) -> tuple[FaceBox, ...]:
        """Boxes of all faces, in full-frame coordinates, found on a copy detect_width pixels wide."""
        height, width = grey.shape[:2]
        scale = min(1.0, self._detect_width / width)
        small = (
            cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1.0
            else grey
        )
        with self._lock:
            rects = list(self._detector(small, 0))
        return tuple(
            FaceBox(
                left=max(0, round(r.left() / scale)),
                top=max(0, round(r.top() / scale)),
                right=min(width, round(r.right() / scale)),
                bottom=min(height, round(r.bottom() / scale)),
            )
            for r in rects
        )

    def landmarks(self, grey: npt.NDArray[np.uint8], box: FaceBox) -> npt.NDArray[np.float64]:
        """The 68 landmarks (x, y) of the face in box, on the full-resolution grey frame."""
        with self._lock:
            shape = self._predictor(grey, dlib.rectangle(box.left, box.top, box.right, box.bottom))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def analyse(self, image: BgrImage) -> FrameAnalysis:
        """Find the faces in a BGR frame and, when there is exactly one, measure it."""
        grey = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        boxes = self.find_faces(grey)
        height, width = grey.shape[:2]
        if len(boxes) != 1:
            return FrameAnalysis(frame_size=(width, height), face_boxes=boxes, face=None)
        box = boxes[0]
        points = self.landmarks(grey, box)
        face = FaceMeasurement(
            box=box,
            eye_aspect_ratio=eye_aspect_ratio(points),
            eye_darkness=eye_darkness(grey, points),
            sharpness=sharpness(grey, box),
            brightness=brightness(grey, box),
            yaw=head_yaw(points),
        )
        return FrameAnalysis(frame_size=(width, height), face_boxes=boxes, face=face)


def eye_aspect_ratio(points: npt.NDArray[np.float64]) -> float:
    """Mean eye aspect ratio of both eyes (Soukupová & Čech 2016): lid gaps over eye width."""

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
    """Head yaw from the 68 landmarks, -1..1: the nose tip's place between the jaw's ends, 0 frontal.

    Above 0 the nose points toward the picture's right (the person's left, the camera not mirrored).
    The platform measures the same way (platform_server/face/liveness_check.py).
    """
    left, right = float(points[0][0]), float(points[16][0])
    if right <= left:
        return 0.0
    return 2.0 * (float(points[30][0]) - left) / (right - left) - 1.0


def _face_crop(grey: npt.NDArray[np.uint8], box: FaceBox) -> npt.NDArray[np.uint8]:
    return grey[box.top : box.bottom, box.left : box.right]


def sharpness(grey: npt.NDArray[np.uint8], box: FaceBox) -> float:
    """Variance of the Laplacian of the face scaled to 128×128: low when blurred or moving."""
    crop = _face_crop(grey, box)
    if crop.size == 0:
        return 0.0
    scaled = cv2.resize(crop, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(scaled, cv2.CV_64F).var())


def brightness(grey: npt.NDArray[np.uint8], box: FaceBox) -> float:
    """Mean grey level of the face, 0-255."""
    crop = _face_crop(grey, box)
    return float(crop.mean()) if crop.size else 0.0
