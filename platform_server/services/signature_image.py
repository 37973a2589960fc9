"""A signature image: a PNG within its limits, checked from its header and chunk list before it is decoded.

The kiosk sends the expert's signature as a small greyscale PNG (checkin/signature.py, about 10 kB).
Anything else is refused before a decoder sees it: not a PNG by its signature bytes, more than the
configured bytes, wider, taller or with more pixels than SIGNATURE_LIMITS, more decompressed scanline
bytes than allowed (read from IHDR: a few kB of zlib can claim gigabytes), compressed text or ICC chunks
(their own decompression), animation chunks, or a broken chunk list. Only then is it decoded, by
Pillow's PNG plugin alone, to check it is complete and not blank. check_in.complete_check_in() calls
this only for a request whose identification token this platform signed for that kiosk.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK_HEAD = struct.Struct(">L4s")
_IHDR = struct.Struct(">LLBBBBB")
# Samples per pixel by PNG colour type: greyscale, RGB, palette, grey+alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Decompressing chunks other than IDAT (zTXt, iTXt, iCCP) or frames of an animation (acTL, fcTL, fdAT).
_REFUSED_CHUNKS = frozenset({b"zTXt", b"iTXt", b"iCCP", b"acTL", b"fcTL", b"fdAT"})
_KNOWN_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})


@dataclass(frozen=True, slots=True)
class SignatureLimits:
    """What a signature PNG may be besides its byte size (a rule: [rules] max_signature_bytes)."""

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 4_000_000
    max_decompressed_bytes: int = 16 * 1024 * 1024  # scanlines with their filter bytes, from IHDR
    max_chunks: int = 4096


SIGNATURE_LIMITS = SignatureLimits()


def header_problem(png: bytes, max_bytes: int, limits: SignatureLimits = SIGNATURE_LIMITS) -> str | None:  # noqa: C901, PLR0911
    """Why the bytes are not an acceptable signature PNG, from the header and chunk list alone, or None."""
    if not png:
        return "empty"
    if len(png) > max_bytes:
        return "too_large"
    if not png.startswith(PNG_SIGNATURE):
        return "not_png"
    at = len(PNG_SIGNATURE)
    if png[at + 4 : at + 8] != b"IHDR" or len(png) < at + 8 + _IHDR.size:
        return "not_png"
    width, height, depth, colour, _compression, _filter, interlace = _IHDR.unpack_from(png, at + 8)
    if width == 0 or height == 0 or depth not in _DEPTHS.get(colour, ()) or interlace > 1:
        return "bad_header"
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        return "too_many_pixels"
    row_bytes = 1 + (width * _CHANNELS[colour] * depth + 7) // 8
    if height * row_bytes > limits.max_decompressed_bytes:
        return "decompressed_too_large"
    chunks = 0
    while at < len(png):
        if at + _CHUNK_HEAD.size > len(png):
            return "truncated"
        length, kind = _CHUNK_HEAD.unpack_from(png, at)
        at += _CHUNK_HEAD.size + length + 4  # data and CRC
        chunks += 1
        if at > len(png) or chunks > limits.max_chunks:
            return "truncated" if at > len(png) else "too_many_chunks"
        if kind in _REFUSED_CHUNKS or (kind[:1].isupper() and kind not in _KNOWN_CRITICAL):
            return "chunk_refused"
        if kind == b"IEND":
            return None
    return "truncated"


def signature_problem(png: bytes, max_bytes: int, limits: SignatureLimits = SIGNATURE_LIMITS) -> str | None:
    """Why a signature image is unusable (header_problem(), undecodable, blank), or None."""
    problem = header_problem(png, max_bytes, limits)
    if problem is not None:
        return problem
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # process-wide; a cut-off image must fail, not decode half
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
                image.load()
                low, high = image.convert("L").getextrema()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return "undecodable"
    except Image.DecompressionBombWarning:
        return "too_many_pixels"
    if low == high:
        return "blank"
    return None
