"""Platform face-verification latency against the bare dlib encoding floor, measured in the same run.

Typical kiosk captures (640×480 JPEG, face about 40% of the width) are made from the shared face
images. Each round times, interleaved so that machine load affects both alike:
  verify  - DlibFaceVerifier.verify(reference, [capture]): decode, detect, landmarks, encode, compare;
  floor   - face_recognition.face_encodings(decoded image, known_face_locations=[box]): the bare
            128-d encoding of an already-detected face, the cost no verification can go below;
and, for the breakdown, the decode and detection stages alone.

    .venv/bin/python bench/face_speed.py [--faces DIR] [--rounds N]

Last line: ratio_verify_vs_encode_floor=<median verify / median floor>.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from pathlib import Path
from typing import Annotated

import cv2
import typer
from PIL import Image

from platform_server.face.dlib_verifier import WORK_MAX_SIDE, DlibFaceVerifier
from platform_server.face.image_decoding import RgbImage, decode_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
    import face_recognition

DEFAULT_FACES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces"
CAPTURE_SIZE = (640, 480)
FACE_WIDTH_SHARE = 0.4  # a kiosk capture framed by the oval guide
SOURCE_IMAGES = ("obama_1.jpg", "biden_1.jpg", "kit_harington_3.jpg", "rose_leslie_1.jpg", "clapton_1.jpg")


def make_capture(verifier: DlibFaceVerifier, path: Path) -> bytes:
    """A 640×480 JPEG framed around the one face of a shared photo, as the kiosk would send it."""
    rgb = decode_image(path.read_bytes(), max_bytes=1 << 26, max_pixels=1 << 27, work_max_side=4096)
    left, top, right, bottom = verifier.detect(rgb)
    width = (right - left) / FACE_WIDTH_SHARE
    height = width * CAPTURE_SIZE[1] / CAPTURE_SIZE[0]
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # Reflect-pad so that a face near the photo's edge still gets a full 4:3 window.
    pad = int(max(width, height))
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    x0, y0 = round(cx - width / 2) + pad, round(cy - height / 2) + pad
    window = padded[y0 : y0 + round(height), x0 : x0 + round(width)]
    frame = cv2.resize(window, CAPTURE_SIZE, interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timed_ms(function: object, *args: object) -> float:
    """Wall time of one call, in milliseconds."""
    start = time.perf_counter()
    function(*args)  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000


def summary(name: str, samples: list[float]) -> str:
    """Median, 10th and 90th percentile of a list of milliseconds."""
    deciles = statistics.quantiles(samples, n=10)
    return f"{name:<34} median {statistics.median(samples):7.1f} ms   p10 {deciles[0]:7.1f}   p90 {deciles[-1]:7.1f}"


def main(
    faces: Annotated[Path, typer.Option(help="folder of the shared face images")] = DEFAULT_FACES,
    rounds: Annotated[int, typer.Option(min=3, help="timed rounds over all captures")] = 6,
) -> None:
    """Print verify latency, its stages, the encoding floor and their ratio."""
    verifier = DlibFaceVerifier()
    captures = [make_capture(verifier, faces / name) for name in SOURCE_IMAGES]
    references = [verifier.encode_reference((faces / name).read_bytes()) for name in SOURCE_IMAGES]
    decoded = [decode_image(c, max_bytes=1 << 24, max_pixels=1 << 24, work_max_side=WORK_MAX_SIDE) for c in captures]
    boxes = [verifier.detect(rgb) for rgb in decoded]
    # face_recognition takes (top, right, bottom, left)
    locations = [[(top, right, bottom, left)] for left, top, right, bottom in boxes]

    def decode(capture: bytes) -> None:
        decode_image(capture, max_bytes=1 << 24, max_pixels=1 << 24, work_max_side=WORK_MAX_SIDE)

    def floor(rgb: RgbImage, location: list[tuple[int, int, int, int]]) -> None:
        face_recognition.face_encodings(rgb, known_face_locations=location, num_jitters=1)

    samples: dict[str, list[float]] = {"verify": [], "verify3": [], "decode": [], "detect": [], "floor": []}
    for _ in range(2):  # warm-up: first calls allocate dlib's network buffers
        verifier.verify(references[0], [captures[0]])
        floor(decoded[0], locations[0])
    for _ in range(rounds):
        for index, capture in enumerate(captures):
            samples["verify"].append(timed_ms(verifier.verify, references[index], [capture]))
            samples["floor"].append(timed_ms(floor, decoded[index], locations[index]))
            samples["decode"].append(timed_ms(decode, capture))
            samples["detect"].append(timed_ms(verifier.detect, decoded[index]))
        samples["verify3"].append(timed_ms(verifier.verify, references[0], captures[:1] * 3))

    print(f"captures: {len(captures)} × {CAPTURE_SIZE[0]}×{CAPTURE_SIZE[1]} JPEG, {rounds} rounds")
    print(f"jpeg sizes: {', '.join(f'{len(c) // 1024} KiB' for c in captures)}")
    print(summary("decode (Pillow, bounded)", samples["decode"]))
    print(summary("detect (HOG, downscaled copy)", samples["detect"]))
    print(summary("floor: bare dlib encoding", samples["floor"]))
    print(summary("verify: 1 capture, end to end", samples["verify"]))
    print(summary("verify: 3 captures, end to end", samples["verify3"]))
    ratio = statistics.median(samples["verify"]) / statistics.median(samples["floor"])
    print(f"ratio_verify_vs_encode_floor={ratio:.2f}")


if __name__ == "__main__":
    typer.run(main)
