"""The real customtkinter UI under a private Xvfb: every screen renders, sizes follow the rules, the pad works."""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import threading
import tkinter.font
import weakref
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
    from collections.abc import Callable, Iterator

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


#: Every window the tests opened, kept until the process ends (see `open_window`).
_CLOSED_WINDOWS: list[KioskWindow] = []


@pytest.fixture
def open_window(display: str) -> Iterator[Callable[[Any], KioskWindow]]:
    """Opens kiosk windows for the test; afterwards destroys them and keeps them referenced.

    A Tk font's finaliser calls Tcl. Run by a garbage collection on another thread, with no Tk main
    loop in this process, it waits about a second for one and then gives up: a gRPC server thread of a
    later test in this process sat through such a collection and answered no call for tens of
    seconds. So what the test dropped is collected here, on the Tk thread, and the windows themselves
    (Tcl holds some of their objects out of the collector's sight, so they cannot all be collected
    here) stay referenced and are never finalised by another thread.
    """
    del display
    opened: list[KioskWindow] = []

    def open_one(actions: Any) -> KioskWindow:
        window = new_window(actions)
        opened.append(window)
        return window

    yield open_one
    close_windows(opened)


def new_window(actions: Any) -> KioskWindow:
    """A kiosk window the size of the screen, not full-screen, with a synthetic camera preview."""
    return KioskWindow(actions, width=1280, height=800, fullscreen=False, frame_source=synthetic_frame)


def close_windows(opened: list[KioskWindow]) -> None:
    """Destroy the windows, keep them referenced for the rest of the process, and collect here the
    widgets and fonts the test let go of (each screen change drops the last screen's): see `open_window`.
    """
    for window in opened:
        window.root.destroy()
    _CLOSED_WINDOWS.extend(opened)
    opened.clear()
    for _ in range(10):  # freeing some garbage can make more: until a pass finds none, within reason
        if not gc.collect():
            break


def test_every_screen_renders_in_both_languages_with_large_type_and_touch_targets(
    open_window: Callable[[Any], KioskWindow],
) -> None:
    window = open_window(NoActions())
    seen: set[Screen] = set()
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
    assert seen == set(Screen)


def test_signature_pad_refuses_an_empty_pad_and_sends_a_png_of_the_strokes(
    open_window: Callable[[Any], KioskWindow],
) -> None:
    k = make_kiosk()
    to_signature(k)
    window = open_window(k.flow)
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


def test_clear_empties_the_pad(open_window: Callable[[Any], KioskWindow]) -> None:
    k = make_kiosk()
    to_signature(k)
    window = open_window(k.flow)
    k.flow.add_listener(window)
    window.settle()
    draw_signature(window)
    _bar_button(window, "重写").invoke()
    _bar_button(window, "确认").invoke()
    window.settle()
    assert k.flow.view.error == "error.signature_empty"


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


def test_a_closed_window_is_never_finalised_by_another_threads_collection(display: str) -> None:
    del display
    opened = [new_window(NoActions())]
    opened[0].settle()
    freed_by: list[str] = []
    fonts = [o for o in gc.get_objects() if isinstance(o, tkinter.font.Font)]
    assert fonts, "the window made no Tk fonts"
    for font in fonts:
        weakref.finalize(font, lambda: freed_by.append(threading.current_thread().name))
    del fonts, font
    close_windows(opened)
    later = threading.Thread(target=gc.collect, name="a later collection")
    later.start()
    later.join(60)
    assert "a later collection" not in freed_by, "a Tk font was finalised off the Tk thread"
