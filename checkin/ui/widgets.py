"""The kiosk's own widgets: step indicator, camera preview with an oval guide, signature pad, keypad."""

from __future__ import annotations

import tkinter as tk
from typing import TYPE_CHECKING, Any

import customtkinter as ctk
from PIL import Image, ImageTk

from checkin.flow.views import TOTAL_STEPS
from checkin.signature import Signature
from checkin.texts import Language, text
from checkin.ui import theme as th

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.ui.theme import Theme


def font(t: Theme, size: int, *, bold: bool = False) -> Any:  # noqa: ARG001 - t keeps call sites uniform
    """A CJK-capable font of `size` pixels."""
    return ctk.CTkFont(family=th.FONT_FAMILY, size=size, weight="bold" if bold else "normal")


def button(
    parent: Any, t: Theme, label: str, command: Callable[[], None], *, primary: bool = True, width: int = 360
) -> Any:
    """A touch-sized button (at least 15 mm tall)."""
    return ctk.CTkButton(
        parent,
        text=label,
        command=command,
        width=t.px(width),
        height=t.button_height,
        corner_radius=t.px(14),
        font=font(t, t.button_size, bold=primary),
        fg_color=th.PRIMARY if primary else th.SECONDARY,
        hover_color=th.PRIMARY_HOVER if primary else th.SECONDARY_HOVER,
        text_color="#FFFFFF" if primary else th.TEXT,
    )


def label(parent: Any, t: Theme, words: str, *, size: int, bold: bool = False, color: str = th.TEXT) -> Any:
    """A wrapping label."""
    return ctk.CTkLabel(
        parent,
        text=words,
        font=font(t, size, bold=bold),
        text_color=color,
        wraplength=t.width - t.px(160),
        justify="center",
    )


class StepIndicator:
    """Five numbered circles with their names; done steps are filled, the current one is ringed."""

    def __init__(self, parent: Any, t: Theme) -> None:
        self._t = t
        self.canvas = tk.Canvas(
            parent, width=t.px(640), height=t.px(96), bg=th.BAR, highlightthickness=0, borderwidth=0
        )

    def show(self, step: int | None, language: Language) -> None:
        """Draw the indicator for `step` (None hides it)."""
        c, t = self.canvas, self._t
        c.delete("all")
        if step is None:
            return
        slot = t.px(640) / TOTAL_STEPS
        r = t.px(20)
        y = t.px(30)
        for n in range(1, TOTAL_STEPS + 1):
            x = slot * (n - 0.5)
            if n < TOTAL_STEPS:
                c.create_line(x + r, y, x + slot - r, y, fill=th.PRIMARY if n < step else th.STEP_TODO, width=t.px(4))
            done_or_now = n <= step
            c.create_oval(
                x - r,
                y - r,
                x + r,
                y + r,
                fill=th.PRIMARY if done_or_now else th.BACKGROUND,
                outline=th.PRIMARY if done_or_now else th.STEP_TODO,
                width=t.px(4),
            )
            c.create_text(
                x,
                y,
                text=str(n),
                fill="#FFFFFF" if done_or_now else th.MUTED,
                font=(th.FONT_FAMILY, -t.px(22), "bold"),
            )
            c.create_text(
                x,
                y + r + t.px(22),
                text=text(f"step.{n}", language),
                fill=th.TEXT if n == step else th.MUTED,
                font=(th.FONT_FAMILY, -t.px(22 if language is Language.EN else 24), "bold" if n == step else "normal"),
            )


class CameraPreview:
    """Live preview with an oval face guide; frames are pulled from `frame_source` every ~66 ms via after()."""

    def __init__(self, parent: Any, t: Theme, frame_source: Callable[[], Image.Image | None] | None) -> None:
        self._t = t
        self.width, self.height = t.px(440), t.px(330)
        self.canvas = tk.Canvas(parent, width=self.width, height=self.height, bg="#20242A", highlightthickness=0)
        self._source = frame_source
        self._photo: ImageTk.PhotoImage | None = None
        self._after: str | None = None
        self._draw_guide()
        self._tick()

    def _draw_guide(self) -> None:
        w, h, t = self.width, self.height, self._t
        self.canvas.delete("guide")
        self.canvas.create_oval(
            w * 0.30,
            h * 0.12,
            w * 0.70,
            h * 0.88,
            outline="#FFFFFF",
            width=t.px(6),
            tags="guide",
            dash=(t.px(14), t.px(8)),
        )

    def show(self, frame: Image.Image) -> None:
        """Draw one frame (scaled to fill the preview, mirrored like a mirror) under the guide."""
        image = frame.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.resize((self.width, self.height))
        self._photo = ImageTk.PhotoImage(image)
        self.canvas.delete("frame")
        self.canvas.create_image(0, 0, image=self._photo, anchor="nw", tags="frame")
        self.canvas.tag_raise("guide")

    def _tick(self) -> None:
        if self._source is not None:
            frame = self._source()
            if frame is not None:
                self.show(frame)
        self._after = self.canvas.after(66, self._tick)

    def stop(self) -> None:
        """Stop pulling frames (the screen is going away)."""
        if self._after is not None:
            self.canvas.after_cancel(self._after)
            self._after = None


class SignaturePad:
    """A white Canvas the expert signs on with a finger; strokes go into a checkin.signature.Signature."""

    def __init__(self, parent: Any, t: Theme, width: int, height: int) -> None:
        self._t = t
        self.canvas = tk.Canvas(
            parent, width=width, height=height, bg="#FFFFFF", highlightthickness=t.px(3), highlightbackground=th.MUTED
        )
        self.signature = Signature(width, height)
        self._last: tuple[float, float] | None = None
        self.canvas.bind("<ButtonPress-1>", self._down)
        self.canvas.bind("<B1-Motion>", self._move)
        self.canvas.bind("<ButtonRelease-1>", self._up)
        # A faint baseline shows where to sign.
        self.canvas.create_line(
            t.px(30), height * 0.78, width - t.px(30), height * 0.78, fill="#C8CDD4", width=2, tags="baseline"
        )

    def _down(self, event: tk.Event[Any]) -> None:
        self.signature.begin_stroke(event.x, event.y)
        self._last = (event.x, event.y)

    def _move(self, event: tk.Event[Any]) -> None:
        self.signature.extend_stroke(event.x, event.y)
        if self._last is not None:
            x0, y0 = self._last
            self.canvas.create_line(
                x0, y0, event.x, event.y, width=self._t.px(5), fill="#000000", capstyle="round", smooth=True, tags="ink"
            )
        self._last = (event.x, event.y)

    def _up(self, _event: tk.Event[Any]) -> None:
        self._last = None

    def clear(self) -> None:
        """重写."""
        self.signature.clear()
        self.canvas.delete("ink")


class Keypad:
    """A 3x4 digit keypad; the digits stay in this widget (never in a view model) until submitted."""

    def __init__(
        self, parent: Any, t: Theme, language: Language, *, max_digits: int, masked: bool, on_change: Callable[[], None]
    ) -> None:
        self._t = t
        self._max = max_digits
        self._masked = masked
        self._on_change = on_change
        self.value = ""
        self.frame = ctk.CTkFrame(parent, fg_color="transparent")
        self.display = ctk.CTkLabel(
            self.frame,
            text=" ",
            font=ctk.CTkFont(family=th.FONT_FAMILY, size=t.px(40), weight="bold"),
            text_color=th.TEXT,
            fg_color=th.BAR,
            corner_radius=t.px(10),
            width=t.px(620),
            height=t.px(70),
        )
        self.display.grid(row=0, column=0, columnspan=5, pady=(0, t.px(8)))
        # Two rows of five digits and a row with 清空 / 删除: short enough to leave room for the
        # main line and the error on a 1280x800 screen with every key at least 15 mm tall.
        rows = [["1", "2", "3", "4", "5"], ["6", "7", "8", "9", "0"], ["clear", "delete"]]
        for r, keys in enumerate(rows, start=1):
            for c, key in enumerate(keys):
                words = text(f"card_type.{key}", language) if key in {"clear", "delete"} else key
                wide = key in {"clear", "delete"}
                ctk.CTkButton(
                    self.frame,
                    text=words,
                    width=t.px(150 * 2 + 12 if wide else 150),
                    height=t.px(88),
                    corner_radius=t.px(12),
                    font=ctk.CTkFont(family=th.FONT_FAMILY, size=t.px(36), weight="bold"),
                    fg_color=th.SECONDARY,
                    hover_color=th.SECONDARY_HOVER,
                    text_color=th.TEXT,
                    command=lambda k=key: self.press(k),
                ).grid(
                    row=r,
                    column=c * 2 if wide else c,
                    columnspan=2 if wide else 1,
                    padx=t.px(6),
                    pady=t.px(6),
                    sticky="w" if wide else "",
                )

    def press(self, key: str) -> None:
        """One key."""
        if key == "clear":
            self.value = ""
        elif key == "delete":
            self.value = self.value[:-1]
        elif len(self.value) < self._max:
            self.value += key
        self._render()
        self._on_change()

    def _render(self) -> None:
        if self._masked:
            shown = "●" * len(self.value)
        else:
            shown = " ".join(self.value[i : i + 4] for i in range(0, len(self.value), 4))
        self.display.configure(text=shown or " ")
