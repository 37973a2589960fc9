"""Safe decoding of untrusted JPEG/PNG bytes into an RGB array, bounded in bytes, pixels and size.

Images come from kiosks and organisers' photo imports, so the decoder checks the byte size before
parsing, the pixel count from the header before allocating (Pillow reads headers lazily), applies
the EXIF orientation, and shrinks very large photos while decoding (JPEG draft mode).
"""

from __future__ import annotations

import io
import warnings
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from platform_server.face.api import FaceImageError, FaceImageProblem

ALLOWED_FORMATS = ("JPEG", "PNG")

RgbImage: TypeAlias = npt.NDArray[np.uint8]


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, work_max_side: int) -> RgbImage:
    """Decode JPEG/PNG bytes to an upright H×W×3 uint8 RGB array whose longest side is at most work_max_side.

    Raises:
        FaceImageError: TOO_LARGE over max_bytes or max_pixels (checked before decoding),
            UNDECODABLE for anything that is not a complete JPEG or PNG.

    """
    if len(data) > max_bytes:
        raise FaceImageError(
            FaceImageProblem.TOO_LARGE, f"image is {len(data)} bytes, more than the limit of {max_bytes} bytes"
        )
    if not data:
        raise FaceImageError(FaceImageProblem.UNDECODABLE, "image is empty (0 bytes)")
    image = _open_header(data, max_pixels)
    try:
        if image.format == "JPEG" and max(image.size) > work_max_side:
            # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: far less time and memory for a
            # 12-megapixel photo, while keeping the longest side at least work_max_side.
            image.draft("RGB", (work_max_side, work_max_side))
        image.load()
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError from inside the codec.
        raise FaceImageError(FaceImageProblem.UNDECODABLE, f"image data is damaged or incomplete: {err}") from err
    if max(rgb.size) > work_max_side:
        rgb.thumbnail((work_max_side, work_max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8)


def _open_header(data: bytes, max_pixels: int) -> Image.Image:
    """Parse only the header and check the pixel count before anything is allocated for the pixels."""
    # A truncated file must fail rather than decode half grey; the flag is process-wide, so insist on it.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard only warns below twice its limit; our own limit is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as err:
        raise FaceImageError(FaceImageProblem.TOO_LARGE, f"image is too large to decode safely: {err}") from err
    except UnidentifiedImageError as err:
        raise FaceImageError(FaceImageProblem.UNDECODABLE, "image is not a JPEG or PNG file") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise FaceImageError(FaceImageProblem.UNDECODABLE, f"image header is damaged: {err}") from err
    width, height = image.size
    if width * height > max_pixels:
        raise FaceImageError(
            FaceImageProblem.TOO_LARGE,
            f"image is {width}×{height} = {width * height} pixels, more than the limit of {max_pixels}",
        )
    if width == 0 or height == 0:
        raise FaceImageError(FaceImageProblem.UNDECODABLE, f"image has no pixels ({width}×{height})")
    return image
