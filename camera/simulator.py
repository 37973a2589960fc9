"""The camera simulator: synthetic camera clips for demos, tests and the scenario runner.

`make_clip` turns one photo into what a kiosk camera would see: a live person who blinks, a still
photo held up to the camera (no blink), or a scene without a face. The result is an image folder or
a video file that `OpenCvCamera` plays like a camera.

The blink is synthesised: for the closed frames the eye regions found by the 68 landmarks are
covered with the skin colour from just below them, and the frames in between are blended. It is
not a real eyelid, and it is honest to say so: see docs/face.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np
import numpy.typing as npt

from camera.errors import SyntheticClipError
from camera.face_finder import FaceFinder
from camera.landmarks import JAW_LEFT_END, JAW_RIGHT_END, LEFT_EYE, NOSE_TIP, RIGHT_EYE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from camera.models import BgrImage

VIDEO_CODECS: Final = {".avi": "MJPG", ".mp4": "mp4v"}
OTHER_VIDEO_SUFFIXES: Final = frozenset({".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
FACE_SHARE: Final = 0.4  # face width / frame width in a framed clip: comfortably inside every gate
BLINK_PROFILE: Final = (0.5, 1.0, 1.0, 1.0, 0.5)  # eyelid closure per frame: about 330 ms at 15 fps
FIRST_BLINK_S: Final = 1.2  # after the open-eye level is known
BLINK_EVERY_S: Final = 2.0
# Head turns (clips with turns=True), so a clip does whichever challenge the kiosk asks, twice in
# every 4 s (60 frames at 15 fps, the scenario clips' loop): to the person's left at 0.45 and 2.25 s,
# to their right at 1.65 and 2.75 s, around the blinks at 1.2 and 3.2 s. Each is a ramp up, a hold and
# a ramp down (about 330 ms at 15 fps), with at least two neutral frames between actions, so a kiosk
# that drops frames under load still sees the head come back, and has a second chance in its deadline.
TURN_PROFILE: Final = (0.5, 1.0, 1.0, 1.0, 0.5)
TURN_PERIOD_S: Final = 4.0
# (start in the period, side: +1 the person's left)
TURNS: Final = ((0.45, 1.0), (1.65, -1.0), (2.25, 1.0), (2.75, -1.0))
# How far a full turn shifts the nose sideways, in jaw widths (the jaw's ends stay):
# the landmarks' yaw cue moves by 0.2-0.35 (about 0.3 for a real head turned some 25 degrees).
TURN_SHIFT: Final = 0.22


def make_clip(
    image_path: Path | str,
    out: Path | str,
    blink: bool = True,
    frames: int = 60,
    *,
    turns: bool | None = None,
    fps: float = 15.0,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    finder: FaceFinder | None = None,
) -> Path:
    """Write a camera clip of a photo to out (a folder, or a .avi/.mp4 file) and return its path.

    One face in the photo: the frame is centred on it (face 40% of the width). blink=True makes the
    eyes close and reopen at 1.2 s and every 2 s after; turns (default: as blink) adds a head turn to
    the person's left at 0.45 and 2.25 s and to the right at 1.65 and 2.75 s, every 4 s; blink=False
    is a still photo. Every frame gets a little sensor noise and hand shake, as a photo held up to a
    camera would. A photo with no face or several faces is shown whole (blink must then be False).

    Raises:
        SyntheticClipError: unreadable image, blink asked for without exactly one face, bad out.

    """
    if frames < 1:
        raise SyntheticClipError(f"a clip needs at least 1 frame, got {frames}")
    path = Path(image_path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SyntheticClipError(f"cannot read the image {path}")
    finder = finder or FaceFinder()
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes = finder.find_faces(np.asarray(grey, dtype=np.uint8))
    if len(boxes) == 1:
        box = boxes[0]
        scene = _frame_around(np.asarray(image, dtype=np.uint8), box.centre, box.width / FACE_SHARE, size)
    else:
        if blink:
            raise SyntheticClipError(f"{path.name} shows {len(boxes)} faces; a blinking clip needs exactly one")
        scene = _frame_around(np.asarray(image, dtype=np.uint8), None, None, size)
    closed = _closed_eyes(scene, finder) if blink else scene
    closure = _closure_schedule(frames, fps) if blink else [0.0] * frames
    turning = _turn_schedule(frames, fps) if (blink if turns is None else turns) else [0.0] * frames
    face_box = _scene_face(scene, finder) if any(turning) else None
    rng = np.random.default_rng(seed)
    rendered = (
        _camera_noise(_turn_head(_blend(scene, closed, amount), face_box, turn), rng)
        for amount, turn in zip(closure, turning, strict=True)
    )
    return _write(rendered, Path(out), fps, size)


def turn_head(image: BgrImage, amount: float, finder: FaceFinder | None = None) -> BgrImage:
    """The image with its one face turned: amount > 0 to the person's left (the picture's right), 1 full."""
    return _turn_head(image, _scene_face(image, finder or FaceFinder()), amount)


_Head = tuple[float, float, float, float, float]  # jaw's left end x, nose x, jaw's right end x, top, bottom


def _scene_face(scene: BgrImage, finder: FaceFinder) -> _Head:
    grey = np.asarray(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    boxes = finder.find_faces(grey)
    if len(boxes) != 1:
        raise SyntheticClipError(f"the framed clip shows {len(boxes)} faces; a turning clip needs exactly one")
    points = finder.landmarks(grey, boxes[0])
    return (
        float(points[JAW_RIGHT_END][0]),
        float(points[NOSE_TIP][0]),
        float(points[JAW_LEFT_END][0]),
        boxes[0].top,
        boxes[0].bottom,
    )


def _turn_head(image: BgrImage, head: _Head | None, amount: float) -> BgrImage:
    """A 2-D stand-in for a head turn: the nose slides toward one jaw end while the jaw's ends stay.

    Each row of the head's region is resampled with a sideways shift that is largest at the nose and
    zero at the jaw's ends, feathered above and below: what the landmarks see of a real turn (the
    nose moves toward one end of the jaw), not a 3-D rotation; see docs/face.md.
    """
    if head is None or amount == 0.0:
        return image
    jaw_left, nose, jaw_right, top, bottom = head
    height, width = image.shape[:2]
    span = max(jaw_right - jaw_left, 1.0)
    # Toward the picture's right for amount > 0; never more than 60% of the way to that jaw end.
    room = (jaw_right - nose) if amount > 0 else (nose - jaw_left)
    shift_at_nose = amount * min(TURN_SHIFT * span, 0.6 * max(room, 0.0))
    xs = np.arange(width, dtype=np.float32)
    rising = np.clip((xs - jaw_left) / max(nose - jaw_left, 1.0), 0.0, 1.0)
    falling = np.clip((jaw_right - xs) / max(jaw_right - nose, 1.0), 0.0, 1.0)
    bump = np.sin(0.5 * np.pi * np.where(xs <= nose, rising, falling)).astype(np.float32)
    ys = np.arange(height, dtype=np.float32)
    centre_y, half = (top + bottom) / 2, 1.1 * (bottom - top)
    rows = np.clip(1.5 - np.abs(ys - centre_y) / half * 1.5, 0.0, 1.0).astype(np.float32)
    shift = shift_at_nose * rows[:, None] * bump[None, :]
    map_x = (xs[None, :] - shift).astype(np.float32)
    map_y = np.repeat(ys[:, None], width, axis=1).astype(np.float32)
    return np.asarray(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), dtype=np.uint8)


def make_no_face_clip(
    out: Path | str, frames: int = 30, *, fps: float = 15.0, size: tuple[int, int] = (640, 480)
) -> Path:
    """Write a clip of an empty lobby (a plain wall and a doorway): a camera that sees nobody."""
    width, height = size
    wall = np.zeros((height, width, 3), dtype=np.uint8)
    wall[:] = np.linspace(150, 200, width, dtype=np.uint8)[None, :, None]
    cv2.rectangle(wall, (width // 3, height // 4), (width // 2, height), (90, 100, 110), -1)
    rng = np.random.default_rng(0)
    return _write((_camera_noise(wall, rng) for _ in range(frames)), Path(out), fps, size)


def close_eyes(image: BgrImage, points: npt.NDArray[np.float64]) -> BgrImage:
    """The image with both eyes (68-landmark points) covered by the skin colour just below them: eyes shut.

    A flat, feathered patch of cheek colour: inpainting from the patch border was tried first, but it
    pulls in the brows and the socket's shadow, which still read as an open eye.
    """
    height, width = image.shape[:2]
    out = image.astype(np.float32)
    for eye in (points[RIGHT_EYE], points[LEFT_EYE]):
        x0, x1 = float(eye[:, 0].min()), float(eye[:, 0].max())
        eye_width = max(x1 - x0, 1.0)
        cy = float(eye[:, 1].mean())
        cheek = image[
            int(max(0, cy + 0.45 * eye_width)) : int(min(height, cy + 0.75 * eye_width)),
            int(max(0, x0)) : int(min(width, x1)),
        ].reshape(-1, 3)
        if cheek.size == 0:
            raise SyntheticClipError("the eyes are too close to the edge of the picture to close them")
        skin = np.median(cheek, axis=0).astype(np.float32)
        mask = np.zeros((height, width), dtype=np.float32)
        axes = (max(1, int(0.62 * eye_width)), max(1, int(0.32 * eye_width)))
        cv2.ellipse(mask, (int((x0 + x1) / 2), int(cy)), axes, 0, 0, 360, 1.0, -1)
        feathered = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.08 * eye_width))[..., None]
        out = feathered * skin[None, None, :] + (1.0 - feathered) * out
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def _closed_eyes(scene: BgrImage, finder: FaceFinder) -> BgrImage:
    grey = np.asarray(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    boxes = finder.find_faces(grey)
    if len(boxes) != 1:
        raise SyntheticClipError(f"the framed clip shows {len(boxes)} faces; a blinking clip needs exactly one")
    return close_eyes(scene, finder.landmarks(grey, boxes[0]))


def _closure_schedule(frames: int, fps: float) -> list[float]:
    closure = [0.0] * frames
    start = FIRST_BLINK_S
    while (first := round(start * fps)) < frames:
        for offset, amount in enumerate(BLINK_PROFILE):
            if first + offset < frames:
                closure[first + offset] = amount
        start += BLINK_EVERY_S
    return closure


def _turn_schedule(frames: int, fps: float) -> list[float]:
    turn = [0.0] * frames
    period = 0.0
    while round(period * fps) < frames:
        for start, side in TURNS:
            first = round((period + start) * fps)
            for offset, amount in enumerate(TURN_PROFILE):
                if 0 <= first + offset < frames:
                    turn[first + offset] = side * amount
        period += TURN_PERIOD_S
    return turn


def _frame_around(
    image: BgrImage, centre: tuple[float, float] | None, window_width: float | None, size: tuple[int, int]
) -> BgrImage:
    """A size-shaped window of image around centre (whole image if None), padded by reflection."""
    height, width = image.shape[:2]
    aspect = size[1] / size[0]
    if centre is None or window_width is None:
        window_width = min(width, height / aspect)
        centre = (width / 2, height / 2)
    window_height = window_width * aspect
    pad = int(max(window_width, window_height))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    x0 = round(centre[0] - window_width / 2) + pad
    y0 = round(centre[1] - window_height / 2) + pad
    window = padded[y0 : y0 + round(window_height), x0 : x0 + round(window_width)]
    interpolation = cv2.INTER_AREA if window.shape[1] > size[0] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(window, size, interpolation=interpolation), dtype=np.uint8)


def _blend(open_eyes: BgrImage, closed: BgrImage, amount: float) -> BgrImage:
    if amount <= 0.0:
        return open_eyes
    if amount >= 1.0:
        return closed
    return np.asarray(cv2.addWeighted(open_eyes, 1.0 - amount, closed, amount, 0.0), dtype=np.uint8)


def _camera_noise(image: BgrImage, rng: np.random.Generator) -> BgrImage:
    """Sensor noise and a sub-pixel shake, so no two frames are identical (as with a real camera)."""
    dx, dy = rng.uniform(-1.0, 1.0, size=2)
    shifted = cv2.warpAffine(
        image,
        np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32),
        (image.shape[1], image.shape[0]),
        borderMode=cv2.BORDER_REFLECT,
    )
    noise = rng.standard_normal(size=image.shape, dtype=np.float32) * 2.0
    return np.asarray(np.clip(shifted + noise, 0, 255), dtype=np.uint8)


def _write(frames_iter: Iterator[BgrImage], out: Path, fps: float, size: tuple[int, int]) -> Path:
    suffix = out.suffix.lower()
    if suffix in VIDEO_CODECS:
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*VIDEO_CODECS[suffix]), fps, size)
        if not writer.isOpened():
            raise SyntheticClipError(f"OpenCV cannot write {suffix} video to {out}")
        try:
            for frame in frames_iter:
                writer.write(frame)
        finally:
            writer.release()
        return out
    if suffix in OTHER_VIDEO_SUFFIXES:
        raise SyntheticClipError(f"clip output {out} must be a folder or a {'/'.join(VIDEO_CODECS)} file")
    out.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames_iter):
        if not cv2.imwrite(str(out / f"frame_{index:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise SyntheticClipError(f"cannot write frames into {out}")
    return out
