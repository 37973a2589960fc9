"""Face fixtures: one verifier and one analyser per test process, reference encodings cached."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
    from checkin.face.face_analysis import FaceAnalyser
    from platform_server.face.dlib_verifier import DlibFaceVerifier
    from platform_server.face.liveness_check import DlibLivenessChecker

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture(scope="session")
def verifier() -> DlibFaceVerifier:
    return DlibFaceVerifier()


@pytest.fixture(scope="session")
def analyser() -> FaceAnalyser:
    return FaceAnalyser()


@pytest.fixture(scope="session")
def reference(verifier: DlibFaceVerifier, faces_dir: Path) -> Callable[[str], bytes]:
    """Reference encoding of a shared image, encoded once per session (as at photo import)."""
    cache: dict[str, bytes] = {}

    def encode(name: str) -> bytes:
        if name not in cache:
            cache[name] = verifier.encode_reference((faces_dir / name).read_bytes())
        return cache[name]

    return encode


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def no_face_jpeg() -> bytes:
    """A 640×480 lobby-like picture without a face: a grey gradient wall and a darker doorway."""
    wall = np.tile(np.linspace(150, 200, 640), (480, 1))
    wall[120:, 210:320] = 95
    return jpeg(np.dstack([wall, wall, wall]))


@pytest.fixture(scope="session")
def liveness_checker() -> DlibLivenessChecker:
    return DlibLivenessChecker()
