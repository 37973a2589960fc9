"""A signature as strokes, its emptiness rule, and its PNG export (Pillow), with no GUI import.

The signature pad widget feeds points in pad coordinates; the flow asks `is_blank()` and, when the
expert confirms, `to_png()`. A dot or a short scratch is treated as blank: a signature needs some
length of ink, so an accidental tap cannot be submitted as consent.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

# Total ink, in pad pixels, below which a pad counts as empty (a tap or a tiny scratch).
MIN_INK_PX = 60.0
STROKE_WIDTH_PX = 4
MAX_PNG_BYTES = 200_000  # well under the platform's limit; a 1-bit-like greyscale pad is ~10 kB


class SignatureTooLargeError(ValueError):
    """The exported PNG would exceed MAX_PNG_BYTES."""


@dataclass
class Signature:
    """Strokes drawn on a pad of `width` x `height` pixels."""

    width: int
    height: int
    strokes: list[list[tuple[float, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"signature pad size must be positive, not {self.width}x{self.height}")

    def begin_stroke(self, x: float, y: float) -> None:
        """Finger down."""
        self.strokes.append([self._clamp(x, y)])

    def extend_stroke(self, x: float, y: float) -> None:
        """Finger moved (starts a stroke if none is open)."""
        if not self.strokes:
            self.begin_stroke(x, y)
            return
        self.strokes[-1].append(self._clamp(x, y))

    def clear(self) -> None:
        """重写: drop every stroke."""
        self.strokes.clear()

    def ink_length(self) -> float:
        """Total length of all strokes in pad pixels."""
        total = 0.0
        for stroke in self.strokes:
            for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
                total += math.hypot(x1 - x0, y1 - y0)
        return total

    def is_blank(self) -> bool:
        """True when there is too little ink to be a signature."""
        return self.ink_length() < MIN_INK_PX

    def to_png(self) -> bytes:
        """Black strokes on white, greyscale PNG of the pad's size."""
        image = Image.new("L", (self.width, self.height), 255)
        draw = ImageDraw.Draw(image)
        for stroke in self.strokes:
            if len(stroke) == 1:
                x, y = stroke[0]
                r = STROKE_WIDTH_PX / 2
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
            else:
                draw.line(stroke, fill=0, width=STROKE_WIDTH_PX, joint="curve")
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        data = out.getvalue()
        if len(data) > MAX_PNG_BYTES:
            raise SignatureTooLargeError(f"signature PNG is {len(data)} bytes, over {MAX_PNG_BYTES}")
        return data

    def _clamp(self, x: float, y: float) -> tuple[float, float]:
        return (min(max(x, 0.0), self.width - 1.0), min(max(y, 0.0), self.height - 1.0))
