"""What the check-in flow needs from the world, as typing.Protocols.

The real parts (the card readers, the camera session, the arm's dispenser, the platform client, the
durable queue) plug in through thin adapters in the composition root; the flow's tests plug in fakes.

Device ports raise only the errors below (`PortError` and its leaves); an adapter translates its
device package's own exceptions (for example `id_card_reader.NoCardError` -> `NothingPresentedError`)
and chains them with `raise ... from err`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from checkin.flow.models import (
        AnnulReason,
        CompleteRequest,
        CompleteResult,
        DeviceHealth,
        FaceFrames,
        IdentifyRequest,
        IdentifyResult,
        KioskEvent,
        QueuedRecordInfo,
    )

T = TypeVar("T")


class PortError(Exception):
    """Root of the errors a device port may raise to the flow."""


class NothingPresentedError(PortError):
    """No card, band or face within the read's timeout: normal, the flow just keeps waiting."""


class UnreadableError(PortError):
    """Something was presented but could not be read (card moved, bad frame, dead chip)."""


class InvalidEntryError(PortError):
    """Swiped or typed data that is not a valid card number."""


class DeviceFaultError(PortError):
    """The device itself is not working (unplugged, not answering, self-test failed)."""


class PlatformUnavailableError(Exception):
    """The platform did not answer within the retries; for a state-changing call the outcome is unknown."""


class PlatformBusyError(PlatformUnavailableError):
    """The platform answered "busy, try again in `retry_after_s`" (its face workers were all taken).

    Nothing was done with the request; the flow sends the same request again after the advised wait.
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# ---- devices -------------------------------------------------------------------------------------


class IdentityCard(Protocol):
    """The fields of a Chinese ID card the flow uses (id_card_reader.IdentityCard fits as it is)."""

    @property
    def id_number(self) -> str:
        """18-character ID number."""
        ...

    @property
    def name(self) -> str:
        """Name as printed."""
        ...

    @property
    def sex_code(self) -> str:
        """0 unknown, 1 male, 2 female, 9 unspecified."""
        ...

    @property
    def nation_code(self) -> str:
        """Two-digit nationality code."""
        ...

    @property
    def birth_date(self) -> dt.date:
        """Date of birth."""
        ...

    @property
    def address(self) -> str:
        """Address as printed."""
        ...

    @property
    def issuing_authority(self) -> str:
        """签发机关."""
        ...

    @property
    def valid_from(self) -> dt.date:
        """First day of validity."""
        ...

    @property
    def valid_to(self) -> dt.date | None:
        """None means 长期 (no expiry)."""
        ...

    def is_expired(self, today: dt.date) -> bool:
        """True when the card's validity ended before `today`."""
        ...


class IdCardPort(Protocol):
    """The ID card reader: blocks up to `timeout` seconds for a card on the reader."""

    def read_identity(self, timeout: float) -> IdentityCard:
        """Raise NothingPresentedError when no card came, UnreadableError, DeviceFaultError."""
        ...


class BankCardData(Protocol):
    """A bank card as read (bank_card_reader.BankCardData fits as it is)."""

    @property
    def pan(self) -> str:
        """Card number, digits only."""
        ...

    @property
    def expiry_yymm(self) -> str | None:
        """Expiry as YYMM, when the card gives it."""
        ...

    @property
    def holder_name(self) -> str | None:
        """Cardholder name, when the chip gives it."""
        ...

    @property
    def source(self) -> str:
        """chip, contactless, swipe or typed."""
        ...


class BankCardPort(Protocol):
    """The chip/contactless reader and the stripe parser."""

    def read_card(self, timeout: float) -> BankCardData:
        """Raise NothingPresentedError, UnreadableError, InvalidEntryError or DeviceFaultError."""
        ...

    def parse_swipe(self, text: str) -> BankCardData:
        """Parse keyboard-wedge track text; raise InvalidEntryError or UnreadableError."""
        ...


class FaceCapturePort(Protocol):
    """The camera's capture session: guidance while it runs, then the best frames."""

    def capture(self, on_hint: Callable[[str], None]) -> FaceFrames:
        """Block until good frames and a liveness verdict, calling on_hint(key) from this thread.

        Raise NothingPresentedError when no usable face came before the session's own deadline,
        DeviceFaultError when the camera is not working.
        """
        ...

    def cancel(self) -> None:
        """Make a running capture() return (raising NothingPresentedError) as soon as it can."""
        ...

    def clear(self) -> None:
        """Drop every frame the session holds (called whenever an expert's data is wiped)."""
        ...


class DispensePhase(StrEnum):
    """Progress of a dispense, for the wristband screen."""

    PREPARING = "preparing"  # picking, reading the UID, binding
    AT_PICKUP = "at_pickup"  # the band waits in the pickup slot


class DispenseOutcome(StrEnum):
    """How a dispense ended."""

    HANDED_OUT = "handed_out"
    NOT_TAKEN = "not_taken"  # pushed to pickup, not taken in time, withdrawn to the reject bin
    REJECTED = "rejected"  # never offered: unreadable UID, binding refused, or an arm fault


@dataclass(frozen=True, slots=True)
class BindDecision:
    """The flow's answer to the dispenser's bind(uid): hand the band out or reject it."""

    bound: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DispenseReport:
    """What the dispenser reports after one band (robot_arm's DispenseResult, translated)."""

    outcome: DispenseOutcome
    uid: str | None = None
    reason: str = ""  # UNREADABLE_UID, BIND_REFUSED, FAULT E.., NOT_TAKEN
    needs_staff: bool = False  # the band's whereabouts are unknown (power loss, jam)


class DispenserPort(Protocol):
    """The arm's dispense transaction (robot_arm.dispenser.WristbandDispenser behind an adapter)."""

    def dispense(
        self, bind: Callable[[str], BindDecision], on_progress: Callable[[DispensePhase], None]
    ) -> DispenseReport:
        """Pick a band, read its UID, call bind(uid) once, then hand it out or reject it."""
        ...


class BandFetchPort(Protocol):
    """Fetching a band ahead: the arm brings it to the reader and its UID is read while the expert signs.

    The next `DispenserPort.dispense` binds and hands out the band held this way. Both calls block
    (run them on the worker).
    """

    def fetch_band(self) -> str | None:
        """Bring a band to the reader and read its UID; None when that failed (the dispense picks afresh)."""
        ...

    def put_away_band(self) -> bool:
        """The expert left: the band held (never bound) goes to the reject bin. False when none was held."""
        ...


class SelfTestPort(Protocol):
    """One device's health check, for staff mode and heartbeats."""

    def health(self) -> DeviceHealth:
        """Current health without moving anything (cheap; called every heartbeat)."""
        ...

    def self_test(self) -> DeviceHealth:
        """An active check (may move the arm or talk to the reader); staff mode only."""
        ...


class StockPort(Protocol):
    """The wristband stock count kept by the kiosk for the arm's magazine."""

    def level(self) -> int:
        """Bands believed to be in stock."""
        ...

    def refill(self, added: int) -> int:
        """Record `added` bands put in by staff; return the new level."""
        ...


# ---- platform and queue --------------------------------------------------------------------------


class PlatformPort(Protocol):
    """The calls the flow makes to the platform (checkin.platform_client.PlatformClient)."""

    def identify(self, request: IdentifyRequest) -> IdentifyResult:
        """IdentifyExpert; raise PlatformUnavailableError when it cannot be reached."""
        ...

    def complete_check_in(self, request: CompleteRequest) -> CompleteResult:
        """CompleteCheckIn (idempotent by request id); raise PlatformUnavailableError."""
        ...


class PendingStore(Protocol):
    """The durable queue (checkin.pending_queue.PendingQueue) as the dispense step uses it.

    The rule it keeps: a CompleteCheckIn is written here (durably) before it is first sent, so no
    band can leave the arm without either the platform's acknowledgement or a record that will
    deliver it.
    """

    def write_ahead(self, request: CompleteRequest) -> None:
        """Record the request before its first send (state: in flight, owned by the live flow)."""
        ...

    def acknowledged(self, request_id: str, check_in_id: str) -> None:
        """The platform completed it; keep the record until the band's fate is known."""
        ...

    def forget(self, request_id: str) -> None:
        """Nothing left to deliver: refused, or acknowledged and the band handed out."""
        ...

    def deliver_later(self, request_id: str) -> None:
        """The band was handed out but no answer came: the background replayer delivers it."""
        ...

    def annul_later(self, request_id: str, reason: AnnulReason, detail: str) -> None:
        """The band did not reach the expert: complete (if needed) then annul, in the background."""
        ...

    def depth(self) -> int:
        """Records not yet settled with the platform."""
        ...

    def staff_list(self) -> tuple[QueuedRecordInfo, ...]:
        """Every record, oldest first, for staff mode."""
        ...

    def staff_clear(self, request_id: str) -> bool:
        """Staff handled a refused record: remove it (only refused ones; True if removed)."""
        ...


class AuditPort(Protocol):
    """Fire-and-forget kiosk events for the platform's audit log; never blocks the flow."""

    def record(self, event: KioskEvent) -> None:
        """Queue one event for sending."""
        ...


# ---- running -------------------------------------------------------------------------------------


class Cancellable(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None:
        """Call it off; harmless when it already ran."""
        ...


class Scheduler(Protocol):
    """The flow's clock and timers; callbacks run on the flow's thread (the Tk thread in the UI)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run callback after `delay` seconds on the flow's thread."""
        ...

    def now(self) -> dt.datetime:
        """Wall-clock time, timezone-aware."""
        ...


class Worker(Protocol):
    """Runs blocking device and platform calls off the flow's thread, and posts results back."""

    def submit(self, job: Callable[[], T], done: Callable[[T | Exception], None]) -> None:
        """Run job on a worker thread; call done(result or exception) on the flow's thread."""
        ...

    def post(self, callback: Callable[[], None]) -> None:
        """Run callback on the flow's thread soon (safe to call from any thread)."""
        ...
