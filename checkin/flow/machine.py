"""The check-in flow: a `transitions` state machine that owns no thread and no clock.

Device reads and platform calls run through the `Worker` port and come back as method calls on the
flow's thread; timers come from the `Scheduler` port (Tk's after() in the kiosk, a fake clock in
tests). Each state change and each in-state change publishes a view model to the listeners; the UI
only renders those. Every way out of a check-in (cancel, inactivity, done) goes through HOME, whose
entry wipes the expert's data.
"""

from __future__ import annotations

import logging
import random
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from transitions import Machine

from checkin.flow.dispense import DispenseJobResult, DispenseTransaction, Verdict
from checkin.flow.models import (
    CardSource,
    CheckInInfo,
    FaceFrames,
    IdCardFields,
    Identified,
    IdentifyRequest,
    KioskEvent,
    NewCard,
    Refusal,
    RefusalCode,
    Refused,
    ServiceHealth,
)
from checkin.flow.ports import (
    DeviceFaultError,
    DispensePhase,
    InvalidEntryError,
    NothingPresentedError,
    PlatformBusyError,
    PlatformUnavailableError,
    UnreadableError,
)
from checkin.flow.printing import NoPrinter, SlipFacts, SlipOutcome
from checkin.flow.staff import StaffMode, StaffSettings, StaffState
from checkin.flow.view_builder import card_masked, session_view
from checkin.flow.views import (
    HomeView,
    OutOfServiceView,
    Screen,
    View,
)
from checkin.texts import DEFAULT_LANGUAGE, Language
from personal_data import bank_card, id_number

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from checkin.flow.ports import (
        AuditPort,
        BandFetchPort,
        BankCardData,
        BankCardPort,
        Cancellable,
        DispenserPort,
        FaceCapturePort,
        IdCardPort,
        IdentityCard,
        PendingStore,
        PlatformPort,
        Scheduler,
        SelfTestPort,
        StockPort,
        Worker,
    )
    from checkin.flow.printing import SlipPrinterPort
    from checkin.signature import Signature

_LOG = logging.getLogger(__name__)
# The shortest wait before resending an identify the platform answered "busy" (whatever it advised).
MIN_BUSY_WAIT_S = 0.2


def busy_wait_s(advised_s: float) -> float:
    """The wait before resending after a "busy" answer: the advice, stretched by up to a quarter at random.

    So kiosks turned away together do not all come back together (the load suite's kiosks wait alike).
    """
    return max(advised_s, MIN_BUSY_WAIT_S) * random.uniform(1.0, 1.25)


class _SkipBindingNoise(logging.Filter):
    """transitions warns for every convenience method model_override=True declines to bind; we want that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Skip binding" not in record.getMessage()


logging.getLogger("transitions.core").addFilter(_SkipBindingNoise())


#: The flow's states are its screens: one enum (READING_ID, CAPTURING_FACE and REFUSED are the
#: machine's names for ID_CARD, FACE and REFUSAL). transitions binds on_enter_<canonical name>.
Step: TypeAlias = Screen


# Named state groups (predicates below test membership).
# Not a step of an expert's session: no step timing is reported for these.
STEPLESS_STATES = frozenset({Step.HOME, Step.OUT_OF_SERVICE, Step.STAFF_PIN, Step.STAFF_MENU})
CARD_STATES = frozenset({Step.CARD_ON_FILE, Step.CARD_INSERT, Step.CARD_SWIPE, Step.CARD_TYPE, Step.CARD_CONFIRM})
# States where the kiosk waits on a device or the platform, not on the expert: no inactivity timer.
BUSY_STATES = frozenset({Step.VERIFYING, Step.DISPENSING})
# States that end by themselves after `done_return_s`.
ENDING_STATES = frozenset({Step.DONE, Step.ROOM_PENDING})
STAFF_STATES = frozenset({Step.STAFF_PIN, Step.STAFF_MENU})
# States that hold an expert's data; leaving them for HOME wipes it.
SESSION_STATES = frozenset(
    {Step.READING_ID, Step.CAPTURING_FACE, Step.VERIFYING, Step.REFUSED, Step.SIGNATURE, Step.BAND_PROBLEM}
    | CARD_STATES
    | BUSY_STATES
    | ENDING_STATES
)
# Every session state but DISPENSING may be cancelled: once the arm holds a band the dispense
# transaction must finish (hand out or reject), so 取消 is not offered there.
CANCELLABLE_STATES = SESSION_STATES - {Step.DISPENSING}
# States where 60 s without a touch starts the 15 s countdown.
ATTENTION_STATES = (SESSION_STATES - BUSY_STATES - ENDING_STATES) | STAFF_STATES

_S = Step
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start", "source": _S.HOME, "dest": _S.READING_ID, "conditions": "can_serve"},
    {"trigger": "suspend", "source": _S.HOME, "dest": _S.OUT_OF_SERVICE},
    {"trigger": "resume", "source": _S.OUT_OF_SERVICE, "dest": _S.HOME, "conditions": "can_serve"},
    {"trigger": "id_accepted", "source": _S.READING_ID, "dest": _S.CAPTURING_FACE},
    {"trigger": "faces_ready", "source": _S.CAPTURING_FACE, "dest": _S.VERIFYING},
    {
        "trigger": "refuse",
        "source": [_S.READING_ID, _S.CAPTURING_FACE, _S.VERIFYING, _S.DISPENSING],
        "dest": _S.REFUSED,
    },
    {"trigger": "identified", "source": _S.VERIFYING, "dest": _S.CARD_ON_FILE, "conditions": "has_card_on_file"},
    {"trigger": "identified", "source": _S.VERIFYING, "dest": _S.CARD_INSERT},
    {"trigger": "retry", "source": _S.REFUSED, "dest": _S.CAPTURING_FACE, "conditions": "retry_goes_to_face"},
    {"trigger": "retry", "source": _S.REFUSED, "dest": _S.VERIFYING, "conditions": "retry_goes_to_verify"},
    {"trigger": "use_card_on_file", "source": _S.CARD_ON_FILE, "dest": _S.SIGNATURE},
    {"trigger": "replace_card", "source": _S.CARD_ON_FILE, "dest": _S.CARD_INSERT},
    {"trigger": "choose_swipe", "source": [_S.CARD_INSERT, _S.CARD_TYPE], "dest": _S.CARD_SWIPE},
    {"trigger": "choose_typing", "source": [_S.CARD_INSERT, _S.CARD_SWIPE], "dest": _S.CARD_TYPE},
    {"trigger": "choose_insert", "source": [_S.CARD_SWIPE, _S.CARD_TYPE], "dest": _S.CARD_INSERT},
    {"trigger": "card_captured", "source": [_S.CARD_INSERT, _S.CARD_SWIPE, _S.CARD_TYPE], "dest": _S.CARD_CONFIRM},
    {"trigger": "card_confirmed", "source": _S.CARD_CONFIRM, "dest": _S.SIGNATURE},
    {"trigger": "card_declined", "source": _S.CARD_CONFIRM, "dest": _S.CARD_INSERT},
    {"trigger": "signed", "source": _S.SIGNATURE, "dest": _S.DISPENSING},
    {"trigger": "handed_out", "source": _S.DISPENSING, "dest": _S.DONE},
    {"trigger": "handed_out_unconfirmed", "source": _S.DISPENSING, "dest": _S.ROOM_PENDING},
    {"trigger": "band_failed", "source": _S.DISPENSING, "dest": _S.BAND_PROBLEM},
    {"trigger": "end_session", "source": sorted(CANCELLABLE_STATES, key=lambda s: s.value), "dest": _S.HOME},
    {"trigger": "open_staff", "source": [_S.HOME, _S.OUT_OF_SERVICE], "dest": _S.STAFF_PIN},
    {"trigger": "pin_accepted", "source": _S.STAFF_PIN, "dest": _S.STAFF_MENU},
    {"trigger": "close_staff", "source": [_S.STAFF_PIN, _S.STAFF_MENU], "dest": _S.HOME},
]

# Platform refusals after which the face step may be tried again.
_FACE_RETRY_CODES = frozenset(
    {RefusalCode.FACE_NOT_USABLE, RefusalCode.IMAGE_TOO_LARGE, RefusalCode.IMAGE_UNDECODABLE, RefusalCode.NOT_LIVE}
)


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Timing and limits of the flow (checkin.config.KioskConfig builds this)."""

    kiosk_id: str
    staff_pin_hash: str
    inactivity_s: float = 60.0
    countdown_s: int = 15
    done_return_s: int = 20
    max_face_attempts: int = 3
    device_poll_s: float = 2.0
    max_pin_failures: int = 5
    pin_lockout_s: int = 60
    max_band_attempts: int = 2
    max_refill: int = 500
    timezone: str = "Asia/Shanghai"
    #: An ID card placed on the reader at the home screen starts the check-in (登记办理 still works).
    start_on_id_card: bool = False
    #: How long one ID-card poll at the home screen blocks the worker.
    home_poll_s: float = 0.5
    #: How long, in all, the kiosk keeps resending an identify the platform answers "busy" (its face
    #: workers all taken), each time after the wait it advises; then the expert may try again.
    platform_busy_wait_s: float = 60.0


@dataclass(frozen=True, slots=True)
class FlowPorts:
    """Everything the flow talks to."""

    id_card: IdCardPort
    bank_card: BankCardPort
    face: FaceCapturePort
    dispenser: DispenserPort
    platform: PlatformPort
    pending: PendingStore
    audit: AuditPort
    stock: StockPort
    scheduler: Scheduler
    worker: Worker
    devices: Mapping[str, SelfTestPort] = field(default_factory=dict)
    #: The receipt printer for the check-in slip (checkin.flow.printing); NoPrinter when there is none.
    printer: SlipPrinterPort = field(default_factory=NoPrinter)
    #: Fetches the band while the expert signs (the dispenser adapter); None: the dispense picks it.
    band_fetch: BandFetchPort | None = None


class FlowListener(Protocol):
    """What the UI (and the speech prompts) implement to follow the flow."""

    def on_view(self, view: View) -> None:
        """A new view model to render."""
        ...


class FlowListenerBase:
    """A listener with no-op defaults, to subclass."""

    def on_view(self, view: View) -> None:
        """Ignore the view."""


@dataclass
class _Session:
    """One expert's data while they are at the kiosk; dropped as a whole by _wipe()."""

    identity: IdentityCard | None = None
    faces: FaceFrames | None = None
    face_attempt: int = 1
    capture_failures: int = 0
    identify_request: IdentifyRequest | None = None
    identified: Identified | None = None
    new_card: NewCard | None = None
    use_card_on_file: bool = False
    card_reader_available: bool = True
    signature_png: bytes | None = None
    refusal: Refusal | None = None
    refusal_step: int | None = None
    retry_to: Step | None = None
    hint: str | None = None
    dispense_phase: DispensePhase = DispensePhase.PREPARING
    check_in: CheckInInfo | None = None
    band_not_taken: bool = False
    #: The check-in slip: "" (not started), printing, printed, failed.
    slip: str = ""
    #: The waits for a "busy" platform in this visit to VERIFYING (above 0: the screen says so).
    busy_waited_s: float = 0.0


class _StaffHost:
    """StaffHost over the flow: staff mode reaches the flow only through these."""

    def __init__(self, flow: CheckInFlow) -> None:
        self._flow = flow

    def staff_state(self) -> StaffState | None:
        return {Step.STAFF_PIN: StaffState.PIN, Step.STAFF_MENU: StaffState.MENU}.get(self._flow.state)

    def staff_ports(self) -> FlowPorts:
        return self._flow._ports  # noqa: SLF001 - the flow's own helper

    def record(self, event: str, outcome: str, *, detail: str = "") -> None:
        self._flow._record(event, outcome, detail=detail)  # noqa: SLF001

    def publish(self) -> None:
        self._flow._publish()  # noqa: SLF001

    def set_error(self, key: str, **params: str) -> None:
        self._flow._error = key  # noqa: SLF001
        self._flow._error_params = dict(params)  # noqa: SLF001
        self._flow._publish()  # noqa: SLF001

    def pin_accepted(self) -> bool:
        return self._flow.pin_accepted()

    def stock_refilled(self, level: int) -> None:
        self._flow._stock_refilled(level)  # noqa: SLF001


def _unbound() -> RuntimeError:
    return RuntimeError("trigger stub: transitions binds the real method")


class CheckInFlow:
    """The kiosk's check-in, from 登记办理 to 请取走手环, as a pure state machine."""

    state: Step

    def __init__(
        self,
        ports: FlowPorts,
        settings: FlowSettings,
        *,
        health: ServiceHealth | None = None,
        default_language: Language = DEFAULT_LANGUAGE,
        speech_on: bool = True,
    ) -> None:
        self._ports = ports
        self._settings = settings
        self._tz = zoneinfo.ZoneInfo(settings.timezone)
        # No health report yet means we do not know whether we can serve: start out of service.
        self._health = health
        self._staff = StaffMode(
            _StaffHost(self),
            StaffSettings(
                staff_pin_hash=settings.staff_pin_hash,
                max_pin_failures=settings.max_pin_failures,
                pin_lockout_s=settings.pin_lockout_s,
                max_refill=settings.max_refill,
            ),
        )
        self._default_language = default_language
        self.language = default_language
        self.speech_on = speech_on
        self._session: _Session | None = None
        self._generation = 0  # bumped by every wipe; results of older jobs are dropped
        self._listeners: list[FlowListener] = []
        self._timers: list[Cancellable] = []
        self._countdown: int | None = None
        self._seconds_left = 0
        self._error: str | None = None
        self._error_params: dict[str, str] = {}
        self._end_reason = "finished"
        self._step_entered: dt.datetime | None = None  # when the expert's current step began (step timings)
        self._step_leaving: tuple[Step, str] | None = None
        self._id_read_pending = False  # one ID-card read at a time, shared by HOME and READING_ID
        self._home_armed = False  # the reader was seen empty since HOME: a card placed now is new
        self._card_at_home: IdentityCard | None = None
        self._band_fetched = False  # a band was fetched for this expert and not dispensed yet
        self.view: View = OutOfServiceView(problems=("starting",))
        initial = Step.HOME if self.can_serve() else Step.OUT_OF_SERVICE
        self.machine = Machine(
            model=self,
            states=Step,
            transitions=TRANSITIONS,
            initial=initial,
            queued=True,
            model_override=True,
            auto_transitions=False,
            ignore_invalid_triggers=True,
            before_state_change="_before_state_change",
            after_state_change="_after_state_change",
        )
        self._publish()
        if initial is Step.HOME and settings.start_on_id_card:
            self._read_id_card(settings.home_poll_s)

    # ---- triggers (typed stubs; model_override=True makes transitions bind these names) -------------

    def start(self) -> bool:
        """HOME -> READING_ID."""
        raise _unbound()

    def suspend(self) -> bool:
        """HOME -> OUT_OF_SERVICE."""
        raise _unbound()

    def resume(self) -> bool:
        """OUT_OF_SERVICE -> HOME."""
        raise _unbound()

    def id_accepted(self) -> bool:
        """READING_ID -> CAPTURING_FACE."""
        raise _unbound()

    def faces_ready(self) -> bool:
        """CAPTURING_FACE -> VERIFYING."""
        raise _unbound()

    def refuse(self) -> bool:
        """-> REFUSED."""
        raise _unbound()

    def identified(self) -> bool:
        """VERIFYING -> CARD_ON_FILE or CARD_INSERT."""
        raise _unbound()

    def retry(self) -> bool:
        """REFUSED -> CAPTURING_FACE or VERIFYING."""
        raise _unbound()

    def use_card_on_file(self) -> bool:
        """CARD_ON_FILE -> SIGNATURE."""
        raise _unbound()

    def replace_card(self) -> bool:
        """CARD_ON_FILE -> CARD_INSERT."""
        raise _unbound()

    def choose_swipe(self) -> bool:
        """-> CARD_SWIPE."""
        raise _unbound()

    def choose_typing(self) -> bool:
        """-> CARD_TYPE."""
        raise _unbound()

    def choose_insert(self) -> bool:
        """-> CARD_INSERT."""
        raise _unbound()

    def card_captured(self) -> bool:
        """-> CARD_CONFIRM."""
        raise _unbound()

    def card_confirmed(self) -> bool:
        """CARD_CONFIRM -> SIGNATURE."""
        raise _unbound()

    def card_declined(self) -> bool:
        """CARD_CONFIRM -> CARD_INSERT."""
        raise _unbound()

    def signed(self) -> bool:
        """SIGNATURE -> DISPENSING."""
        raise _unbound()

    def handed_out(self) -> bool:
        """DISPENSING -> DONE."""
        raise _unbound()

    def handed_out_unconfirmed(self) -> bool:
        """DISPENSING -> ROOM_PENDING."""
        raise _unbound()

    def band_failed(self) -> bool:
        """DISPENSING -> BAND_PROBLEM."""
        raise _unbound()

    def end_session(self) -> bool:
        """Any cancellable state -> HOME (wipes)."""
        raise _unbound()

    def open_staff(self) -> bool:
        """HOME/OUT_OF_SERVICE -> STAFF_PIN."""
        raise _unbound()

    def pin_accepted(self) -> bool:
        """STAFF_PIN -> STAFF_MENU."""
        raise _unbound()

    def close_staff(self) -> bool:
        """Staff mode -> HOME."""
        raise _unbound()

    # ---- guards ------------------------------------------------------------------------------------

    def can_serve(self) -> bool:
        """True when the platform answers, the devices work, a batch is open and bands are in stock."""
        return not self._staff.forced_out_of_service and self._health is not None and not self._health.problems()

    def has_card_on_file(self) -> bool:
        """True when the platform returned a bank card on file for this expert."""
        s = self._session
        return s is not None and s.identified is not None and s.identified.card_on_file is not None

    def retry_goes_to_face(self) -> bool:
        """True when 重试 on the refusal screen means capturing the face again."""
        return self._session is not None and self._session.retry_to is Step.CAPTURING_FACE

    def retry_goes_to_verify(self) -> bool:
        """True when 重试 means sending the same identify request again."""
        return self._session is not None and self._session.retry_to is Step.VERIFYING

    # ---- predicates --------------------------------------------------------------------------------

    def in_session(self) -> bool:
        """True while an expert's data may be held."""
        return self.state in SESSION_STATES

    def is_busy(self) -> bool:
        """True while waiting on a device or the platform rather than on the expert."""
        return self.state in BUSY_STATES

    @property
    def session_active(self) -> bool:
        """True when an expert's data is held in memory (for tests of the wipe rule)."""
        return self._session is not None

    # ---- listeners ---------------------------------------------------------------------------------

    def add_listener(self, listener: FlowListener) -> None:
        """Follow the flow; the current view is delivered at once."""
        self._listeners.append(listener)
        listener.on_view(self.view)

    def remove_listener(self, listener: FlowListener) -> None:
        """Stop following the flow."""
        self._listeners.remove(listener)

    # ---- what the expert does (called by the UI on its thread) -------------------------------------

    def touch(self) -> None:
        """Any touch on the screen: the expert is still there."""
        if self._countdown is not None:
            self._countdown = None
            self._arm_timers()
            self._publish()
        elif self.state in ATTENTION_STATES:
            self._arm_timers()

    def press_start(self) -> None:
        """登记办理."""
        self.start()

    def press_cancel(self) -> None:
        """取消 (and 返回首页 on the ending screens): back home, forgetting the expert."""
        if self.state in STAFF_STATES:
            self.close_staff()
            return
        self._end_reason = "cancelled" if self.state not in ENDING_STATES | {Step.REFUSED} else "finished"
        self.end_session()

    def press_home(self) -> None:
        """返回首页 on a refusal or problem screen."""
        self.press_cancel()

    def press_retry(self) -> None:
        """重试 on a refusal screen that offers it."""
        self.retry()

    def toggle_language(self) -> None:
        """中文 / English on the home screen (applies until the expert's session ends)."""
        self.language = Language.EN if self.language is Language.ZH else Language.ZH
        self._publish()

    def toggle_speech(self) -> None:
        """Spoken prompts on or off."""
        self.speech_on = not self.speech_on
        self._publish()

    def press_use_card_on_file(self) -> None:
        """确认使用 the card on file."""
        if self._session is not None and self.state is Step.CARD_ON_FILE:
            self._session.use_card_on_file = True
            self._session.new_card = None
        self.use_card_on_file()

    def press_replace_card(self) -> None:
        """更换银行卡."""
        self.replace_card()

    def press_swipe(self) -> None:
        """刷卡."""
        self.choose_swipe()

    def press_type(self) -> None:
        """手动输入."""
        self.choose_typing()

    def press_insert(self) -> None:
        """Back to insert/tap from swipe or typing."""
        self.choose_insert()

    def submit_swipe(self, track_text: str) -> None:
        """A keyboard-wedge reader typed a track; parse it into a card."""
        if self.state is not Step.CARD_SWIPE:
            return
        try:
            data = self._ports.bank_card.parse_swipe(track_text)
        except InvalidEntryError:
            self._set_error("error.card_number_invalid")
            return
        except UnreadableError:
            self._set_error("error.card_swipe_unreadable")
            return
        self._accept_card(data.pan, CardSource.SWIPE, data.expiry_yymm, data.holder_name)

    def submit_card_number(self, typed: str) -> None:
        """确认 on the keypad: Luhn-checked here, before anything leaves the kiosk."""
        if self.state is not Step.CARD_TYPE:
            return
        self._accept_card(typed, CardSource.TYPED, None, None)

    def press_confirm_card(self) -> None:
        """确认 the card as read."""
        self.card_confirmed()

    def press_reenter_card(self) -> None:
        """重新读卡: drop the card just read."""
        if self._session is not None and self.state is Step.CARD_CONFIRM:
            self._session.new_card = None
        self.card_declined()

    def submit_signature(self, signature: Signature) -> None:
        """确认 on the signature pad; an empty pad is refused with 请先签名."""
        if self.state is not Step.SIGNATURE or self._session is None:
            return
        if signature.is_blank():
            self._set_error("error.signature_empty")
            return
        self._session.signature_png = signature.to_png()
        self.signed()

    # ---- staff mode --------------------------------------------------------------------------------

    def staff_gesture(self) -> None:
        """The hidden long-press (documented in docs/user-guide.md) on home or out of service."""
        self.open_staff()

    def submit_pin(self, pin: str) -> None:
        """Check the staff PIN; too many failures lock the PIN pad for a while."""
        self._staff.submit_pin(pin)

    def staff_self_test(self) -> None:
        """Run every device's self-test on the worker and show the results."""
        self._staff.self_test()

    def staff_refill(self, added: str) -> None:
        """Record bands put into the magazine."""
        self._staff.refill(added)

    def staff_test_print(self) -> None:
        """Print the test page (on the printer's thread) and show how it went."""
        self._staff.test_print()

    def staff_paper_refilled(self) -> None:
        """Staff put in a new roll: record it and ask the printer again (the heartbeat then clears the alert)."""
        self._staff.paper_refilled()

    def staff_toggle_out_of_service(self) -> None:
        """Take the kiosk out of service (or back) until staff say otherwise."""
        self._staff.toggle_out_of_service()

    def staff_clear_queued(self, request_id: str) -> None:
        """Staff handled a refused queued check-in (the platform's case says how): clear it here."""
        self._staff.clear_queued(request_id)

    def _stock_refilled(self, level: int) -> None:
        if self._health is not None:
            self._health = ServiceHealth(
                platform_reachable=self._health.platform_reachable,
                devices=self._health.devices,
                batch=self._health.batch,
                band_stock=level,
            )
        self._error = None
        self._publish()

    def staff_exit(self) -> None:
        """Leave staff mode."""
        self.close_staff()

    # ---- what the world reports (called on the flow's thread) --------------------------------------

    def health_changed(self, health: ServiceHealth) -> None:
        """Heartbeat / context poll result: go out of service or come back by itself."""
        was = self.can_serve()
        self._health = health
        if self.state is Step.HOME and not self.can_serve():
            _LOG.warning("out of service: %s", ", ".join(health.problems()))
            self.suspend()
        elif self.state is Step.OUT_OF_SERVICE and self.can_serve():
            _LOG.info("back in service")
            self.resume()
        elif self.state in {Step.HOME, Step.OUT_OF_SERVICE} or was != self.can_serve():
            self._publish()

    # ---- state entry callbacks (bound by transitions by name) --------------------------------------

    def on_enter_HOME(self) -> None:  # noqa: N802 - transitions binds on_enter_<STATE NAME>
        """Every way back home forgets the expert; then check we can still serve."""
        if self._session is not None:
            self._record(self._end_reason, "home")
        self._wipe()
        self._end_reason = "finished"
        self._put_away_fetched_band()
        if not self.can_serve():
            self.suspend()
            return
        self._home_armed = False
        if self._settings.start_on_id_card:
            self._read_id_card(self._settings.home_poll_s)

    def on_enter_READING_ID(self) -> None:  # noqa: N802
        """Start a fresh session and wait for the ID card."""
        self._session = _Session()
        self._record("session_started", "ok")
        card, self._card_at_home = self._card_at_home, None
        if card is not None:
            self._id_card_done(card)  # placed on the reader at the home screen: already read
        else:
            self._read_id_card()

    def on_enter_SIGNATURE(self) -> None:  # noqa: N802
        """Fetch the band while the expert signs: the arm brings it to the reader and its UID is read."""
        fetch = self._ports.band_fetch
        if fetch is None or self._band_fetched:
            return
        self._band_fetched = True
        self._ports.worker.submit(fetch.fetch_band, self._band_fetch_done)

    def on_enter_CAPTURING_FACE(self) -> None:  # noqa: N802
        """Run the camera's capture session on the worker."""
        s = self._require_session()
        s.hint = None
        s.faces = None
        gen = self._generation
        face = self._ports.face
        worker = self._ports.worker

        def on_hint(key: str) -> None:  # worker thread
            worker.post(lambda: self._face_hint(gen, key))

        worker.submit(lambda: face.capture(on_hint), lambda r: self._face_done(gen, r))

    def on_enter_VERIFYING(self) -> None:  # noqa: N802
        """Send IdentifyExpert (the same request, with its request id, when retrying after no answer)."""
        s = self._require_session()
        s.busy_waited_s = 0.0
        self._send_identify()

    def _send_identify(self) -> None:
        s = self._require_session()
        request = s.identify_request
        if request is None:  # pragma: no cover - faces_ready always builds one
            raise RuntimeError("VERIFYING without an identify request")
        gen = self._generation
        platform = self._ports.platform
        self._ports.worker.submit(lambda: platform.identify(request), lambda r: self._identify_done(gen, r))

    def _platform_busy(self, gen: int, busy: PlatformBusyError) -> None:
        """Every face worker of the platform was taken: send the same request again after the advised wait.

        After `platform_busy_wait_s` of waits (busy_wait_s) the expert sees "busy" with 重试.
        """
        s = self._require_session()
        wait = busy_wait_s(busy.retry_after_s)
        if s.busy_waited_s + wait > self._settings.platform_busy_wait_s:
            self._refuse(Refusal(RefusalCode.PLATFORM_BUSY), step=1, retry_to=Step.VERIFYING)
            return
        first = s.busy_waited_s == 0
        s.busy_waited_s += wait
        if first:
            self._record("identify", "platform_busy", detail=f"waiting {wait:.1f} s")
            self._publish()

        def resend() -> None:
            # While the timer runs no call is out, so VERIFYING is left only by a cancel (a new
            # generation): a timer that finds this generation in VERIFYING is this wait's own.
            if not self._stale(gen, Step.VERIFYING):
                self._send_identify()

        self._ports.scheduler.call_later(wait, resend)

    def on_enter_CARD_INSERT(self) -> None:  # noqa: N802
        """Wait for a card in the chip/contactless reader (unless it already failed)."""
        s = self._require_session()
        if s.card_reader_available:
            self._read_bank_card()
        else:
            self._set_error("error.card_reader_unavailable", publish=False)

    def on_enter_DISPENSING(self) -> None:  # noqa: N802
        """Run the arm's dispense transaction; bind(uid) is CompleteCheckIn, written ahead to the queue."""
        s = self._require_session()
        s.dispense_phase = DispensePhase.PREPARING
        identified = s.identified
        png = s.signature_png
        if identified is None or png is None:  # pragma: no cover - guarded by the transitions
            raise RuntimeError("DISPENSING without identification or signature")
        card = None if s.use_card_on_file else s.new_card
        self._band_fetched = False  # the dispense takes the band fetched ahead, if any
        gen = self._generation
        worker = self._ports.worker
        transaction = DispenseTransaction(
            dispenser=self._ports.dispenser,
            platform=self._ports.platform,
            pending=self._ports.pending,
            token=identified.identification_token,
            card=card,
            signature_png=png,
            max_band_attempts=self._settings.max_band_attempts,
            on_progress=lambda phase: worker.post(lambda: self._dispense_progress(gen, phase)),
            on_completed=lambda info: worker.post(lambda: self._slip_ready(gen, info)),
        )
        worker.submit(transaction.run, lambda r: self._dispense_done(gen, transaction, r))

    def on_enter_DONE(self) -> None:  # noqa: N802
        """签到成功."""
        self._record("check_in", "done")

    def on_enter_ROOM_PENDING(self) -> None:  # noqa: N802
        """Band out, platform silent: the queue will deliver the check-in."""
        self._record("check_in", "room_pending")

    def on_enter_BAND_PROBLEM(self) -> None:  # noqa: N802
        """Tell the audit log that staff are needed."""
        s = self._require_session()
        self._record("band_problem", "not_taken" if s.band_not_taken else "rejected")

    def on_enter_STAFF_MENU(self) -> None:  # noqa: N802
        """Forget any earlier self-test and test print."""
        self._staff.menu_opened()

    # transitions binds on_enter_<canonical member name>: Step.READING_ID is Screen.ID_CARD, and so on.
    on_enter_ID_CARD = on_enter_READING_ID  # noqa: N815
    on_enter_FACE = on_enter_CAPTURING_FACE  # noqa: N815

    def _before_state_change(self) -> None:
        """Leaving a step: its error and any countdown go with it (the next step may set its own)."""
        self._error = None
        self._error_params = {}
        self._countdown = None
        self._step_leaving = (self.state, self._end_reason)

    def _after_state_change(self) -> None:
        """Every transition: report the step just left (timings), re-arm the timers and publish the new view."""
        self._report_step()
        self._arm_timers()
        self._publish()

    def _report_step(self) -> None:
        """A `step` event per screen of a session left: which, how long, and how it ended (next/cancelled/timeout).

        The console's "where experts give up" table is computed from these on the platform.
        """
        now = self._ports.scheduler.now()
        leaving, self._step_leaving = self._step_leaving, None
        if leaving is not None and leaving[0] is self.state:
            return  # a step re-entered (a retry on the same screen): its time runs on
        entered, self._step_entered = self._step_entered, (None if self.state in STEPLESS_STATES else now)
        if leaving is None or entered is None or leaving[0] in STEPLESS_STATES:
            return
        end = leaving[1] if self.state in {Step.HOME, Step.OUT_OF_SERVICE} else "next"
        ms = max(0, int((now - entered).total_seconds() * 1000))
        self._record("step", leaving[0].value, detail=f"ms={ms} end={end}")

    # ---- device and platform results ---------------------------------------------------------------

    def _read_id_card(self, timeout: float | None = None) -> None:
        if self._id_read_pending:
            return  # its result goes to whichever of HOME and READING_ID is current when it comes
        self._id_read_pending = True
        reader = self._ports.id_card
        poll = self._settings.device_poll_s if timeout is None else timeout
        self._ports.worker.submit(lambda: reader.read_identity(poll), self._id_read_done)

    def _id_read_done(self, result: IdentityCard | Exception) -> None:
        self._id_read_pending = False
        if self.state is Step.HOME:
            self._id_card_at_home(result)
        elif self.state is Step.READING_ID:
            self._id_card_done(result)

    def _id_card_at_home(self, result: IdentityCard | Exception) -> None:
        """A card placed at the home screen starts the check-in, once the reader was seen empty there.

        A card left on the reader by the previous expert (or lying there when the kiosk came back)
        does not start anything until it is lifted and placed again.
        """
        if not self._settings.start_on_id_card or not self.can_serve():
            return
        if isinstance(result, NothingPresentedError):
            self._home_armed = True
        elif isinstance(result, Exception):
            # Unreadable or a reader fault: nothing for the home screen to say (the heartbeat reports
            # faults); look again after a poll interval rather than spinning on a dead reader.
            self._ports.scheduler.call_later(self._settings.device_poll_s, self._poll_at_home)
            return
        elif self._home_armed:
            self._record("id_card_at_home", "start")
            self._card_at_home = result
            self.start()
            return
        self._poll_at_home()

    def _poll_at_home(self) -> None:
        if self.state is Step.HOME and self._settings.start_on_id_card:
            self._read_id_card(self._settings.home_poll_s)

    def _band_fetch_done(self, result: str | Exception | None) -> None:
        if isinstance(result, Exception) or result is None:
            _LOG.warning("fetching the band ahead failed (%s); the dispense picks one", _kind(result))
            self._record("band_fetch", "failed", detail=_kind(result))

    def _put_away_fetched_band(self) -> None:
        """Rule: a band fetched for an expert who left before signing goes to the reject bin (never bound)."""
        fetch = self._ports.band_fetch
        if fetch is None or not self._band_fetched:
            return
        self._band_fetched = False

        def done(result: bool | Exception) -> None:
            self._record("band_put_away", "reject_bin" if result is True else _kind(result))

        self._ports.worker.submit(fetch.put_away_band, done)

    def _id_card_done(self, result: IdentityCard | Exception) -> None:
        s = self._require_session()
        if isinstance(result, NothingPresentedError):
            self._read_id_card()
            return
        if isinstance(result, UnreadableError):
            self._record("id_card_unreadable", "retry")
            self._set_error("error.id_card_unreadable")
            self._read_id_card()
            return
        if isinstance(result, Exception):
            self._device_failed("id_card_reader", result)
            return
        try:
            id_number.validate(result.id_number)
        except id_number.InvalidIdNumberError:
            self._refuse(Refusal(RefusalCode.ID_CARD_INVALID), step=1)
            return
        today = self._ports.scheduler.now().astimezone(self._tz).date()
        if result.is_expired(today):
            s.identity = result
            self._refuse(Refusal(RefusalCode.ID_CARD_EXPIRED), step=1)
            return
        s.identity = result
        self.id_accepted()

    def _face_hint(self, gen: int, key: str) -> None:
        if self._stale(gen, Step.CAPTURING_FACE) or self._session is None:
            return
        key = key.strip().lower()
        if key != self._session.hint:
            self._session.hint = key
            if key != "no_face":  # someone is in front of the camera: that counts as activity
                self.touch()
            self._publish()

    def _face_done(self, gen: int, result: FaceFrames | Exception) -> None:
        if self._stale(gen, Step.CAPTURING_FACE):
            if isinstance(result, FaceFrames):
                self._ports.face.clear()
            return
        s = self._require_session()
        if isinstance(result, NothingPresentedError) or (isinstance(result, FaceFrames) and not result.images_jpeg):
            s.capture_failures += 1
            self._refuse_face(RefusalCode.FACE_NOT_USABLE)
            return
        if isinstance(result, Exception):
            self._device_failed("camera", result)
            return
        if not result.liveness_passed:
            self._ports.face.clear()
            s.capture_failures += 1
            self._record("liveness", "failed")
            self._refuse_face(RefusalCode.NOT_LIVE)
            return
        s.faces = result
        identity = s.identity
        batch = self._health.batch if self._health is not None else None
        if identity is None or batch is None:  # pragma: no cover - guarded by READING_ID and can_serve
            raise RuntimeError("faces without an identity or a batch")
        s.identify_request = IdentifyRequest(
            request_id=str(uuid.uuid4()),
            batch_code=batch.code,
            id_card=_id_card_fields(identity),
            faces=result.images_jpeg,
            face_quality=result.quality,
            liveness_passed=result.liveness_passed,
            face_attempt=s.face_attempt,
            challenge=result.challenge,
            challenge_id=result.challenge_id,
            challenge_frames=result.challenge_frames,
        )
        self.faces_ready()

    def _identify_done(self, gen: int, result: Identified | Refused | Exception) -> None:
        if self._stale(gen, Step.VERIFYING):
            return
        s = self._require_session()
        if isinstance(result, Identified):
            # The platform has what it needs from the face: drop the frames now, not at the end.
            s.faces = None
            s.identify_request = None
            self._ports.face.clear()
            s.identified = result
            self._record("identified", "ok")
            self.identified()
            return
        if isinstance(result, PlatformBusyError):
            self._platform_busy(gen, result)
            return
        if isinstance(result, PlatformUnavailableError):
            self._record("identify", "platform_unavailable")
            self._refuse(Refusal(RefusalCode.PLATFORM_UNAVAILABLE), step=1, retry_to=Step.VERIFYING)
            return
        if isinstance(result, Exception):
            _LOG.error("identify failed unexpectedly: %s", type(result).__name__)
            self._refuse(Refusal(RefusalCode.UNSPECIFIED), step=1)
            return
        refusal = result.refusal
        s.faces = None
        s.identify_request = None
        self._ports.face.clear()
        if refusal.code is RefusalCode.FACE_MISMATCH:
            self._face_mismatch(refusal)
        elif refusal.code in _FACE_RETRY_CODES:
            s.capture_failures += 1
            self._refuse_face(refusal.code, refusal)
        else:
            self._refuse(refusal, step=1)

    def _face_mismatch(self, refusal: Refusal) -> None:
        s = self._require_session()
        attempt = s.face_attempt
        max_attempts = self._settings.max_face_attempts
        try:
            left = int(refusal.params.get("attempts_left", max_attempts - attempt))
        except ValueError:
            left = max_attempts - attempt
        self._record("face_mismatch", f"attempt {attempt}")
        if left <= 0 or attempt >= max_attempts:
            self._refuse(Refusal(RefusalCode.FACE_ATTEMPTS_EXHAUSTED), step=1)
            return
        s.face_attempt = attempt + 1
        shown = Refusal(
            RefusalCode.FACE_MISMATCH,
            params={"n": str(attempt)},
            message_zh=refusal.message_zh,
            message_en=refusal.message_en,
        )
        self._refuse(shown, step=1, retry_to=Step.CAPTURING_FACE)

    def _refuse_face(self, code: RefusalCode, platform_refusal: Refusal | None = None) -> None:
        """A capture that could not be used: try again, at most max_face_attempts captures in all."""
        s = self._require_session()
        if s.capture_failures >= self._settings.max_face_attempts:
            self._refuse(Refusal(RefusalCode.FACE_ATTEMPTS_EXHAUSTED), step=1)
            return
        refusal = platform_refusal or Refusal(code)
        self._refuse(refusal, step=1, retry_to=Step.CAPTURING_FACE)

    def _read_bank_card(self) -> None:
        gen = self._generation
        reader = self._ports.bank_card
        poll = self._settings.device_poll_s
        self._ports.worker.submit(lambda: reader.read_card(poll), lambda r: self._bank_card_done(gen, r))

    def _bank_card_done(self, gen: int, result: BankCardData | Exception) -> None:
        if self._stale(gen, Step.CARD_INSERT):
            return  # the expert went on to swipe or type: a late chip read is dropped
        s = self._require_session()
        if isinstance(result, NothingPresentedError):
            self._read_bank_card()
            return
        if isinstance(result, UnreadableError):
            self._record("bank_card_unreadable", "retry")
            self._set_error("error.card_unreadable")
            self._read_bank_card()
            return
        if isinstance(result, InvalidEntryError):
            self._set_error("error.card_number_invalid")
            self._read_bank_card()
            return
        if isinstance(result, Exception):
            _LOG.warning("bank card reader failed: %s", type(result).__name__)
            self._record("bank_card_reader", "fault", detail=type(result).__name__)
            s.card_reader_available = False
            self._set_error("error.card_reader_unavailable")
            return
        source = CardSource(result.source) if result.source in {"chip", "contactless"} else CardSource.CHIP
        self._accept_card(result.pan, source, result.expiry_yymm, result.holder_name)

    def _accept_card(self, pan: str, source: CardSource, expiry: str | None, holder: str | None) -> None:
        s = self._require_session()
        try:
            digits = bank_card.validate(pan)
        except bank_card.InvalidCardNumberError:
            self._record("bank_card", "invalid_number", detail=source.value)
            self._set_error("error.card_number_invalid")
            if self.state is Step.CARD_INSERT:
                self._read_bank_card()
            return
        s.new_card = NewCard(pan=digits, source=source, expiry_yymm=expiry, holder_name=holder)
        s.use_card_on_file = False
        self.card_captured()

    def _dispense_progress(self, gen: int, phase: DispensePhase) -> None:
        if self._stale(gen, Step.DISPENSING) or self._session is None:
            return
        self._session.dispense_phase = phase
        self._publish()

    def _dispense_done(self, gen: int, transaction: DispenseTransaction, result: DispenseJobResult | Exception) -> None:
        if self._stale(gen, Step.DISPENSING):  # pragma: no cover - not cancellable
            return
        s = self._require_session()
        settlement = transaction.settle(result)
        for event, outcome, detail in settlement.audit:
            self._record(event, outcome, detail=detail)
        s.band_not_taken = settlement.band_not_taken
        verdict = settlement.verdict
        if verdict is Verdict.DONE:
            s.check_in = settlement.check_in
            self.handed_out()
        elif verdict is Verdict.ROOM_PENDING:
            self.handed_out_unconfirmed()
        elif verdict is Verdict.REFUSED and settlement.refusal is not None:
            self._refuse(settlement.refusal, step=4)
        else:
            self.band_failed()

    # ---- the check-in slip --------------------------------------------------------------------------

    def _slip_ready(self, gen: int, check_in: CheckInInfo) -> None:
        """The platform completed the check-in: print its slip on the printer's own thread."""
        printer = self._ports.printer
        s = self._session
        if self._stale(gen) or s is None or not printer.installed or s.slip:
            return
        facts = self._slip_facts(s, check_in)
        s.slip = "printing"
        worker = self._ports.worker
        printer.print_slip(facts, lambda outcome: worker.post(lambda: self._slip_done(gen, outcome)))

    def _slip_done(self, gen: int, outcome: SlipOutcome) -> None:
        self._record("slip", outcome.value)
        if self._stale(gen) or self._session is None:
            return  # the expert has gone; the audit event above tells the desk
        self._session.slip = "printed" if outcome.ok else "failed"
        if self.state is Step.DONE:
            self._publish()

    def _slip_facts(self, s: _Session, info: CheckInInfo) -> SlipFacts:
        batch = self._health.batch if self._health is not None else None
        identified = s.identified
        return SlipFacts(
            batch_code=info.batch_code or (batch.code if batch else ""),
            batch_name=batch.name if batch else "",
            expert_name=identified.expert_name if identified else "",
            id_number_masked=info.id_number_masked or (identified.id_number_masked if identified else ""),
            kiosk_id=info.kiosk_id or self._settings.kiosk_id,
            slip_serial=info.slip_serial,
            checked_in_at=self._format_time(info.checked_in_at or self._ports.scheduler.now()),
            hotel_name=info.hotel_name,
            room_number=info.room_number,
            evaluation_venue=info.evaluation_venue or (batch.venue if batch else ""),
            evaluation_start=self._format_time(info.evaluation_start or (batch.evaluation_start if batch else None)),
            band_tag_id=info.uwb_tag_id,
            card_masked=card_masked(s),
            slip_code=info.slip_code,
        )

    # ---- helpers -----------------------------------------------------------------------------------

    def _device_failed(self, device: str, err: Exception) -> None:
        kind = "fault" if isinstance(err, DeviceFaultError) else type(err).__name__
        _LOG.warning("%s failed during a check-in: %s", device, kind)
        self._record("device_fault", device, detail=kind)
        self._refuse(Refusal(RefusalCode.DEVICE_UNAVAILABLE), step=1)

    def _refuse(self, refusal: Refusal, *, step: int | None, retry_to: Step | None = None) -> None:
        s = self._require_session()
        s.refusal = refusal
        s.refusal_step = step
        s.retry_to = retry_to
        self._record("refused", refusal.code.value)
        self.refuse()

    def _set_error(self, key: str, *, publish: bool = True, **params: str) -> None:
        self._error = key
        self._error_params = dict(params)
        if publish:
            self._publish()

    def _stale(self, gen: int, state: Step | None = None) -> bool:
        """The generation guard: a result of an earlier expert's job (wiped since), or of a step left since."""
        return gen != self._generation or (state is not None and self.state is not state)

    def _require_session(self) -> _Session:
        if self._session is None:  # pragma: no cover - the transitions guarantee a session here
            raise RuntimeError(f"no session in state {self.state}")
        return self._session

    def _wipe(self) -> None:
        """Forget the expert: drop every reference to their data, stop the camera, ignore late results."""
        self._generation += 1
        self._session = None
        self.language = self._default_language
        self._ports.face.cancel()
        self._ports.face.clear()

    def _record(self, event: str, outcome: str, *, detail: str = "") -> None:
        hint = ""
        s = self._session
        if s is not None and s.identity is not None:
            hint = s.identity.id_number[-4:]
        self._ports.audit.record(
            KioskEvent(
                request_id=str(uuid.uuid4()),
                event=event,
                outcome=outcome,
                occurred_at=self._ports.scheduler.now(),
                detail=detail,
                id_number_hint=hint,
            )
        )

    # ---- timers ------------------------------------------------------------------------------------

    def _arm_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        self._countdown = None
        sched = self._ports.scheduler
        if self.state in ATTENTION_STATES:
            self._timers.append(sched.call_later(self._settings.inactivity_s, self._inactivity_elapsed))
        elif self.state in ENDING_STATES:
            self._seconds_left = self._settings.done_return_s
            self._timers.append(sched.call_later(1.0, self._ending_tick))

    def _inactivity_elapsed(self) -> None:
        self._countdown = self._settings.countdown_s
        self._timers = [self._ports.scheduler.call_later(1.0, self._countdown_tick)]
        self._publish()

    def _countdown_tick(self) -> None:
        if self._countdown is None:
            return
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = None
            if self.state in STAFF_STATES:
                self.close_staff()
            else:
                self._end_reason = "timeout"
                self.end_session()
            return
        self._timers = [self._ports.scheduler.call_later(1.0, self._countdown_tick)]
        self._publish()

    def _ending_tick(self) -> None:
        self._seconds_left -= 1
        if self._seconds_left <= 0:
            self._end_reason = "finished"
            self.end_session()
            return
        self._timers = [self._ports.scheduler.call_later(1.0, self._ending_tick)]
        self._publish()

    # ---- views -------------------------------------------------------------------------------------

    def _publish(self) -> None:
        self.view = self._build_view()
        for listener in list(self._listeners):
            listener.on_view(self.view)

    def _common(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "speech_on": self.speech_on,
            "countdown": self._countdown,
            "error": self._error,
            "error_params": dict(self._error_params),
        }

    def _format_time(self, when: dt.datetime | None) -> str:
        return when.astimezone(self._tz).strftime("%Y-%m-%d %H:%M") if when is not None else ""

    def _build_view(self) -> View:
        c = self._common()
        state = getattr(self, "state", None)
        s = self._session
        if state is None or state is Step.OUT_OF_SERVICE:
            problems = self._health.problems() if self._health is not None else ("starting",)
            if self._staff.forced_out_of_service:
                problems = ("staff", *problems)
            return OutOfServiceView(problems=problems, **c)
        if state is Step.HOME:
            batch = self._health.batch if self._health is not None else None
            return HomeView(
                batch_name=batch.name if batch else None,
                evaluation_start=self._format_time(batch.evaluation_start) if batch else None,
                **c,
            )
        if state is Step.STAFF_PIN:
            return self._staff.pin_view(c)
        if state is Step.STAFF_MENU:
            return self._staff.menu_view(c)
        if s is None:  # pragma: no cover - session states always have a session
            raise RuntimeError(f"state {state} without a session")
        return session_view(
            state,
            s,
            c,
            health=self._health,
            max_face_attempts=self._settings.max_face_attempts,
            seconds_left=self._seconds_left,
            format_time=self._format_time,
        )


def _kind(result: object) -> str:
    return type(result).__name__ if isinstance(result, Exception) else "none"


def _id_card_fields(card: IdentityCard) -> IdCardFields:
    """The ID card as IdentifyExpert takes it (dates as YYYYMMDD, no expiry as 长期)."""
    return IdCardFields(
        id_number=id_number.normalise(card.id_number),
        name=card.name,
        sex_code=card.sex_code,
        nation_code=card.nation_code,
        birth_date=card.birth_date.strftime("%Y%m%d"),
        address=card.address,
        issuing_authority=card.issuing_authority,
        valid_from=card.valid_from.strftime("%Y%m%d"),
        valid_to=card.valid_to.strftime("%Y%m%d") if card.valid_to is not None else "长期",
    )
