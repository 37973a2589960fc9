"""DlibFaceVerifier on the shared face images: match, mismatch, no face, several faces, bad images."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from platform_server.face.api import FaceImageError, FaceImageProblem, FaceVerifier
from platform_server.face.dlib_verifier import (
    DEFAULT_THRESHOLD,
    ENCODING_BYTES,
    DlibFaceVerifier,
    ReferenceEncodingError,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def test_implements_the_agreed_interface(verifier: DlibFaceVerifier) -> None:
    as_protocol: FaceVerifier = verifier
    assert as_protocol.threshold == DEFAULT_THRESHOLD


def test_reference_encoding_is_128_little_endian_float64(reference: Callable[[str], bytes]) -> None:
    encoding = reference("obama_1.jpg")
    assert len(encoding) == ENCODING_BYTES
    values = np.frombuffer(encoding, dtype="<f8")
    assert np.all(np.isfinite(values))
    assert 0.5 < float(np.linalg.norm(values)) < 1.5  # dlib descriptors are close to unit length


def test_same_person_matches(verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path) -> None:
    verdict = verifier.verify(reference("obama_1.jpg"), [(faces_dir / "obama_2.jpg").read_bytes()])
    assert verdict.matched
    assert verdict.distance <= verdict.threshold == DEFAULT_THRESHOLD
    assert verdict.checks_s is not None
    assert verdict.checks_s > 0
    assert verdict.descriptors_s is not None
    assert verdict.descriptors_s > 0  # one descriptor at least: tens of ms


def test_different_person_does_not_match(
    verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path
) -> None:
    verdict = verifier.verify(reference("obama_1.jpg"), [(faces_dir / "biden_1.jpg").read_bytes()])
    assert not verdict.matched
    assert verdict.distance > verdict.threshold


def test_threshold_decides(reference: Callable[[str], bytes], faces_dir: Path) -> None:
    capture = [(faces_dir / "obama_2.jpg").read_bytes()]
    loose = DlibFaceVerifier(threshold=1.2).verify(reference("obama_1.jpg"), capture)
    strict = DlibFaceVerifier(threshold=0.05).verify(reference("obama_1.jpg"), capture)
    assert loose.distance == pytest.approx(strict.distance)
    assert loose.matched
    assert not strict.matched


def test_a_clear_first_capture_decides_alone(
    verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path
) -> None:
    ref = reference("obama_1.jpg")
    first, second = ((faces_dir / name).read_bytes() for name in ("obama_2.jpg", "obama_3.jpg"))
    alone = verifier.verify(ref, [first]).distance
    assert abs(alone - verifier.threshold) > verifier.ambiguity_band  # a clear match on this set
    assert verifier.verify(ref, [first, second]).distance == pytest.approx(alone)
    # The second frame is still checked (a second person there fails the call), only not encoded.
    assert verifier.verify(ref, [second, first]).distance == pytest.approx(verifier.verify(ref, [second]).distance)


def test_an_ambiguous_first_capture_is_decided_by_the_mean(reference: Callable[[str], bytes], faces_dir: Path) -> None:
    ref = reference("obama_1.jpg")
    images = [(faces_dir / name).read_bytes() for name in ("obama_2.jpg", "obama_3.jpg")]
    singles = [DlibFaceVerifier().verify(ref, [image]).distance for image in images]
    # A threshold just above the first frame's distance puts that frame in the ambiguous band.
    near = DlibFaceVerifier(threshold=singles[0] + 0.01, ambiguity_band=0.05)
    both = near.verify(ref, images)
    assert both.distance == pytest.approx(sum(singles) / 2)
    assert both.matched is (both.distance <= near.threshold)
    # Band 0: the first usable frame always decides; band 1.5: every frame is always encoded.
    assert DlibFaceVerifier(threshold=singles[0] + 0.01, ambiguity_band=0.0).verify(
        ref, images
    ).distance == pytest.approx(singles[0])
    assert DlibFaceVerifier(ambiguity_band=1.5).verify(ref, images).distance == pytest.approx(sum(singles) / 2)


def test_a_capture_without_face_is_skipped_when_another_is_good(
    verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path, no_face_jpeg: bytes
) -> None:
    good = (faces_dir / "obama_2.jpg").read_bytes()
    verdict = verifier.verify(reference("obama_1.jpg"), [no_face_jpeg, good])
    assert verdict.matched
    assert verdict.distance == pytest.approx(verifier.verify(reference("obama_1.jpg"), [good]).distance)


def test_no_face(verifier: DlibFaceVerifier, reference: Callable[[str], bytes], no_face_jpeg: bytes) -> None:
    with pytest.raises(FaceImageError) as caught:
        verifier.verify(reference("obama_1.jpg"), [no_face_jpeg])
    assert caught.value.problem is FaceImageProblem.NO_FACE
    with pytest.raises(FaceImageError) as caught:
        verifier.encode_reference(no_face_jpeg)
    assert caught.value.problem is FaceImageProblem.NO_FACE


@pytest.mark.parametrize("name", ["two_people.jpg", "obama_and_biden.jpg", "longoria_cooper.jpg"])
def test_several_faces_are_refused_not_picked(
    verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path, name: str
) -> None:
    image = (faces_dir / "multi" / name).read_bytes()
    with pytest.raises(FaceImageError) as caught:
        verifier.encode_reference(image)
    assert caught.value.problem is FaceImageProblem.SEVERAL_FACES
    # Even beside a good capture: a second person in a frame is not something to skip silently.
    with pytest.raises(FaceImageError) as caught:
        verifier.verify(reference("obama_1.jpg"), [(faces_dir / "obama_2.jpg").read_bytes(), image])
    assert caught.value.problem is FaceImageProblem.SEVERAL_FACES


def test_face_too_small(verifier: DlibFaceVerifier, faces_dir: Path) -> None:
    # obama_small.jpg (320×240, face about 105 px) shrunk to a 60 px face in a 640×480 frame.
    small = Image.open(faces_dir / "obama_small.jpg").convert("RGB").resize((184, 138))
    frame = Image.new("RGB", (640, 480), (128, 128, 128))
    frame.paste(small, (228, 171))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=95)
    with pytest.raises(FaceImageError) as caught:
        verifier.encode_reference(buffer.getvalue())
    assert caught.value.problem is FaceImageProblem.TOO_SMALL


def test_oversized_bytes_refused_before_decoding(reference: Callable[[str], bytes], faces_dir: Path) -> None:
    strict = DlibFaceVerifier(max_image_bytes=10_000)
    image = (faces_dir / "obama_2.jpg").read_bytes()
    with pytest.raises(FaceImageError) as caught:
        strict.verify(reference("obama_1.jpg"), [image])
    assert caught.value.problem is FaceImageProblem.TOO_LARGE
    assert "10000" in str(caught.value)


def test_too_many_pixels_refused(faces_dir: Path) -> None:
    strict = DlibFaceVerifier(max_pixels=100_000)
    with pytest.raises(FaceImageError) as caught:
        strict.encode_reference((faces_dir / "obama_2.jpg").read_bytes())
    assert caught.value.problem is FaceImageProblem.TOO_LARGE


def test_undecodable_capture(verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path) -> None:
    truncated = (faces_dir / "obama_2.jpg").read_bytes()[:5000]
    for bad in (b"not an image at all", truncated):
        with pytest.raises(FaceImageError) as caught:
            verifier.verify(reference("obama_1.jpg"), [bad])
        assert caught.value.problem is FaceImageProblem.UNDECODABLE


def test_too_many_captures(verifier: DlibFaceVerifier, reference: Callable[[str], bytes], faces_dir: Path) -> None:
    image = (faces_dir / "obama_2.jpg").read_bytes()
    with pytest.raises(FaceImageError) as caught:
        verifier.verify(reference("obama_1.jpg"), [image] * 6)
    assert caught.value.problem is FaceImageProblem.TOO_LARGE


def test_no_captures_and_bad_reference(verifier: DlibFaceVerifier, faces_dir: Path) -> None:
    image = (faces_dir / "obama_2.jpg").read_bytes()
    with pytest.raises(ValueError, match="at least one capture"):
        verifier.verify(bytes(ENCODING_BYTES), [])
    with pytest.raises(ReferenceEncodingError, match="1024 bytes"):
        verifier.verify(b"\x00" * 100, [image])
    with pytest.raises(ReferenceEncodingError, match="NaN"):
        verifier.verify(np.full(128, np.nan).tobytes(), [image])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 2.0}, "threshold"),
        ({"max_image_bytes": 0}, "max_image_bytes"),
        ({"max_pixels": -1}, "max_pixels"),
        ({"num_jitters": 0}, "num_jitters"),
        ({"model": "huge"}, "model"),
        ({"max_captures": 0}, "max_captures"),
        ({"ambiguity_band": -0.1}, "ambiguity_band"),
        ({"ambiguity_band": 2.0}, "ambiguity_band"),
    ],
)
def test_settings_are_range_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DlibFaceVerifier(**kwargs)  # type: ignore[arg-type]


def test_large_landmark_model_also_matches(faces_dir: Path) -> None:
    large = DlibFaceVerifier(model="large")
    ref = large.encode_reference((faces_dir / "obama_1.jpg").read_bytes())
    assert large.verify(ref, [(faces_dir / "obama_2.jpg").read_bytes()]).matched
    assert not large.verify(ref, [(faces_dir / "biden_1.jpg").read_bytes()]).matched
