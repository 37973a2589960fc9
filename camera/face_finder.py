"""Faces and their 68 landmarks in a camera frame: dlib's HOG detector on a downscaled copy, its shape predictor.

Detection runs on a copy `detect_width` pixels wide (about 10 ms at 480 px instead of about 50 ms
at 1280); landmarks use the full-resolution frame, where eyes are large enough to measure. The
kiosk's face analysis builds on it, and the camera simulator uses it to find the eyes it closes.
"""

from __future__ import annotations

import threading

import cv2
import dlib
import face_recognition_models
import numpy as np
import numpy.typing as npt

from camera.models import FaceBox


class FaceFinder:
    """Finds faces in a grey frame and places the 68 landmarks of one. Thread-safe (dlib under a lock)."""

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
