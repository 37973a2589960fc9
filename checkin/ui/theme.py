"""Sizes, colours and fonts for the touch screen, scaled from the 1280x800 reference layout.

Rules from self-service terminal practice (docs/user-guide.md): body text at least 28 px and the
main line at least 40 px at 1280x800; touch targets at least 15 mm with 10 mm between them. On a
10.1" 1280x800 panel (about 150 px per inch) 15 mm is about 88 px, so buttons here are 96 px or
taller and 60 px apart, and everything grows with the screen height.
"""

from __future__ import annotations

from dataclasses import dataclass

FONT_FAMILY = "Noto Sans CJK SC"
REFERENCE_HEIGHT = 800

# High-contrast palette (dark text on white, white text on a deep blue).
BACKGROUND = "#FFFFFF"
BAR = "#F1F4F8"
TEXT = "#111111"
MUTED = "#4A4F57"
PRIMARY = "#0B4F9C"
PRIMARY_HOVER = "#093F7D"
SECONDARY = "#E3E8EF"
SECONDARY_HOVER = "#D1D9E4"
DANGER = "#B00020"
SUCCESS = "#1B7F3A"
STEP_TODO = "#B8C0CC"
OVERLAY = "#FFF7E0"


@dataclass(frozen=True, slots=True)
class Theme:
    """Pixel sizes for one screen size."""

    width: int
    height: int
    scale: float

    @classmethod
    def for_size(cls, width: int, height: int) -> Theme:
        """Scale from the 1280x800 reference by height (the tighter dimension on kiosk panels)."""
        return cls(width=width, height=height, scale=height / REFERENCE_HEIGHT)

    def px(self, value: float) -> int:
        """A reference-layout size in this screen's pixels."""
        return round(value * self.scale)

    @property
    def main_size(self) -> int:
        """Main line: 44 px at 800 (rule: at least 40)."""
        return self.px(44)

    @property
    def body_size(self) -> int:
        """Body text: 30 px at 800 (rule: at least 28)."""
        return self.px(30)

    @property
    def small_size(self) -> int:
        """The smallest text anywhere: 28 px at 800."""
        return self.px(28)

    @property
    def button_size(self) -> int:
        """Button labels."""
        return self.px(34)

    @property
    def button_height(self) -> int:
        """Touch target height: 96 px at 800 (about 16 mm on a 10.1-inch panel)."""
        return self.px(96)

    @property
    def gap(self) -> int:
        """Space between touch targets: 60 px at 800 (about 10 mm)."""
        return self.px(60)

    @property
    def bar_height(self) -> int:
        """Top bar; the bottom bar is this plus a little, to hold a 96 px button with margins."""
        return self.px(112)
