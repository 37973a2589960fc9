"""The view builder: what each screen of a check-in in progress shows, from the session's data.

Pure: it reads the session and the flow's context and returns a view model; no ports, no state
changes. The machine (checkin.flow.machine) calls it for every publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from checkin.flow.models import CardSource, CheckInInfo, Refusal, RefusalCode
from checkin.flow.views import (
    BandProblemView,
    CardConfirmView,
    CardInsertView,
    CardOnFileView,
    CardSwipeView,
    CardTypeView,
    DispensingView,
    DoneView,
    FaceView,
    IdCardView,
    RefusalView,
    RoomPendingView,
    Screen,
    SignatureView,
    VerifyingView,
    View,
)
from checkin.texts import has_text

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from checkin.flow.machine import _Session
    from checkin.flow.models import ServiceHealth


def session_view(  # noqa: C901, PLR0911, PLR0912 - one branch per screen
    state: Screen,
    s: _Session,
    c: dict[str, Any],
    *,
    health: ServiceHealth | None,
    max_face_attempts: int,
    seconds_left: int,
    format_time: Callable[[dt.datetime | None], str],
) -> View:
    """The view of a state that holds an expert's session; `c` holds the fields every view has."""
    if state is Screen.READING_ID:
        return IdCardView(**c)
    if state is Screen.CAPTURING_FACE:
        return FaceView(hint=s.hint, attempt=s.face_attempt, max_attempts=max_face_attempts, **c)
    if state is Screen.VERIFYING:
        return VerifyingView(busy=s.busy_waited_s > 0, **c)
    if state is Screen.REFUSED:
        refusal = s.refusal or Refusal(RefusalCode.UNSPECIFIED)
        key = f"refusal.{refusal.code.value}"
        if not has_text(key) or refusal.code is RefusalCode.UNSPECIFIED:
            key = "refusal.unknown"
        return RefusalView(
            code=refusal.code,
            text_key=key,
            params=dict(refusal.params),
            message_zh=refusal.message_zh,
            message_en=refusal.message_en,
            can_retry=s.retry_to is not None,
            step_shown=s.refusal_step,
            **c,
        )
    if state is Screen.CARD_ON_FILE:
        on_file = s.identified.card_on_file if s.identified else None
        return CardOnFileView(
            bank_name=on_file.bank_name if on_file else "", pan_masked=on_file.pan_masked if on_file else "", **c
        )
    if state is Screen.CARD_INSERT:
        return CardInsertView(reader_available=s.card_reader_available, **c)
    if state is Screen.CARD_SWIPE:
        return CardSwipeView(**c)
    if state is Screen.CARD_TYPE:
        return CardTypeView(**c)
    if state is Screen.CARD_CONFIRM:
        card = s.new_card
        return CardConfirmView(
            pan_masked=card.masked if card else "", source=card.source if card else CardSource.TYPED, **c
        )
    if state is Screen.SIGNATURE:
        return SignatureView(
            expert_name=s.identified.expert_name if s.identified else "",
            id_number_masked=s.identified.id_number_masked if s.identified else "",
            pan_masked=card_masked(s),
            **c,
        )
    if state is Screen.DISPENSING:
        return DispensingView(phase=s.dispense_phase, **c)
    if state is Screen.DONE:
        info = s.check_in or CheckInInfo(check_in_id="")
        batch = health.batch if health is not None else None
        venue = info.evaluation_venue or (batch.venue if batch else "")
        start = info.evaluation_start or (batch.evaluation_start if batch else None)
        return DoneView(
            expert_name=s.identified.expert_name if s.identified else "",
            hotel_name=info.hotel_name,
            room_number=info.room_number,
            evaluation_venue=venue,
            evaluation_start=format_time(start),
            seconds_left=seconds_left,
            slip=s.slip,
            **c,
        )
    if state is Screen.ROOM_PENDING:
        return RoomPendingView(seconds_left=seconds_left, **c)
    if state is Screen.BAND_PROBLEM:
        return BandProblemView(not_taken=s.band_not_taken, **c)
    raise RuntimeError(f"no view for state {state}")  # pragma: no cover


def card_masked(s: _Session) -> str:
    """The card the check-in uses, masked (first 6 / last 4)."""
    if s.use_card_on_file and s.identified is not None and s.identified.card_on_file is not None:
        return s.identified.card_on_file.pan_masked
    return s.new_card.masked if s.new_card is not None else ""
