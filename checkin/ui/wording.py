"""Which words each view shows as its main line (also what the speech prompts say). No Tk import."""

from __future__ import annotations

from checkin.flow.ports import DispensePhase
from checkin.flow.views import (
    BandProblemView,
    DispensingView,
    DoneView,
    FaceView,
    RefusalView,
    Screen,
    View,
)
from checkin.texts import TEXTS, Language, text

_MAIN_KEYS: dict[Screen, str] = {
    Screen.HOME: "home.title",
    Screen.OUT_OF_SERVICE: "out_of_service.title",
    Screen.ID_CARD: "id_card.title",
    Screen.FACE: "face.title",
    Screen.VERIFYING: "verifying.title",
    Screen.CARD_ON_FILE: "card_on_file.title",
    Screen.CARD_INSERT: "card_insert.title",
    Screen.CARD_SWIPE: "card_swipe.title",
    Screen.CARD_TYPE: "card_type.title",
    Screen.CARD_CONFIRM: "card_confirm.title",
    Screen.SIGNATURE: "signature.title",
    Screen.DONE: "done.title",
    Screen.ROOM_PENDING: "room_pending.title",
    Screen.STAFF_PIN: "staff.pin",
    Screen.STAFF_MENU: "staff.title",
}


def refusal_words(view: RefusalView) -> str:
    """The refusal's words: ours for a known code, the platform's own for a code we have no words for."""
    if view.text_key == "refusal.unknown":
        platform_words = view.message_zh if view.language is Language.ZH else view.message_en
        if platform_words:
            return platform_words
    return text(view.text_key, view.language, **view.params)


def main_line(view: View) -> str:
    """The screen's main line in the view's language."""
    lang = view.language
    if isinstance(view, RefusalView):
        return refusal_words(view)
    if isinstance(view, DispensingView):
        return text("dispensing.take" if view.phase is DispensePhase.AT_PICKUP else "dispensing.title", lang)
    if isinstance(view, BandProblemView):
        return text("band_problem.not_taken" if view.not_taken else "band_problem.title", lang)
    return text(_MAIN_KEYS[view.screen], lang)


def spoken_line(view: View) -> str:
    """What the speech prompt says for a view: the main line, the face hint, or the step's error."""
    lang = view.language
    if view.countdown is not None:
        return text("countdown.title", lang)
    if view.error:
        return text(view.error, lang, **view.error_params)
    if isinstance(view, FaceView) and view.hint:
        return text(f"hint.{view.hint}", lang) if f"hint.{view.hint}" in _known_hints() else main_line(view)
    if view.screen is Screen.DONE:
        line = f"{main_line(view)}。{text('done.take_band', lang)}"
        if isinstance(view, DoneView) and view.slip == "failed":  # said again when the printer reports a fault
            line = f"{line}。{text('done.slip_failed', lang)}"
        return line
    return main_line(view)


def _known_hints() -> frozenset[str]:
    return frozenset(k for k in TEXTS if k.startswith("hint."))
