"""The real customtkinter UI under a private Xvfb: every screen renders, sizes follow the rules, the pad works."""

from __future__ import annotations

import dataclasses
import io
import os
from typing import TYPE_CHECKING, Any

import customtkinter as ctk
import pytest
from PIL import Image

from checkin.flow.views import Screen
from checkin.texts import Language
from checkin.ui.window import KioskWindow
from scripts.screenshots import NoActions, draw_signature, sample_views, synthetic_frame, xvfb
from tests.unit.kiosk.fakes import make_kiosk
from tests.unit.kiosk.test_flow import to_signature

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(1280, 800) as name:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = name
        yield name
        if old is None:
            del os.environ["DISPLAY"]
        else:
            os.environ["DISPLAY"] = old


def _walk(widget: Any) -> Iterator[Any]:
    yield widget
    for child in widget.winfo_children():
        yield from _walk(child)


def _window(actions: Any) -> KioskWindow:
    return KioskWindow(actions, width=1280, height=800, fullscreen=False, frame_source=synthetic_frame)


def test_every_screen_renders_in_both_languages_with_large_type_and_touch_targets(display: str) -> None:
    window = _window(NoActions())
    seen: set[Screen] = set()
    try:
        for _name, view in sample_views():
            for lang in (Language.ZH, Language.EN):
                window.on_view(dataclasses.replace(view, language=lang))
                window.settle()
                seen.add(view.screen)
                for w in _walk(window.root):
                    if isinstance(w, ctk.CTkLabel) and w.cget("text").strip():
                        size = abs(w.cget("font").cget("size"))
                        assert size >= 28, f"{view.screen}: text {w.cget('text')!r} is {size} px"
                    if isinstance(w, ctk.CTkButton) and w.winfo_ismapped():
                        assert w.winfo_height() >= 88, f"{view.screen}: button {w.cget('text')!r} is too small"
                # Nothing the expert must read or touch is pushed off the screen by the content above it.
                content_bottom = window.content.winfo_rooty() + window.content.winfo_height()
                for w in _walk(window.content):
                    if isinstance(w, ctk.CTkLabel | ctk.CTkButton) and w.winfo_ismapped() and w.cget("text").strip():
                        assert w.winfo_rooty() + w.winfo_height() <= content_bottom + 2, (
                            f"{view.screen} ({lang}): {w.cget('text')!r} is clipped"
                        )
    finally:
        window.root.destroy()
    assert seen == set(Screen)


def test_signature_pad_refuses_an_empty_pad_and_sends_a_png_of_the_strokes(display: str) -> None:
    k = make_kiosk()
    to_signature(k)
    window = _window(k.flow)
    try:
        k.flow.add_listener(window)
        window.settle()
        assert window.view is not None
        assert window.view.screen is Screen.SIGNATURE
        confirm = _bar_button(window, "确认")
        confirm.invoke()
        window.settle()
        assert k.flow.view.error == "error.signature_empty"
        assert any(getattr(w, "cget", None) and _text(w) == "请先签名" for w in _walk(window.content)), (
            "the error is shown on the screen"
        )
        draw_signature(window)
        window.settle()
        _bar_button(window, "确认").invoke()
        window.settle()
        assert k.screen == "dispensing"
        k.settle()
        png = k.platform.complete_requests[0].signature_png
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        dark = sum(1 for p in image.convert("L").tobytes() if p < 128)
        assert dark > 200  # the strokes drawn on the pad are in the PNG
    finally:
        window.root.destroy()


def test_clear_empties_the_pad(display: str) -> None:
    k = make_kiosk()
    to_signature(k)
    window = _window(k.flow)
    try:
        k.flow.add_listener(window)
        window.settle()
        draw_signature(window)
        _bar_button(window, "重写").invoke()
        _bar_button(window, "确认").invoke()
        window.settle()
        assert k.flow.view.error == "error.signature_empty"
    finally:
        window.root.destroy()


def _text(widget: Any) -> str:
    try:
        return str(widget.cget("text"))
    except Exception:
        return ""


def _bar_button(window: KioskWindow, words: str) -> Any:
    for w in _walk(window.bottom):
        if isinstance(w, ctk.CTkButton) and w.cget("text") == words:
            return w
    raise AssertionError(f"no {words!r} button in the bottom bar")
