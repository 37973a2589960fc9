"""View models: what each screen shows, as frozen data. The UI renders them by `screen` and nothing else.

Every view carries the language, the step (1-5, or None off the check-in path), whether 取消 is
offered, and the inactivity countdown when one is running. Only masked personal data appears here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from checkin.texts import DEFAULT_LANGUAGE, Language

if TYPE_CHECKING:
    from collections.abc import Mapping

    from checkin.flow.models import CardSource, QueuedRecordInfo, RefusalCode
    from checkin.flow.ports import DispensePhase

TOTAL_STEPS = 5


class Screen(StrEnum):
    """Screen keys; the UI has one renderer per key."""

    HOME = "home"
    OUT_OF_SERVICE = "out_of_service"
    ID_CARD = "id_card"
    FACE = "face"
    VERIFYING = "verifying"
    REFUSAL = "refusal"
    CARD_ON_FILE = "card_on_file"
    CARD_INSERT = "card_insert"
    CARD_SWIPE = "card_swipe"
    CARD_TYPE = "card_type"
    CARD_CONFIRM = "card_confirm"
    SIGNATURE = "signature"
    DISPENSING = "dispensing"
    DONE = "done"
    ROOM_PENDING = "room_pending"
    BAND_PROBLEM = "band_problem"
    STAFF_PIN = "staff_pin"
    STAFF_MENU = "staff_menu"
    # The check-in machine's names for three of them (checkin.flow.machine.Step is this enum): aliases,
    # one member each, so a state and its screen are the same value.
    READING_ID = "id_card"
    CAPTURING_FACE = "face"
    REFUSED = "refusal"


@dataclass(frozen=True, kw_only=True)
class View:
    """Fields every screen has."""

    screen: ClassVar[Screen]
    step: ClassVar[int | None] = None
    language: Language = DEFAULT_LANGUAGE
    speech_on: bool = True
    can_cancel: bool = True
    countdown: int | None = None  # seconds left before returning home, shown as an overlay
    error: str | None = None  # an error.* text key shown on this screen
    error_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HomeView(View):
    """Home: batch name and date, 登记办理, language toggle."""

    screen: ClassVar[Screen] = Screen.HOME
    batch_name: str | None = None
    evaluation_start: str | None = None  # already formatted, e.g. 2026-03-09 09:00
    can_cancel: bool = False


@dataclass(frozen=True, kw_only=True)
class OutOfServiceView(View):
    """设备维护中，暂停服务, with short codes for technicians."""

    screen: ClassVar[Screen] = Screen.OUT_OF_SERVICE
    problems: tuple[str, ...] = ()
    can_cancel: bool = False


@dataclass(frozen=True, kw_only=True)
class IdCardView(View):
    """Step 1: place the ID card."""

    screen: ClassVar[Screen] = Screen.ID_CARD
    step: ClassVar[int | None] = 1


@dataclass(frozen=True, kw_only=True)
class FaceView(View):
    """Step 1: camera preview with a guidance hint key (hint.*)."""

    screen: ClassVar[Screen] = Screen.FACE
    step: ClassVar[int | None] = 1
    hint: str | None = None
    attempt: int = 1
    max_attempts: int = 3


@dataclass(frozen=True, kw_only=True)
class VerifyingView(View):
    """Step 1: waiting for the platform; `busy` once it answered that every face worker is taken."""

    screen: ClassVar[Screen] = Screen.VERIFYING
    step: ClassVar[int | None] = 1
    busy: bool = False


@dataclass(frozen=True, kw_only=True)
class RefusalView(View):
    """One refusal: a refusal.* key with its params, the platform's words as fallback, maybe 重试."""

    screen: ClassVar[Screen] = Screen.REFUSAL
    code: RefusalCode
    text_key: str  # refusal.<code>, or refusal.unknown when texts.py has no words for the code
    params: Mapping[str, str] = field(default_factory=dict)
    message_zh: str = ""
    message_en: str = ""
    can_retry: bool = False
    step_shown: int | None = None  # the step the refusal happened on, for the indicator
    can_cancel: bool = False  # 返回首页 does what 取消 would


@dataclass(frozen=True, kw_only=True)
class CardOnFileView(View):
    """Step 2: confirm or replace the card on file."""

    screen: ClassVar[Screen] = Screen.CARD_ON_FILE
    step: ClassVar[int | None] = 2
    bank_name: str
    pan_masked: str


@dataclass(frozen=True, kw_only=True)
class CardInsertView(View):
    """Step 2: insert or tap; swipe and type as smaller buttons."""

    screen: ClassVar[Screen] = Screen.CARD_INSERT
    step: ClassVar[int | None] = 2
    reader_available: bool = True


@dataclass(frozen=True, kw_only=True)
class CardSwipeView(View):
    """Step 2: swipe the stripe (a keyboard-wedge reader types the track text)."""

    screen: ClassVar[Screen] = Screen.CARD_SWIPE
    step: ClassVar[int | None] = 2


@dataclass(frozen=True, kw_only=True)
class CardTypeView(View):
    """Step 2: type the number on the on-screen keypad (the digits stay in the widget until 确认)."""

    screen: ClassVar[Screen] = Screen.CARD_TYPE
    step: ClassVar[int | None] = 2


@dataclass(frozen=True, kw_only=True)
class CardConfirmView(View):
    """Step 2: the card as read, masked, to confirm."""

    screen: ClassVar[Screen] = Screen.CARD_CONFIRM
    step: ClassVar[int | None] = 2
    pan_masked: str
    source: CardSource


@dataclass(frozen=True, kw_only=True)
class SignatureView(View):
    """Step 3: the pad, with the name, masked ID and masked card above it."""

    screen: ClassVar[Screen] = Screen.SIGNATURE
    step: ClassVar[int | None] = 3
    expert_name: str
    id_number_masked: str
    pan_masked: str


@dataclass(frozen=True, kw_only=True)
class DispensingView(View):
    """Step 4: preparing the band, then take it from the slot. No 取消: a band is in motion."""

    screen: ClassVar[Screen] = Screen.DISPENSING
    step: ClassVar[int | None] = 4
    phase: DispensePhase
    can_cancel: bool = False


@dataclass(frozen=True, kw_only=True)
class DoneView(View):
    """Step 5: hotel, room, where to go, 请取走手环; back home by itself."""

    screen: ClassVar[Screen] = Screen.DONE
    step: ClassVar[int | None] = 5
    expert_name: str
    hotel_name: str
    room_number: str
    evaluation_venue: str = ""
    evaluation_start: str = ""
    seconds_left: int = 0
    can_cancel: bool = False
    #: The check-in slip: "" (no printer, or nothing to print), printing, printed or failed (ask at the desk).
    slip: str = ""


@dataclass(frozen=True, kw_only=True)
class RoomPendingView(View):
    """Step 5 when the band is out but the platform has not confirmed: staff confirm the room."""

    screen: ClassVar[Screen] = Screen.ROOM_PENDING
    step: ClassVar[int | None] = 5
    seconds_left: int = 0
    can_cancel: bool = False


@dataclass(frozen=True, kw_only=True)
class BandProblemView(View):
    """The wristband could not be handed out (or was not taken): ask staff."""

    screen: ClassVar[Screen] = Screen.BAND_PROBLEM
    step: ClassVar[int | None] = 4
    not_taken: bool = False
    can_cancel: bool = False  # 返回首页 does what 取消 would


@dataclass(frozen=True, kw_only=True)
class StaffPinView(View):
    """Staff mode: PIN entry (digits stay in the widget)."""

    screen: ClassVar[Screen] = Screen.STAFF_PIN
    locked_seconds: int = 0


@dataclass(frozen=True, kw_only=True)
class SelfTestLine:
    """One device's self-test result for the staff screen."""

    device: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class StaffMenuView(View):
    """Staff mode: self-test, stock refill, out of service toggle, queue depth."""

    screen: ClassVar[Screen] = Screen.STAFF_MENU
    band_stock: int | None = None
    pending_check_ins: int = 0
    forced_out_of_service: bool = False
    self_test_running: bool = False
    self_test: tuple[SelfTestLine, ...] = ()
    max_refill: int = 500
    #: The receipt printer: installed, its paper ("", ok, near_end, out) and the last test print's state.
    printer_installed: bool = False
    printer_paper: str = ""
    test_print: str = ""
    #: The queue's records: waiting ones (delivered by themselves) and refused ones staff clear.
    queued: tuple[QueuedRecordInfo, ...] = ()
