"""A picklable verifier and liveness checker for the pool tests: slow on purpose, or refusing an image."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from platform_server.face.api import FaceImageError, FaceImageProblem, FaceVerdict, LivenessVerdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from platform_server.face.api import LivenessEvidence


class SlowVerifier:
    """verify() takes `seconds`; a capture starting with b"bad" is refused as having no face."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @property
    def threshold(self) -> float:
        return 0.5

    def encode_reference(self, image: bytes) -> bytes:
        return image[:8]

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        if any(c.startswith(b"bad") for c in captures):
            raise FaceImageError(FaceImageProblem.NO_FACE, "no face in the capture")
        started = time.perf_counter()
        time.sleep(self.seconds)  # stands in for dlib's 70-130 ms of CPU per face
        took = time.perf_counter() - started
        return FaceVerdict(0.1, 0.5, matched=reference_encoding == captures[0][:8], checks_s=0.0, descriptors_s=took)


def make_slow() -> SlowVerifier:
    """Factory for the pool (module level: the spawn start method pickles it by name)."""
    return SlowVerifier(0.6)


class SlowLivenessChecker:
    """check() takes `seconds` and passes when the challenge has frames."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        time.sleep(self.seconds)  # stands in for the check's detections and descriptors
        passed = bool(evidence.frames) and bool(captures)
        return LivenessVerdict(passed=passed, reason="passed" if passed else "no_evidence", measures={})


def make_slow_liveness() -> SlowLivenessChecker:
    """Liveness factory for the pool (module level, like make_slow)."""
    return SlowLivenessChecker(0.2)


def wait_for_file(path: str) -> str:
    """A task that runs until `path` exists (the test creates it), polling every 10 ms; a minute at most."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:  # noqa: PTH110 - a path as the task's text
        time.sleep(0.01)
    return path


def touch(path: str) -> str:
    """A task that creates `path` at once."""
    with open(path, "w", encoding="utf-8"):  # noqa: PTH123
        return path
