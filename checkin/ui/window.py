"""The kiosk window: top bar (title, step indicator, language and voice), content, bottom bar, countdown.

It is a flow listener: every view model the flow publishes is rendered by the renderer for its
screen key. It also provides the Tk side of the flow's ports: a Scheduler built on after(), and the
pump that drains the worker's CallbackInbox on the Tk thread.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import customtkinter as ctk

from checkin.flow.views import HomeView, RefusalView, Screen, View
from checkin.texts import Language, text
from checkin.ui import theme as th
from checkin.ui.screens import RENDERERS, FlowActions, Renderer, UiContext
from checkin.ui.widgets import StepIndicator, button, font

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

    from checkin.flow.runtime import CallbackInbox

log = logging.getLogger(__name__)

# The hidden staff gesture: hold the top-left corner of home or out-of-service for this long.
STAFF_HOLD_MS = 3000
_INBOX_POLL_MS = 20


class _AfterTimer:
    def __init__(self, widget: Any, after_id: str) -> None:
        self._widget = widget
        self._id: str | None = after_id

    def cancel(self) -> None:
        if self._id is not None:
            try:
                self._widget.after_cancel(self._id)
            except Exception as err:  # the window is already gone
                log.debug("after_cancel: %s", type(err).__name__)
            self._id = None


class TkScheduler:
    """The flow's Scheduler on the Tk thread: timers are after() callbacks."""

    def __init__(self, widget: Any) -> None:
        self._widget = widget

    def call_later(self, delay: float, callback: Callable[[], None]) -> _AfterTimer:
        """Run callback on the Tk thread after `delay` seconds."""
        return _AfterTimer(self._widget, self._widget.after(max(0, round(delay * 1000)), callback))

    def now(self) -> dt.datetime:
        """Wall-clock time."""
        return dt.datetime.now(dt.UTC)


class KioskWindow:
    """Full-screen customtkinter window rendering the flow's views."""

    def __init__(
        self,
        actions: FlowActions,
        *,
        width: int = 1280,
        height: int = 800,
        fullscreen: bool = True,
        frame_source: Callable[[], Image.Image | None] | None = None,
        root: Any | None = None,
    ) -> None:
        ctk.set_appearance_mode("light")
        ctk.set_widget_scaling(1.0)
        ctk.set_window_scaling(1.0)
        self.root = root if root is not None else ctk.CTk(fg_color=th.BACKGROUND)
        self.root.title(text("app.title", _zh()))
        self.root.geometry(f"{width}x{height}+0+0")
        if fullscreen:
            self.root.attributes("-fullscreen", True)  # noqa: FBT003 - Tk's API
        self.actions = actions
        self.theme = th.Theme.for_size(width, height)
        self.ctx = UiContext(theme=self.theme, actions=actions, frame_source=frame_source)
        self.renderer: Renderer | None = None
        self.view: View | None = None
        self._hold: str | None = None
        t = self.theme

        self.top = ctk.CTkFrame(self.root, fg_color=th.BAR, corner_radius=0, height=t.bar_height)
        self.top.pack(side="top", fill="x")
        self.top.pack_propagate(flag=False)
        self.title = ctk.CTkLabel(self.top, text="", font=font(t, t.small_size, bold=True), text_color=th.TEXT)
        self.title.pack(side="left", padx=t.px(24))
        self.toggles = ctk.CTkFrame(self.top, fg_color="transparent")
        self.toggles.pack(side="right", padx=t.px(16))
        self.steps = StepIndicator(self.top, t)
        self.steps.canvas.pack(side="top", pady=t.px(6))

        self.bottom = ctk.CTkFrame(self.root, fg_color=th.BAR, corner_radius=0, height=t.bar_height + t.px(12))
        self.bottom.pack(side="bottom", fill="x")
        self.bottom.pack_propagate(flag=False)

        self.content = ctk.CTkFrame(self.root, fg_color=th.BACKGROUND, corner_radius=0)
        self.content.pack(side="top", fill="both", expand=True)
        self.overlay: Any = None

        # Any press anywhere counts as activity for the inactivity timer.
        self.root.bind_all("<ButtonPress>", lambda _e: self.actions.touch(), add="+")
        # The staff gesture: a long press on the title (top-left corner).
        self.title.bind("<ButtonPress-1>", self._hold_start, add="+")
        self.title.bind("<ButtonRelease-1>", self._hold_end, add="+")

    # ---- wiring ----------------------------------------------------------------------------------------

    def scheduler(self) -> TkScheduler:
        """The Scheduler port for the flow."""
        return TkScheduler(self.root)

    def pump(self, inbox: CallbackInbox) -> None:
        """Drain the worker's inbox on the Tk thread, now and every 20 ms."""
        inbox.drain()
        self.root.after(_INBOX_POLL_MS, lambda: self.pump(inbox))

    def _hold_start(self, _event: object) -> None:
        if self.view is not None and self.view.screen in {Screen.HOME, Screen.OUT_OF_SERVICE}:
            self._hold = self.root.after(STAFF_HOLD_MS, self._held)

    def _hold_end(self, _event: object) -> None:
        if self._hold is not None:
            self.root.after_cancel(self._hold)
            self._hold = None

    def _held(self) -> None:
        self._hold = None
        self.actions.staff_gesture()

    # ---- rendering ---------------------------------------------------------------------------------

    def on_view(self, view: View) -> None:
        """Render a view model (the FlowListener interface); an identical view changes nothing."""
        previous = self.view
        if previous is not None and view == previous and self.renderer is not None:
            # Heartbeats republish the home view unchanged every few seconds. Rebuilding its widgets
            # then would swallow a tap that lands across the rebuild (press on the old 登记办理
            # button, release on the new one): seen as a lost tap under Xvfb.
            return
        self.view = view
        if (
            self.renderer is None
            or previous is None
            or previous.screen is not view.screen
            or (previous.language is not view.language)
        ):
            if self.renderer is not None:
                self.renderer.destroy()
            self.renderer = RENDERERS[view.screen](self.ctx, self.content)
        self.renderer.render(view)
        self._top_bar(view)
        self._bottom_bar(view)
        self._countdown(view)

    def _top_bar(self, view: View) -> None:
        t, lang = self.theme, view.language
        self.title.configure(text=text("app.title", lang))
        step = view.step_shown if isinstance(view, RefusalView) else view.step
        self.steps.show(step, lang)
        for child in self.toggles.winfo_children():
            child.destroy()
        speech = text("button.speech_on" if view.speech_on else "button.speech_off", lang)
        button(self.toggles, t, speech, self.actions.toggle_speech, primary=False, width=190).pack(
            side="right", padx=t.px(8), pady=t.px(12)
        )
        if isinstance(view, HomeView):
            button(
                self.toggles, t, text("button.language", lang), self.actions.toggle_language, primary=False, width=190
            ).pack(side="right", padx=t.px(8), pady=t.px(8))

    def _bottom_bar(self, view: View) -> None:
        t, lang = self.theme, view.language
        for child in self.bottom.winfo_children():
            child.destroy()
        if view.can_cancel:
            button(
                self.bottom, t, text("button.cancel", lang), self.actions.press_cancel, primary=False, width=260
            ).pack(side="left", padx=t.px(40), pady=t.px(10))
        items = self.renderer.bar_buttons(view) if self.renderer is not None else []
        for i, item in enumerate(reversed(items)):
            # The rightmost button gets the margin; each one to its left stands 10 mm (gap) away.
            button(self.bottom, t, item.label, item.command, primary=item.primary, width=300).pack(
                side="right", padx=(0, t.px(40) if i == 0 else t.gap), pady=t.px(10)
            )
        # A screen with nothing in the bar (home, waiting screens) gives the space to its content.
        if view.can_cancel or items:
            self.bottom.pack(side="bottom", fill="x", before=self.content)
        else:
            self.bottom.pack_forget()

    def _countdown(self, view: View) -> None:
        t, lang = self.theme, view.language
        if self.overlay is not None:
            self.overlay.destroy()
            self.overlay = None
        if view.countdown is None:
            return
        self.overlay = ctk.CTkFrame(
            self.root, fg_color=th.OVERLAY, corner_radius=t.px(20), border_width=t.px(4), border_color=th.PRIMARY
        )
        self.overlay.place(relx=0.5, rely=0.5, anchor="center", relwidth=0.78, relheight=0.56)
        ctk.CTkLabel(self.overlay, text=text("countdown.title", lang), font=font(t, t.main_size, bold=True)).pack(
            pady=(t.px(40), t.px(10))
        )
        ctk.CTkLabel(
            self.overlay,
            text=text("countdown.body", lang, seconds=view.countdown),
            font=font(t, t.body_size),
            wraplength=int(t.width * 0.7),
        ).pack(pady=t.px(10))
        button(self.overlay, t, text("countdown.continue", lang), self.actions.touch, width=360).pack(pady=t.px(24))

    # ---- running -----------------------------------------------------------------------------------

    def settle(self) -> None:
        """Process pending Tk events and redraws (for screenshots and tests)."""
        self.root.update_idletasks()
        self.root.update()

    def run(self) -> None:
        """Enter the Tk main loop."""
        self.root.mainloop()


def _zh() -> Language:
    return Language.ZH
