"""Per-frame face measurements on the kiosk: the camera's face finder, then eye openness, yaw and image quality.

The geometry on the landmarks is camera.landmarks (shared with the platform's liveness check);
the image measures (sharpness, brightness) are the kiosk's quality gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import cv2
import numpy as np

from camera.face_finder import FaceFinder
from camera.landmarks import eye_aspect_ratio, eye_darkness, head_yaw
from checkin.face.models import FaceMeasurement, FrameAnalysis

if TYPE_CHECKING:
    import numpy.typing as npt

    from camera.models import BgrImage, FaceBox

SHARPNESS_SIZE: Final = 128  # the face is scaled to this before measuring blur, so distance does not matter


class FaceAnalyser(FaceFinder):
    """Finds faces in a frame and measures the one face: box, eye openness, sharpness, brightness.

    Thread-safe: dlib's detector and shape predictor are called under the finder's lock.
    """

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
