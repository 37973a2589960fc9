"""Bounded decoding of untrusted images: sizes checked before decoding, EXIF applied, junk refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from platform_server.face.api import FaceImageError, FaceImageProblem
from platform_server.face.dlib_verifier import ReferenceEncodingError, encoding_from_bytes, encoding_to_bytes
from platform_server.face.image_decoding import decode_image

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 4_000_000, "work_max_side": 1280}


def image_bytes(width: int, height: int, fmt: str = "JPEG", exif_orientation: int | None = None) -> bytes:
    image = Image.new("RGB", (width, height), (200, 10, 10))
    image.paste((10, 200, 10), (0, 0, width // 4, height))  # a green band on the left, to see rotation
    buffer = io.BytesIO()
    extra = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        extra["exif"] = exif.tobytes()
    image.save(buffer, format=fmt, **extra)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height, with a tiny body: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def test_jpeg_and_png_decode_to_rgb() -> None:
    for fmt in ("JPEG", "PNG"):
        rgb = decode_image(image_bytes(64, 48, fmt), **LIMITS)
        assert rgb.shape == (48, 64, 3)
        assert rgb.dtype == np.uint8


def test_exif_orientation_is_applied() -> None:
    rgb = decode_image(image_bytes(64, 48, exif_orientation=6), **LIMITS)  # 6: rotate 90° clockwise
    assert rgb.shape == (64, 48, 3)
    assert rgb[0, -1, 1] > 150  # the green band is now along the top
    assert rgb[-1, 0, 1] < 100


def test_large_photo_is_shrunk_while_decoding() -> None:
    rgb = decode_image(image_bytes(3000, 2000), max_bytes=1 << 22, max_pixels=10**7, work_max_side=1280)
    assert max(rgb.shape[:2]) <= 1280


def test_too_many_bytes_refused_before_parsing() -> None:
    with pytest.raises(FaceImageError) as caught:
        decode_image(b"\xff" * 2000, max_bytes=1000, max_pixels=10**6, work_max_side=1280)
    assert caught.value.problem is FaceImageProblem.TOO_LARGE


def test_pixel_bomb_refused_from_the_header() -> None:
    bomb = png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(FaceImageError) as caught:
        decode_image(bomb, **LIMITS)
    assert caught.value.problem is FaceImageProblem.TOO_LARGE


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a" + b"\x00" * 100, b"hello", image_bytes(64, 48)[:300], png_header_only(64, 48)],
    ids=["empty", "gif", "text", "truncated-jpeg", "png-without-pixels"],
)
def test_undecodable(data: bytes) -> None:
    with pytest.raises(FaceImageError) as caught:
        decode_image(data, **LIMITS)
    assert caught.value.problem is FaceImageProblem.UNDECODABLE


def test_other_formats_are_refused_even_when_pillow_reads_them() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="BMP")
    with pytest.raises(FaceImageError) as caught:
        decode_image(buffer.getvalue(), **LIMITS)
    assert caught.value.problem is FaceImageProblem.UNDECODABLE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_decode_or_raise_face_image_error(data: bytes) -> None:
    try:
        rgb = decode_image(data, **LIMITS)
    except FaceImageError as err:
        problem = err.problem
    else:
        assert rgb.ndim == 3
        return
    assert problem in (FaceImageProblem.UNDECODABLE, FaceImageProblem.TOO_LARGE)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=20, max_size=600), st.integers(min_value=0, max_value=2000))
def test_corrupted_jpeg_never_escapes_as_another_error(noise: bytes, offset: int) -> None:
    good = bytearray(image_bytes(64, 48))
    position = min(offset, len(good) - 1)
    good[position : position + len(noise)] = noise
    try:
        decode_image(bytes(good), **LIMITS)
    except FaceImageError as err:
        problem = err.problem
    else:
        return
    assert problem in (FaceImageProblem.UNDECODABLE, FaceImageProblem.TOO_LARGE)


def test_encoding_round_trip_and_errors() -> None:
    values = np.linspace(-0.2, 0.2, 128)
    assert np.array_equal(encoding_from_bytes(encoding_to_bytes(values)), values)
    with pytest.raises(ReferenceEncodingError, match="128 values"):
        encoding_to_bytes(np.zeros(127))
    with pytest.raises(ReferenceEncodingError, match="1024 bytes"):
        encoding_from_bytes(b"\x00" * 1023)
    with pytest.raises(ReferenceEncodingError, match="infinite"):
        encoding_from_bytes(np.full(128, np.inf).tobytes())
