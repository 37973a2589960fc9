"""The face-verification interface the platform's services depend on.

The services take any `FaceVerifier`; `platform_server/bootstrap.py` builds the dlib-based one.
Encodings are opaque bytes to the services (the dlib one stores 128 float64 values).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence


class FaceImageProblem(StrEnum):
    """Why an image cannot be used for verification; each maps to a refusal the kiosk can show."""

    TOO_LARGE = "too_large"  # over the configured byte or pixel limit
    UNDECODABLE = "undecodable"  # not a JPEG/PNG the decoder can read
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    TOO_SMALL = "too_small"  # face found but too few pixels to encode reliably


class FaceImageError(ValueError):
    """An image that cannot be verified, with the specific problem and a message for people."""

    def __init__(self, problem: FaceImageProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FaceVerdict:
    """Outcome of comparing captures with a reference: best distance, threshold used, decision.

    `checks_s` and `descriptors_s`, where the verifier measures them, are the seconds spent decoding
    the captures and finding their faces, then computing descriptors: they travel with the verdict
    (from a worker process too) to the serving process's metrics (rpc_metrics).
    """

    distance: float
    threshold: float
    matched: bool
    checks_s: float | None = None
    descriptors_s: float | None = None


class FaceVerifier(Protocol):
    """Encodes reference photos once, and compares kiosk captures with them."""

    @property
    def threshold(self) -> float:
        """Distance at or below which two faces are taken to be the same person."""
        ...

    def encode_reference(self, image: bytes) -> bytes:
        """Encode a reference photo (JPEG/PNG bytes); raise FaceImageError if unusable."""
        ...

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        """Compare 1..n capture images with a stored reference encoding; raise FaceImageError."""
        ...


class LivenessChallenge(StrEnum):
    """What the kiosk asked the expert to do; chosen at random for each capture."""

    BLINK = "blink"  # eyes open, closed, open
    TURN_LEFT = "turn_left"  # the expert turns the head to their own left and back
    TURN_RIGHT = "turn_right"  # to their own right and back


@dataclass(frozen=True, slots=True)
class ChallengeFrame:
    """One frame of the challenge as the kiosk captured it (JPEG/PNG) and when, in ms since it was shown."""

    image: bytes
    captured_at_ms: int


@dataclass(frozen=True, slots=True)
class LivenessEvidence:
    """The challenge the kiosk ran and its frames in capture order: neutral, the action, neutral again."""

    challenge: LivenessChallenge | None
    challenge_id: str
    frames: tuple[ChallengeFrame, ...]


@dataclass(frozen=True, slots=True)
class LivenessVerdict:
    """The platform's own liveness decision, its reason code (for the audit) and the measures behind it."""

    passed: bool
    reason: str  # "passed", or why not: "no_evidence", "no_blink", "wrong_turn", "face_changed", ...
    measures: dict[str, float]


class LivenessChecker(Protocol):
    """Checks the kiosk's challenge frames itself, whatever the kiosk claims about liveness."""

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        """Decide whether the frames show the asked action by one live face, the face of the captures.

        The dlib check compares with the capture the comparison encodes first (face/liveness_check.py).
        """
        ...
