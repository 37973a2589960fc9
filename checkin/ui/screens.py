"""One renderer per screen key. Renderers only draw view models and forward touches to the flow's actions.

A renderer builds its widgets into the content frame and names the buttons for the bottom bar
(the window puts 取消 on the left and these on the right). Renderers with state the flow must not
hold (the camera preview, the signature strokes, the typed digits) keep their widgets when a new
view of the same screen arrives and only update their labels.
"""

from __future__ import annotations

import functools
import tkinter as tk
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import customtkinter as ctk
from typing_extensions import override

from checkin.flow.views import (
    BandProblemView,
    CardConfirmView,
    CardInsertView,
    CardOnFileView,
    DoneView,
    FaceView,
    HomeView,
    OutOfServiceView,
    RefusalView,
    RoomPendingView,
    Screen,
    SignatureView,
    StaffMenuView,
    StaffPinView,
    VerifyingView,
    View,
)
from checkin.texts import TEXTS, Language, text
from checkin.ui import theme as th
from checkin.ui.widgets import CameraPreview, Keypad, SignaturePad, button, font, label
from checkin.ui.wording import main_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

    from checkin.signature import Signature
    from checkin.ui.theme import Theme


class FlowActions(Protocol):
    """What the UI may ask of the flow (checkin.flow.machine.CheckInFlow's public methods)."""

    def touch(self) -> None:
        """Any touch."""
        ...

    def press_start(self) -> None:
        """登记办理."""
        ...

    def press_cancel(self) -> None:
        """取消."""
        ...

    def press_home(self) -> None:
        """返回首页."""
        ...

    def press_retry(self) -> None:
        """重试."""
        ...

    def toggle_language(self) -> None:
        """中文 / English."""
        ...

    def toggle_speech(self) -> None:
        """语音 开/关."""
        ...

    def press_use_card_on_file(self) -> None:
        """确认使用."""
        ...

    def press_replace_card(self) -> None:
        """更换银行卡."""
        ...

    def press_swipe(self) -> None:
        """刷卡."""
        ...

    def press_type(self) -> None:
        """手动输入."""
        ...

    def press_insert(self) -> None:
        """插卡或挥卡."""
        ...

    def submit_swipe(self, track_text: str) -> None:
        """Track text from a keyboard-wedge reader."""
        ...

    def submit_card_number(self, typed: str) -> None:
        """Typed card number."""
        ...

    def press_confirm_card(self) -> None:
        """确认 the card."""
        ...

    def press_reenter_card(self) -> None:
        """重新读卡."""
        ...

    def submit_signature(self, signature: Signature) -> None:
        """确认 the signature."""
        ...

    def staff_gesture(self) -> None:
        """The hidden long-press."""
        ...

    def submit_pin(self, pin: str) -> None:
        """Staff PIN."""
        ...

    def staff_self_test(self) -> None:
        """设备自检."""
        ...

    def staff_refill(self, added: str) -> None:
        """补充手环."""
        ...

    def staff_test_print(self) -> None:
        """Print the receipt printer's test page."""
        ...

    def staff_paper_refilled(self) -> None:
        """A new paper roll is in."""
        ...

    def staff_toggle_out_of_service(self) -> None:
        """暂停/恢复服务."""
        ...

    def staff_clear_queued(self, request_id: str) -> None:
        """已处理，清除 a refused queued check-in."""
        ...

    def staff_exit(self) -> None:
        """退出."""
        ...


@dataclass(frozen=True, slots=True)
class BarButton:
    """A button for the right side of the bottom bar."""

    label: str
    command: Callable[[], None]
    primary: bool = True


@dataclass
class UiContext:
    """What renderers share."""

    theme: Theme
    actions: FlowActions
    frame_source: Callable[[], Image.Image | None] | None = None


class Renderer:
    """Base renderer: rebuilds its widgets for every view."""

    keeps_widgets: ClassVar[bool] = False

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        self.ctx = ctx
        self.t = ctx.theme
        self.a = ctx.actions
        self.frame = ctk.CTkFrame(parent, fg_color=th.BACKGROUND)
        self.frame.pack(fill="both", expand=True)

    def render(self, view: View) -> None:
        """Draw `view`."""
        for child in self.frame.winfo_children():
            child.destroy()
        self.build(view)

    def build(self, view: View) -> None:
        """Create the widgets for `view` (main line by default)."""
        self.main(view)

    def bar_buttons(self, view: View) -> list[BarButton]:  # noqa: ARG002 - most screens have none
        """Buttons for the bottom bar's right side."""
        return []

    def destroy(self) -> None:
        """The screen is going away."""
        self.frame.destroy()

    # ---- helpers ---------------------------------------------------------------------------------

    def main(self, view: View, *, color: str = th.TEXT, top: int = 24) -> Any:
        """The main line."""
        widget = label(self.frame, self.t, main_line(view), size=self.t.main_size, bold=True, color=color)
        widget.pack(pady=(self.t.px(top), self.t.px(16)))
        return widget

    def body(self, words: str, *, color: str = th.TEXT, size: int | None = None, bold: bool = False) -> Any:
        """A body line."""
        widget = label(self.frame, self.t, words, size=size or self.t.body_size, color=color, bold=bold)
        widget.pack(pady=self.t.px(8))
        return widget

    def error(self, view: View) -> Any:
        """The step's error, in red, or an empty line holding its place."""
        words = text(view.error, view.language, **view.error_params) if view.error else " "
        widget = label(self.frame, self.t, words, size=self.t.body_size, bold=True, color=th.DANGER)
        widget.pack(pady=self.t.px(8))
        return widget

    def row(self) -> Any:
        """A centred row for buttons."""
        row = ctk.CTkFrame(self.frame, fg_color="transparent")
        row.pack(pady=self.t.px(20))
        return row

    def add_button(
        self, row: Any, words: str, command: Callable[[], None], *, primary: bool = True, width: int = 360
    ) -> Any:
        """A button in a row, 10 mm from its neighbour."""
        widget = button(row, self.t, words, command, primary=primary, width=width)
        widget.pack(side="left", padx=self.t.gap // 2)
        return widget


class HomeRenderer(Renderer):
    """Home: batch, date, 登记办理, help line.

    Built once per language, then only relabelled: the batch's name and date arrive with the platform's
    answers, and rebuilding 登记办理 under a finger swallows the tap (press on the old button, release on
    the new one), which the window test saw as a lost tap now and then.
    """

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        super().__init__(ctx, parent)
        self._built_for: Language | None = None
        self._batch: Any = None
        self._date: Any = None

    @override
    def render(self, view: View) -> None:
        assert isinstance(view, HomeView)
        if self._built_for is not view.language:
            super().render(view)
            self._built_for = view.language
        self._batch.configure(text=view.batch_name or "")
        date = text("home.date", view.language, start=view.evaluation_start) if view.evaluation_start else ""
        self._date.configure(text=date)

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, HomeView)
        t, lang = self.t, view.language
        self.main(view, top=50)
        self._batch = self.body("", size=t.px(34), bold=True)
        self._date = self.body("", color=th.MUTED)
        start = button(self.frame, t, text("home.start", lang), self.a.press_start, width=520)
        start.configure(height=t.px(150), font=font(t, t.px(52), bold=True))
        start.pack(pady=t.px(36))
        self.body(text("home.help", lang), color=th.MUTED, size=t.small_size)


class OutOfServiceRenderer(Renderer):
    """设备维护中 with technician codes."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, OutOfServiceView)
        self.main(view, top=150)
        self.body(text("out_of_service.body", view.language))
        if view.problems:
            self.body(
                text("out_of_service.code", view.language, codes=", ".join(view.problems)),
                color=th.MUTED,
                size=self.t.small_size,
            )


class IdCardRenderer(Renderer):
    """Step 1: where the ID card goes."""

    @override
    def build(self, view: View) -> None:
        t, lang = self.t, view.language
        self.main(view)
        self.body(text("id_card.detail", lang), color=th.MUTED)
        c = tk.Canvas(self.frame, width=t.px(460), height=t.px(240), bg=th.BACKGROUND, highlightthickness=0)
        # The reader (a dark plate) with the card laid on it and an arrow down to it.
        c.create_rectangle(t.px(60), t.px(110), t.px(400), t.px(230), fill="#3A4150", outline="")
        c.create_text(
            t.px(230),
            t.px(205),
            text=text("id_card.reader_label", lang),
            fill="#FFFFFF",
            font=(th.FONT_FAMILY, -t.px(24)),
        )
        c.create_rectangle(t.px(120), t.px(70), t.px(340), t.px(180), fill="#DCE9F7", outline=th.PRIMARY, width=t.px(4))
        c.create_oval(t.px(140), t.px(90), t.px(200), t.px(160), fill="#9DB7D5", outline="")
        for i in range(3):
            y = t.px(100 + i * 22)
            c.create_line(t.px(215), y, t.px(320), y, fill="#9DB7D5", width=t.px(6))
        c.create_line(
            t.px(230),
            t.px(4),
            t.px(230),
            t.px(60),
            arrow="last",
            width=t.px(8),
            fill=th.PRIMARY,
            arrowshape=(t.px(20), t.px(24), t.px(10)),
        )
        c.pack(pady=t.px(10))
        self.error(view)


class FaceRenderer(Renderer):
    """Step 1: camera preview with the oval guide and the current hint; the preview survives hint updates."""

    keeps_widgets = True

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        super().__init__(ctx, parent)
        self._main: Any = None
        self._hint: Any = None
        self._attempt: Any = None
        self.preview: CameraPreview | None = None

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, FaceView)
        self._main = self.main(view, top=16)
        self.preview = CameraPreview(self.frame, self.t, self.ctx.frame_source)
        self.preview.canvas.pack(pady=self.t.px(6))
        self._hint = label(self.frame, self.t, " ", size=self.t.px(40), bold=True, color=th.PRIMARY)
        self._hint.pack(pady=self.t.px(6))
        self._attempt = label(self.frame, self.t, " ", size=self.t.small_size, color=th.MUTED)
        self._attempt.pack()
        self._fill(view)

    @override
    def render(self, view: View) -> None:
        if self.preview is None:
            super().render(view)
        else:
            self._fill(view)

    def _fill(self, view: View) -> None:
        assert isinstance(view, FaceView)
        lang = view.language
        self._main.configure(text=main_line(view))
        self._hint.configure(text=text(f"hint.{view.hint}", lang) if view.hint else " ")
        words = text("face.attempt", lang, n=view.attempt, max=view.max_attempts) if view.attempt > 1 else " "
        self._attempt.configure(text=words)

    @override
    def destroy(self) -> None:
        if self.preview is not None:
            self.preview.stop()
        super().destroy()


class VerifyingRenderer(Renderer):
    """Step 1: waiting for the platform (nothing moves: no spinner)."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, VerifyingView)
        self.main(view, top=180)
        self.body(text("verifying.busy" if view.busy else "verifying.detail", view.language), color=th.MUTED)


class RefusalRenderer(Renderer):
    """A refusal in words a person understands, with 返回首页 and maybe 重试."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, RefusalView)
        self.main(view, color=th.DANGER, top=150)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        assert isinstance(view, RefusalView)
        lang = view.language
        buttons = [BarButton(text("button.home", lang), self.a.press_home, primary=not view.can_retry)]
        if view.can_retry:
            buttons.append(BarButton(text("button.retry", lang), self.a.press_retry))
        return buttons


class CardOnFileRenderer(Renderer):
    """Step 2: confirm or replace the card on file."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, CardOnFileView)
        lang = view.language
        self.main(view, top=90)
        self.body(
            text("card_on_file.card", lang, bank=view.bank_name, pan=view.pan_masked), size=self.t.px(42), bold=True
        )
        row = self.row()
        self.add_button(row, text("card_on_file.replace", lang), self.a.press_replace_card, primary=False)
        self.add_button(row, text("card_on_file.use", lang), self.a.press_use_card_on_file)


class CardInsertRenderer(Renderer):
    """Step 2: insert or tap; swipe and type as smaller buttons."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, CardInsertView)
        t, lang = self.t, view.language
        self.main(view)
        self.body(text("card_insert.detail", lang), color=th.MUTED)
        k = 0.75  # the drawing is made on a 420x200 grid, shown at three quarters

        def p(v: float) -> int:
            return t.px(v * k)

        c = tk.Canvas(self.frame, width=p(420), height=p(200), bg=th.BACKGROUND, highlightthickness=0)
        c.create_rectangle(p(20), p(120), p(400), p(196), fill="#3A4150", outline="")
        c.create_rectangle(p(110), p(10), p(310), p(140), fill="#F4D27A", outline="#B8912F", width=p(3))
        c.create_rectangle(p(135), p(45), p(175), p(80), fill="#C9A13B", outline="")
        c.create_line(
            p(360), p(20), p(360), p(110), arrow="last", width=p(8), fill=th.PRIMARY, arrowshape=(p(20), p(24), p(10))
        )
        c.pack(pady=t.px(4))
        self.error(view)
        row = self.row()
        self.add_button(row, text("card_insert.swipe", lang), self.a.press_swipe, primary=False, width=300)
        self.add_button(row, text("card_insert.type", lang), self.a.press_type, primary=False, width=300)


class CardSwipeRenderer(Renderer):
    """Step 2: a keyboard-wedge reader types the track into a hidden entry that holds the focus."""

    @override
    def build(self, view: View) -> None:
        lang = view.language
        self.main(view, top=90)
        self.body(text("card_swipe.detail", lang), color=th.MUTED)
        self.error(view)
        # Off-screen entry: the wedge's keystrokes land here; Return ends a swipe.
        entry = tk.Entry(self.frame, show="•")
        entry.place(x=-1000, y=-1000)
        entry.focus_set()

        def submit(_event: object = None) -> None:
            track = entry.get()
            entry.delete(0, "end")
            self.a.submit_swipe(track)

        entry.bind("<Return>", submit)
        self.entry = entry
        row = self.row()
        self.add_button(row, text("card_insert.insert", lang), self.a.press_insert, primary=False, width=300)
        self.add_button(row, text("card_insert.type", lang), self.a.press_type, primary=False, width=300)


class CardTypeRenderer(Renderer):
    """Step 2: on-screen keypad; the digits stay in the widget until 确认."""

    keeps_widgets = True

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        super().__init__(ctx, parent)
        self.keypad: Keypad | None = None
        self._error: Any = None

    @override
    def build(self, view: View) -> None:
        self.main(view, top=10)
        self.keypad = Keypad(self.frame, self.t, view.language, max_digits=19, masked=False, on_change=lambda: None)
        self.keypad.frame.pack()
        self._error = self.error(view)

    @override
    def render(self, view: View) -> None:
        if self.keypad is None:
            super().render(view)
        else:
            words = text(view.error, view.language, **view.error_params) if view.error else " "
            self._error.configure(text=words)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        lang = view.language
        return [
            BarButton(text("card_insert.insert", lang), self.a.press_insert, primary=False),
            BarButton(text("button.confirm", lang), self._submit),
        ]

    def _submit(self) -> None:
        if self.keypad is not None:
            self.a.submit_card_number(self.keypad.value)


class CardConfirmRenderer(Renderer):
    """Step 2: the card as read, masked."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, CardConfirmView)
        lang = view.language
        self.main(view, top=90)
        self.body(text("card_confirm.card", lang, pan=view.pan_masked), size=self.t.px(42), bold=True)
        self.body(text(f"card_source.{view.source.value}", lang), color=th.MUTED)
        row = self.row()
        self.add_button(row, text("card_confirm.reenter", lang), self.a.press_reenter_card, primary=False)
        self.add_button(row, text("button.confirm", lang), self.a.press_confirm_card)


class SignatureRenderer(Renderer):
    """Step 3: who is signing (masked), the pad, 重写 and 确认; the strokes survive error updates."""

    keeps_widgets = True

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        super().__init__(ctx, parent)
        self.pad: SignaturePad | None = None
        self._error: Any = None

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, SignatureView)
        t, lang = self.t, view.language
        self.main(view, top=10)
        self.body(text("signature.who", lang, name=view.expert_name, id=view.id_number_masked), size=t.small_size)
        self.body(text("signature.card", lang, pan=view.pan_masked), size=t.small_size)
        self.pad = SignaturePad(self.frame, t, t.width - t.px(240), t.px(250))
        self.pad.canvas.pack(pady=t.px(4))
        self._error = self.error(view)

    @override
    def render(self, view: View) -> None:
        if self.pad is None:
            super().render(view)
        else:
            words = text(view.error, view.language, **view.error_params) if view.error else " "
            self._error.configure(text=words)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        lang = view.language
        return [
            BarButton(text("signature.clear", lang), self._clear, primary=False),
            BarButton(text("button.confirm", lang), self._submit),
        ]

    def _clear(self) -> None:
        if self.pad is not None:
            self.pad.clear()

    def _submit(self) -> None:
        if self.pad is not None:
            self.a.submit_signature(self.pad.signature)


class DispensingRenderer(Renderer):
    """Step 4: preparing, then take the band."""

    @override
    def build(self, view: View) -> None:
        self.main(view, top=160)
        self.body(text("dispensing.detail", view.language), color=th.MUTED)


class DoneRenderer(Renderer):
    """Step 5: 签到成功, the room, where to go, 请取走手环."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, DoneView)
        t, lang = self.t, view.language
        self.main(view, color=th.SUCCESS, top=50)
        self.body(text("done.room", lang, hotel=view.hotel_name, room=view.room_number), size=t.px(48), bold=True)
        if view.evaluation_venue or view.evaluation_start:
            self.body(text("done.venue", lang, venue=view.evaluation_venue, start=view.evaluation_start))
        self.body(text("done.take_band", lang), size=t.px(42), bold=True, color=th.PRIMARY)
        if view.slip:
            color = th.DANGER if view.slip == "failed" else th.TEXT
            self.body(text(f"done.slip_{view.slip}", lang), color=color, bold=view.slip == "failed")
        self.body(text("done.returning", lang, seconds=view.seconds_left), color=th.MUTED, size=t.small_size)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        return [BarButton(text("button.home", view.language), self.a.press_home)]


class RoomPendingRenderer(Renderer):
    """Step 5, honest: the band is out, the room is not confirmed yet."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, RoomPendingView)
        lang = view.language
        self.main(view, color=th.PRIMARY, top=90)
        self.body(text("room_pending.body", lang))
        self.body(text("done.returning", lang, seconds=view.seconds_left), color=th.MUTED, size=self.t.small_size)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        return [BarButton(text("button.home", view.language), self.a.press_home)]


class BandProblemRenderer(Renderer):
    """The band could not be handed out."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, BandProblemView)
        self.main(view, color=th.DANGER, top=160)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        return [BarButton(text("button.home", view.language), self.a.press_home)]


class StaffPinRenderer(Renderer):
    """Staff mode: PIN keypad (digits masked, kept in the widget)."""

    keeps_widgets = True

    def __init__(self, ctx: UiContext, parent: Any) -> None:
        super().__init__(ctx, parent)
        self.keypad: Keypad | None = None
        self._error: Any = None

    @override
    def build(self, view: View) -> None:
        self.main(view, top=10)
        self.keypad = Keypad(self.frame, self.t, view.language, max_digits=12, masked=True, on_change=lambda: None)
        self.keypad.frame.pack()
        self._error = self.error(view)
        self.render(view)

    @override
    def render(self, view: View) -> None:
        if self.keypad is None:
            super().render(view)
            return
        assert isinstance(view, StaffPinView)
        if view.locked_seconds:
            words = text("staff.pin_locked", view.language, seconds=view.locked_seconds)
        else:
            words = text(view.error, view.language) if view.error else " "
        self._error.configure(text=words)

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        return [BarButton(text("button.confirm", view.language), self._submit)]

    def _submit(self) -> None:
        if self.keypad is not None:
            pin = self.keypad.value
            self.keypad.press("clear")
            self.a.submit_pin(pin)


MAX_QUEUED_LINES = 6  # the rest stay counted in "waiting to send"


class StaffMenuRenderer(Renderer):
    """Staff mode: stock, queue, self-test, refill, out of service."""

    @override
    def build(self, view: View) -> None:
        assert isinstance(view, StaffMenuView)
        t, lang = self.t, view.language
        self.main(view, top=10)
        stock = "—" if view.band_stock is None else str(view.band_stock)
        self.body(
            f"{text('staff.stock', lang, stock=stock)}    {text('staff.pending', lang, pending=view.pending_check_ins)}"
        )
        row = ctk.CTkFrame(self.frame, fg_color="transparent")
        row.pack(pady=t.px(4))
        self.add_button(row, text("staff.self_test", lang), self.a.staff_self_test, primary=False, width=300)
        toggle = "staff.out_of_service_off" if view.forced_out_of_service else "staff.out_of_service_on"
        self.add_button(row, text(toggle, lang), self.a.staff_toggle_out_of_service, primary=False, width=300)
        if view.printer_installed:
            printer = ctk.CTkFrame(self.frame, fg_color="transparent")
            printer.pack(pady=t.px(4))
            state = text(f"printer.{view.printer_paper or 'offline'}", lang)
            if view.test_print:
                state += "  " + text("staff.test_print_result", lang, result=text(f"printer.{view.test_print}", lang))
            ctk.CTkLabel(printer, text=text("staff.printer", lang, state=state), font=font(t, t.small_size)).pack(
                side="left", padx=t.px(10)
            )
            self.add_button(printer, text("staff.test_print", lang), self.a.staff_test_print, primary=False, width=240)
            self.add_button(
                printer, text("staff.paper_refilled", lang), self.a.staff_paper_refilled, primary=False, width=240
            )
        refill = ctk.CTkFrame(self.frame, fg_color="transparent")
        refill.pack(pady=t.px(6))
        ctk.CTkLabel(refill, text=text("staff.refill_count", lang), font=font(t, t.body_size)).pack(
            side="left", padx=t.px(10)
        )
        entry = ctk.CTkEntry(refill, width=t.px(160), height=t.button_height, font=font(t, t.px(36)))
        entry.pack(side="left", padx=t.px(10))
        button(refill, t, text("staff.refill", lang), lambda: self.a.staff_refill(entry.get()), width=260).pack(
            side="left", padx=t.gap // 2
        )
        self._queued(view)
        self.error(view)
        if view.self_test_running:
            self.body(text("staff.test_running", lang), color=th.MUTED, size=t.small_size)
        results = ctk.CTkFrame(self.frame, fg_color="transparent")
        results.pack()
        for i, line in enumerate(view.self_test):
            device = text(f"device.{line.device}", lang) if f"device.{line.device}" in _device_keys() else line.device
            key = "staff.device_ok" if line.ok else "staff.device_fault"
            ctk.CTkLabel(
                results,
                text=text(key, lang, device=device, detail=line.detail),
                font=font(t, t.small_size),
                text_color=th.SUCCESS if line.ok else th.DANGER,
            ).grid(row=i // 2, column=i % 2, padx=t.px(24))

    def _queued(self, view: StaffMenuView) -> None:
        """The queue's records: waiting ones go by themselves; refused ones are cleared once handled."""
        t, lang = self.t, view.language
        lines = ctk.CTkFrame(self.frame, fg_color="transparent")
        lines.pack(pady=t.px(4))
        for i, record in enumerate(view.queued[:MAX_QUEUED_LINES]):
            refused = record.state == "refused"
            words = text(
                "staff.queue_refused" if refused else "staff.queue_waiting",
                lang,
                since=record.since[11:16],
                band=record.band_uid,
                problem=record.problem,
                case=record.case_id or "—",
                attempts=record.attempts,
            )
            ctk.CTkLabel(
                lines,
                text=words,
                font=font(t, t.small_size),
                text_color=th.DANGER if refused else th.MUTED,
                wraplength=t.px(860),
                justify="left",
            ).grid(row=i, column=0, sticky="w", padx=t.px(10))
            if refused:
                clear = functools.partial(self.a.staff_clear_queued, record.request_id)
                button(lines, t, text("staff.queue_clear", lang), clear, width=180).grid(
                    row=i, column=1, padx=t.px(10), pady=t.px(2)
                )

    @override
    def bar_buttons(self, view: View) -> list[BarButton]:
        return [BarButton(text("staff.exit", view.language), self.a.staff_exit)]


def _device_keys() -> frozenset[str]:
    return frozenset(k for k in TEXTS if k.startswith("device."))


RENDERERS: dict[Screen, type[Renderer]] = {
    Screen.HOME: HomeRenderer,
    Screen.OUT_OF_SERVICE: OutOfServiceRenderer,
    Screen.ID_CARD: IdCardRenderer,
    Screen.FACE: FaceRenderer,
    Screen.VERIFYING: VerifyingRenderer,
    Screen.REFUSAL: RefusalRenderer,
    Screen.CARD_ON_FILE: CardOnFileRenderer,
    Screen.CARD_INSERT: CardInsertRenderer,
    Screen.CARD_SWIPE: CardSwipeRenderer,
    Screen.CARD_TYPE: CardTypeRenderer,
    Screen.CARD_CONFIRM: CardConfirmRenderer,
    Screen.SIGNATURE: SignatureRenderer,
    Screen.DISPENSING: DispensingRenderer,
    Screen.DONE: DoneRenderer,
    Screen.ROOM_PENDING: RoomPendingRenderer,
    Screen.BAND_PROBLEM: BandProblemRenderer,
    Screen.STAFF_PIN: StaffPinRenderer,
    Screen.STAFF_MENU: StaffMenuRenderer,
}


def language_of(view: View) -> Language:
    """The view's language (a helper for the window)."""
    return view.language
