"""Reference photos as organisers have them: JPEG, PNG, WebP, HEIC, told apart by content, not by name.

JPEG and PNG are kept as they are; WebP and HEIC (phones) are converted once, at import, to JPEG, so
the verifier and everything after it only ever see JPEG/PNG (kiosk captures stay JPEG/PNG only).
Every refusal says why in words an organiser understands, Chinese first.
"""

from __future__ import annotations

import io
import warnings
from typing import Final

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from platform_server.face.api import FaceImageError, FaceImageProblem

CONVERTED_JPEG_QUALITY: Final = 95
# Converted photos are kept at most this size: twice what the verifier works at, and well under its byte limit.
CONVERTED_MAX_SIDE: Final = 2560
# ISO base media "ftyp" brands of HEIF/HEIC still images (iPhones write heic; others mif1/heix).
HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"})

# What the organiser reads for each problem the verifier finds in a reference photo.
PROBLEM_WORDS: Final = {
    FaceImageProblem.TOO_LARGE: "照片过大 / the photo is too large",
    FaceImageProblem.UNDECODABLE: "照片已损坏，无法读取 / the photo is damaged and cannot be read",
    FaceImageProblem.NO_FACE: "照片中没有找到人脸 / no face found in the photo",
    FaceImageProblem.SEVERAL_FACES: (
        "照片中有多张人脸，应只有本人 / several faces in the photo; it must show only the expert"
    ),
    FaceImageProblem.TOO_SMALL: "人脸太小，请用更清晰、更近的照片 / the face is too small; use a larger, closer photo",
}


NOT_AN_IMAGE: Final = "不是图片文件 / not an image file"


class ReferencePhotoError(ValueError):
    """A reference photo that cannot be used, with the reason in the organiser's words."""


def sniff_format(data: bytes) -> str | None:
    """JPEG, PNG, WEBP or HEIF from the file's first bytes; a known non-photo format's name; None if unknown."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "AVIF" if data[8:12] == b"avif" else "HEIF"
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF")):
        if data.startswith(magic):
            return name
    return None


def normalise_reference(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """The photo as JPEG or PNG bytes: as it is if it already is one, else converted once from WebP/HEIC.

    Raises:
        ReferencePhotoError: empty, too large, not an image, a format not taken, or truncated/damaged.

    """
    if not data:
        raise ReferencePhotoError("文件是空的 / the file is empty")
    if len(data) > max_bytes:
        raise ReferencePhotoError(f"照片过大（{len(data)} 字节，上限 {max_bytes}）/ the photo is too large")
    kind = sniff_format(data)
    if kind is None:
        raise ReferencePhotoError(NOT_AN_IMAGE)
    if kind not in {"JPEG", "PNG", "WEBP", "HEIF"}:
        raise ReferencePhotoError(
            f"不支持的格式（{kind}），请用 JPEG、PNG、WebP 或 HEIC / "
            f"unsupported format {kind}: use JPEG, PNG, WebP or HEIC"
        )
    image = _load(data, kind, max_pixels)
    if kind in {"JPEG", "PNG"}:
        return data
    rgb = ImageOps.exif_transpose(image).convert("RGB")
    rgb.thumbnail((CONVERTED_MAX_SIDE, CONVERTED_MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=CONVERTED_JPEG_QUALITY)
    return buffer.getvalue()


def _load(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    """Decode completely (a truncated file fails here, not half-grey later), checking pixels first."""
    if kind == "HEIF":
        import pillow_heif  # noqa: PLC0415  (registers HEIF with Pillow; loaded only when a HEIC comes)

        pillow_heif.register_heif_opener()
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ReferencePhotoError(  # noqa: TRY301  (one place for every way the decode can fail)
                    f"照片像素过多（{width}×{height}）/ the photo has too many pixels ({width}×{height})"
                )
            image.load()
    except ReferencePhotoError:
        raise
    except Image.DecompressionBombError as err:
        raise ReferencePhotoError("照片像素过多 / the photo has too many pixels") from err
    except UnidentifiedImageError as err:
        raise ReferencePhotoError(f"{kind} 文件已损坏，无法读取 / the {kind} file is damaged") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ReferencePhotoError(
            f"文件不完整或已损坏（可能复制或传输中断）/ the file is truncated or damaged ({kind})"
        ) from err
    return image


def problem_words(err: FaceImageError) -> str:
    """The organiser's words for a verifier refusal of a reference photo."""
    return PROBLEM_WORDS.get(err.problem, str(err))
