"""Face verification with dlib's ResNet face descriptor (the model behind face_recognition).

Pipeline per image: safe decode (image_decoding), HOG detection on a downscaled copy, landmarks and
the 128-d descriptor on the working-resolution image, Euclidean distance to the reference.
The threshold and the way several captures are combined were chosen from measurements: see
docs/face.md and bench/face_accuracy.py.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import cv2
import dlib
import numpy as np

from platform_server.face import defaults
from platform_server.face.api import FaceImageError, FaceImageProblem, FaceVerdict
from platform_server.face.image_decoding import RgbImage, decode_image

with warnings.catch_warnings():
    # face_recognition_models locates its files with the deprecated pkg_resources; the warning it
    # prints would otherwise end up in front of organisers on every photo import.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import face_recognition_models

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import numpy.typing as npt

log = logging.getLogger(__name__)

# The defaults live in face/defaults.py (shared with `[face]` in the platform config, which overrides
# them); re-exported here because this is where callers look for them.
DEFAULT_THRESHOLD: Final = defaults.DEFAULT_THRESHOLD
DEFAULT_MAX_IMAGE_BYTES: Final = defaults.DEFAULT_MAX_IMAGE_BYTES
DEFAULT_MAX_PIXELS: Final = defaults.DEFAULT_MAX_PIXELS
DEFAULT_MAX_CAPTURES: Final = defaults.DEFAULT_MAX_CAPTURES
# Sequential decision over the captures (best first): the first usable capture decides alone when its
# distance is farther than this from the threshold; inside the band every usable capture is encoded
# and the mean decides, as before. The mean of three can only land on the other side of the threshold
# if it differs from the first capture by more than the band: on the shared images no kiosk capture
# triple came near that (docs/face.md, bench/face_accuracy.py --kiosk-frames).
DEFAULT_AMBIGUITY_BAND: Final = 0.05

ENCODING_SIZE: Final = 128
ENCODING_BYTES: Final = ENCODING_SIZE * 8  # float64, little-endian
MAX_THRESHOLD: Final = 1.5  # descriptors are near unit length: distances never come close to this

# Images are worked on with their longest side at most this: a 150×150 face chip needs no more, and
# it bounds the cost of a 12-megapixel reference photo.
WORK_MAX_SIDE: Final = 1280
# Below this face width (working-image pixels) the descriptor degrades: the chip would be upscaled.
MIN_FACE_PX: Final = 80

# HOG detection ladder, tried in order until a rung finds a face: (longest side of the detection
# copy, upsample count). The first rung (~10 ms on a 640×480 capture) finds faces of at least 80 px at
# that scale, i.e. a fifth of the image, which every kiosk capture has. The later rungs only run for
# images where it found nothing: they find smaller faces so that the answer can be "too small" rather
# than "no face", at a cost paid only by images that will be refused or by unusual reference photos.
# Faces much smaller than the one found at an earlier rung (a bystander far behind) are not counted.
DETECTION_LADDER: Final = ((400, 0), (1024, 0), (640, 1))

LandmarkModel: TypeAlias = Literal["small", "large"]


@dataclass(frozen=True, slots=True)
class _FaceBox:
    """A detected face in working-image coordinates."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    def to_dlib(self) -> dlib.rectangle:
        return dlib.rectangle(self.left, self.top, self.right, self.bottom)


def sequential_distance(distances: Iterable[float], threshold: float, band: float) -> tuple[float, int]:
    """The distance a verification decides on, and how many frames it took (frames best first).

    The first distance decides alone when it lies farther than `band` from `threshold`; otherwise
    the mean of every distance decides. Reads `distances` lazily: a clear first frame costs one.
    """
    taken: list[float] = []
    for distance in distances:
        taken.append(distance)
        if len(taken) == 1 and abs(distance - threshold) > band:
            break  # clear on the best frame: the others could not move the mean across the threshold
    if not taken:
        raise ValueError("sequential_distance needs at least one distance")
    return math.fsum(taken) / len(taken), len(taken)


# How one capture is compared with an expert's several reference photos (bench/face_accuracy.py --folder):
# "min" the closest reference, "mean" the mean distance, "centroid" the distance to the references'
# mean descriptor. The default is chosen by measurement: see docs/face.md.
REFERENCE_RULES: Final = ("min", "mean", "centroid")
DEFAULT_REFERENCE_RULE: Final = "centroid"
MAX_REFERENCES: Final = 5


def reference_distance(references: npt.NDArray[np.float64], descriptor: npt.NDArray[np.float64], rule: str) -> float:
    """Distance of one capture's descriptor to k reference descriptors (k×128) under a decision rule."""
    if rule == "min":
        return float(np.min(np.linalg.norm(references - descriptor, axis=1)))
    if rule == "mean":
        return float(np.mean(np.linalg.norm(references - descriptor, axis=1)))
    if rule == "centroid":
        return float(np.linalg.norm(references.mean(axis=0) - descriptor))
    raise ValueError(f"reference rule must be one of {', '.join(REFERENCE_RULES)}, got {rule!r}")


class ReferenceEncodingError(ValueError):
    """A stored reference encoding that is not 128 finite little-endian float64 values."""


def encoding_to_bytes(encoding: npt.ArrayLike) -> bytes:
    """Serialise a 128-d descriptor as 1024 bytes (float64, little-endian), the stored form."""
    array = np.asarray(encoding, dtype="<f8")
    if array.shape != (ENCODING_SIZE,):
        raise ReferenceEncodingError(f"a face encoding has {ENCODING_SIZE} values, got shape {array.shape}")
    return array.tobytes()


def encodings_to_bytes(encodings: Sequence[bytes]) -> bytes:
    """Several stored encodings (one per reference photo) as the one blob verify takes: concatenated."""
    if not 1 <= len(encodings) <= MAX_REFERENCES:
        raise ReferenceEncodingError(f"an expert has 1 to {MAX_REFERENCES} reference encodings, got {len(encodings)}")
    for one in encodings:
        encoding_from_bytes(one)
    return b"".join(encodings)


def encodings_from_bytes(data: bytes) -> npt.NDArray[np.float64]:
    """Parse 1..MAX_REFERENCES concatenated stored encodings into a k×128 array."""
    count, rest = divmod(len(data), ENCODING_BYTES)
    if rest or not 1 <= count <= MAX_REFERENCES:
        raise ReferenceEncodingError(
            f"reference encodings are 1 to {MAX_REFERENCES} times {ENCODING_BYTES} bytes, got {len(data)}"
        )
    return np.stack([encoding_from_bytes(data[i : i + ENCODING_BYTES]) for i in range(0, len(data), ENCODING_BYTES)])


def encoding_from_bytes(data: bytes) -> npt.NDArray[np.float64]:
    """Parse a stored encoding; raise ReferenceEncodingError if it is not 1024 bytes of finite values."""
    if len(data) != ENCODING_BYTES:
        raise ReferenceEncodingError(f"a face encoding is {ENCODING_BYTES} bytes, got {len(data)}")
    array = np.frombuffer(data, dtype="<f8").astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ReferenceEncodingError("a face encoding contains NaN or infinite values")
    return array


class DlibFaceVerifier:
    """FaceVerifier backed by dlib: HOG detector, 5- or 68-point landmarks, ResNet 128-d descriptor.

    Thread-safe: dlib's network keeps per-call buffers, so calls into dlib are serialised by a lock.
    dlib holds the GIL while it computes, so one process uses one core for faces: the platform runs
    verifiers in worker processes, one per core (face/pool.py).
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_jitters: int = 1,
        model: LandmarkModel = "small",
        *,
        max_captures: int = DEFAULT_MAX_CAPTURES,
        ambiguity_band: float = DEFAULT_AMBIGUITY_BAND,
        reference_rule: str = DEFAULT_REFERENCE_RULE,
    ) -> None:
        if not (isinstance(threshold, int | float) and 0.0 < threshold < MAX_THRESHOLD):
            raise ValueError(f"face threshold must be a number above 0 and below {MAX_THRESHOLD}, got {threshold!r}")
        if max_image_bytes <= 0:
            raise ValueError(f"face max_image_bytes must be above 0, got {max_image_bytes}")
        if max_pixels <= 0:
            raise ValueError(f"face max_pixels must be above 0, got {max_pixels}")
        if not 1 <= num_jitters <= 100:
            raise ValueError(f"face num_jitters must be between 1 and 100, got {num_jitters}")
        if model not in ("small", "large"):
            raise ValueError(f"face model must be 'small' (5 landmarks) or 'large' (68 landmarks), got {model!r}")
        if max_captures < 1:
            raise ValueError(f"face max_captures must be at least 1, got {max_captures}")
        if not (isinstance(ambiguity_band, int | float) and 0.0 <= ambiguity_band <= MAX_THRESHOLD):
            raise ValueError(
                f"face ambiguity_band must be a number from 0 (the first usable capture always decides) to "
                f"{MAX_THRESHOLD} (every capture is always encoded), got {ambiguity_band!r}"
            )
        if reference_rule not in REFERENCE_RULES:
            raise ValueError(f"face reference_rule must be one of {', '.join(REFERENCE_RULES)}, got {reference_rule!r}")
        self._reference_rule = reference_rule
        self._ambiguity_band = float(ambiguity_band)
        self._threshold = float(threshold)
        self._max_image_bytes = max_image_bytes
        self._max_pixels = max_pixels
        self._num_jitters = num_jitters
        self._max_captures = max_captures
        self._lock = threading.Lock()
        # Loaded once here, so a missing model file fails at start-up, not at the first expert.
        self._detector = dlib.get_frontal_face_detector()
        landmark_model = (
            face_recognition_models.pose_predictor_five_point_model_location()
            if model == "small"
            else face_recognition_models.pose_predictor_model_location()
        )
        self._landmarks = dlib.shape_predictor(landmark_model)
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    @property
    def threshold(self) -> float:
        """Distance at or below which two faces are taken to be the same person."""
        return self._threshold

    @property
    def max_image_bytes(self) -> int:
        """Largest image accepted, in bytes (the IMAGE_TOO_LARGE refusal tells the kiosk this limit)."""
        return self._max_image_bytes

    def encode_reference(self, image: bytes) -> bytes:
        """Encode a reference photo (JPEG/PNG bytes) once, at import; raise FaceImageError if unusable.

        Reference photos use `num_jitters` (an average over slightly shifted chips): they are encoded
        once, so the extra time is paid at import, never while an expert waits.
        """
        return encoding_to_bytes(self.encode(image, num_jitters=self._num_jitters))

    @property
    def ambiguity_band(self) -> float:
        """Half-width of the distance band around the threshold inside which every capture is encoded."""
        return self._ambiguity_band

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        """Compare captures with a reference: see `verify_and_describe`, whose verdict this is."""
        return self.verify_and_describe(reference_encoding, captures)[0]

    def verify_and_describe(
        self, reference_encoding: bytes, captures: Sequence[bytes]
    ) -> tuple[FaceVerdict, npt.NDArray[np.float64]]:
        """Compare 1..max_captures capture images (best first) with an expert's stored reference encodings.

        Returns the verdict and the descriptor of the capture encoded first (the compared capture's face):
        the liveness check compares the challenge's face with it instead of describing a capture again
        (face/liveness_check.py).

        `reference_encoding` is one stored encoding, or several concatenated (one per reference
        photo, `encodings_to_bytes`); each capture's distance to them follows the reference rule
        (default: to the references' mean descriptor, chosen on bench/face_accuracy.py --folder).

        Every capture is decoded and searched for exactly one face (cheap: a few ms each), so a
        malformed image or a second person in any frame still fails the call. The descriptor, the
        expensive part (~70 ms of a core each), is computed sequentially: the first usable capture
        decides alone when its distance lies outside the ambiguity band around the threshold; inside
        it, every usable capture is encoded and the mean decides. Consecutive kiosk frames differ by
        noise, which the mean averages out where it matters, whereas the minimum would turn several
        frames into several tries and raise the false-accept rate (bench/face_accuracy.py).

        Raises:
            ValueError: no captures, or a reference that is not a stored encoding.
            FaceImageError: too many captures, any capture too large or undecodable or showing
                several faces (checked for every capture), or no capture with a usable face.

        """
        references = encodings_from_bytes(reference_encoding)
        rule = self._reference_rule
        started = time.perf_counter()
        usable = self._usable_faces(captures)
        checked = time.perf_counter()
        # A generator: a descriptor is computed only when sequential_distance asks for the next frame.
        described: list[npt.NDArray[np.float64]] = []
        lazy = (reference_distance(references, self._describe_into(described, rgb, box), rule) for rgb, box in usable)
        distance, encoded = sequential_distance(lazy, self._threshold, self._ambiguity_band)
        done = time.perf_counter()
        # Counts and times only: distances and images stay out of the log.
        log.info(
            "face verify: %d capture(s), %d usable, %d encoded; checks %.0f ms, descriptors %.0f ms",
            len(captures),
            len(usable),
            encoded,
            (checked - started) * 1000,
            (done - checked) * 1000,
        )
        verdict = FaceVerdict(
            distance=distance,
            threshold=self._threshold,
            matched=distance <= self._threshold,
            checks_s=checked - started,
            descriptors_s=done - checked,
        )
        return verdict, described[0]

    def describe_compared(self, captures: Sequence[bytes]) -> npt.NDArray[np.float64]:
        """The descriptor `verify_and_describe` returns for these captures, without a reference.

        Raises:
            ValueError: no captures.
            FaceImageError: as `verify` would for these captures.

        """
        rgb, box = self._usable_faces(captures)[0]
        return self._describe(rgb, box, 1)

    def _usable_faces(self, captures: Sequence[bytes]) -> list[tuple[RgbImage, _FaceBox]]:
        """Check the captures' count and sizes, decode each and find its one face; skip frames without one."""
        if not captures:
            raise ValueError("verify needs at least one capture image")
        if len(captures) > self._max_captures:
            raise FaceImageError(
                FaceImageProblem.TOO_LARGE,
                f"{len(captures)} capture images sent; at most {self._max_captures} are accepted per verification",
            )
        # Refuse an oversized request before spending any time on decoding or detection.
        for index, capture in enumerate(captures, start=1):
            if len(capture) > self._max_image_bytes:
                raise FaceImageError(
                    FaceImageProblem.TOO_LARGE,
                    f"capture {index} is {len(capture)} bytes, more than the limit of {self._max_image_bytes} bytes",
                )
        usable: list[tuple[RgbImage, _FaceBox]] = []
        unusable: FaceImageError | None = None
        for capture in captures:
            rgb = decode_image(
                capture, max_bytes=self._max_image_bytes, max_pixels=self._max_pixels, work_max_side=WORK_MAX_SIDE
            )
            try:
                box = self._find_one_face(rgb)
            except FaceImageError as err:
                # A frame where the face was missed or is too small is skipped if another frame is
                # good; anything that hints at a malformed request or a second person is not.
                if err.problem not in (FaceImageProblem.NO_FACE, FaceImageProblem.TOO_SMALL):
                    raise
                unusable = unusable or err
                continue
            usable.append((rgb, box))
        if not usable:
            assert unusable is not None  # every capture raised one of the two skipped problems
            raise unusable
        return usable

    def encode(self, image: bytes, *, num_jitters: int = 1) -> npt.NDArray[np.float64]:
        """Decode, detect exactly one face and return its 128-d descriptor; raise FaceImageError."""
        rgb = decode_image(
            image, max_bytes=self._max_image_bytes, max_pixels=self._max_pixels, work_max_side=WORK_MAX_SIDE
        )
        box = self._find_one_face(rgb)
        return self._describe(rgb, box, num_jitters)

    def encode_detected(self, rgb: RgbImage, box: tuple[int, int, int, int]) -> npt.NDArray[np.float64]:
        """Landmarks and descriptor of an already-detected face (left, top, right, bottom): the cost floor."""
        return self._describe(rgb, _FaceBox(*box), 1)

    def detect(self, rgb: RgbImage) -> tuple[int, int, int, int]:
        """Box (left, top, right, bottom) of the one face in an RGB image; raise FaceImageError."""
        box = self._find_one_face(rgb)
        return (box.left, box.top, box.right, box.bottom)

    def _describe_into(
        self, described: list[npt.NDArray[np.float64]], rgb: RgbImage, box: _FaceBox
    ) -> npt.NDArray[np.float64]:
        descriptor = self._describe(rgb, box, 1)
        described.append(descriptor)
        return descriptor

    def _describe(self, rgb: RgbImage, box: _FaceBox, num_jitters: int) -> npt.NDArray[np.float64]:
        with self._lock:
            shape = self._landmarks(rgb, box.to_dlib())
            descriptor = self._encoder.compute_face_descriptor(rgb, shape, num_jitters)
        return np.asarray(descriptor, dtype=np.float64)

    def _find_one_face(self, rgb: RgbImage) -> _FaceBox:
        height, width = rgb.shape[:2]
        longest = max(height, width)
        for max_side, upsample in DETECTION_LADDER:
            scale = min(1.0, max_side / longest)
            if scale < 1.0:
                # INTER_AREA averages the pixels it drops, so the HOG sees no aliasing.
                small = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            else:
                small = rgb
            # HOG on grey is about a quarter faster than on RGB and finds the same faces.
            small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            with self._lock:
                found = list(self._detector(small, upsample))
            if not found:
                continue
            if len(found) > 1:
                raise FaceImageError(
                    FaceImageProblem.SEVERAL_FACES,
                    f"{len(found)} faces in the image; exactly one person must be in the picture",
                )
            rect = found[0]
            box = _FaceBox(
                left=max(0, round(rect.left() / scale)),
                top=max(0, round(rect.top() / scale)),
                right=min(width, round(rect.right() / scale)),
                bottom=min(height, round(rect.bottom() / scale)),
            )
            if box.width < MIN_FACE_PX:
                raise FaceImageError(
                    FaceImageProblem.TOO_SMALL,
                    f"the face is {box.width} pixels wide; at least {MIN_FACE_PX} are needed to compare it",
                )
            return box
        raise FaceImageError(FaceImageProblem.NO_FACE, "no face found in the image")
