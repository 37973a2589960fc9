"""Kiosk-facing models of the arm: the ArmController interface and the dispense transaction's results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from robot_arm.errors import ArmConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from robot_arm.protocol import ArmInfo, ArmStatus, ErrorCode, Event, Station


UID_BYTES: Final = frozenset({4, 7, 10})
"""ISO 14443-A UIDs are single (4), double (7) or triple (10) size."""


def normalise_uid(text: str) -> str:
    """Validate an ISO 14443-A UID (4, 7 or 10 bytes of hex) and return it upper-case without spaces."""
    value = text.replace(" ", "").replace(":", "").strip().upper()
    if not value or any(c not in "0123456789ABCDEF" for c in value) or len(value) % 2:
        raise ArmConfigError(f"band UID must be hex digits, got {text!r}")
    if len(value) // 2 not in UID_BYTES:
        raise ArmConfigError(f"band UID must be 4, 7 or 10 bytes, got {len(value) // 2} in {text!r}")
    return value


class ArmController(Protocol):
    """What the dispense transaction needs from an arm; `ArmDriver` implements it for real and simulated arms."""

    def status(self) -> ArmStatus:
        """Read the arm's full status."""
        ...

    def info(self) -> ArmInfo:
        """Read model, firmware and boot count."""
        ...

    def home(self) -> None:
        """Home the axes; block until done."""
        ...

    def pick(self) -> None:
        """Take one band from the stock; block until done."""
        ...

    def move(self, station: Station) -> None:
        """Move to a named station; block until done."""
        ...

    def release(self) -> None:
        """Open the gripper at the current station; block until done."""
        ...

    def retract(self) -> bool:
        """Capture a band left in the pickup slot into the reject bin; True if there was one."""
        ...

    def clear(self) -> None:
        """Clear a latched alarm whose cause is gone."""
        ...

    def estop(self) -> None:
        """Software emergency stop."""
        ...

    def add_event_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` (on the reader thread) for every `@` event."""
        ...

    def remove_event_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling `listener`."""
        ...


class DispenseOutcome(StrEnum):
    """How a dispense ended."""

    HANDED_OUT = "handed_out"
    """The band was bound and the expert took it from the pickup slot."""
    NOT_TAKEN = "not_taken"
    """The band was bound and presented, not taken in time, and withdrawn into the reject bin."""
    REJECTED = "rejected"
    """A band left the stock but was not handed out (unreadable, binding refused, fault)."""
    NOT_DISPENSED = "not_dispensed"
    """No band left the stock (stock empty, arm not ready, gripper fault at pick)."""


class DispenseReason(StrEnum):
    """Why a dispense did not hand a band out."""

    UNREADABLE_UID = "unreadable_uid"
    BIND_REFUSED = "bind_refused"
    BIND_FAILED = "bind_failed"
    """The platform call raised: the binding may or may not exist, so the kiosk must annul."""
    NOT_TAKEN = "not_taken"
    STOCK_EMPTY = "stock_empty"
    ARM_NOT_READY = "arm_not_ready"
    FAULT = "fault"
    """The arm reported a numbered fault (see `DispenseResult.fault`)."""
    POWER_LOSS = "power_loss"
    ARM_UNREACHABLE = "arm_unreachable"


class BandLocation(StrEnum):
    """Where the band of a dispense ended up."""

    PICKUP_TAKEN = "pickup_taken"
    REJECT_BIN = "reject_bin"
    STOCK = "stock"
    PICKUP_SLOT = "pickup_slot"
    """Presented but neither seen taken nor withdrawn (the arm failed meanwhile): staff must look."""
    GRIPPER = "gripper"
    """Still held by the arm, which could not safely reach the reject bin: staff must recover."""
    UNKNOWN = "unknown"
    """The arm could not tell (link lost, counter did not move): staff must look."""
    NONE = "none"
    """No band was taken from the stock."""


class BindingState(StrEnum):
    """What the platform did with the band's UID."""

    NOT_ATTEMPTED = "not_attempted"
    BOUND = "bound"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class DispenseStep(StrEnum):
    """Progress of a dispense, for the UI (render by step id; see DISPENSE_PROMPTS)."""

    PREPARING = "preparing"
    READING = "reading"
    BINDING = "binding"
    PRESENTING = "presenting"
    TAKEN = "taken"
    WITHDRAWING = "withdrawing"
    REJECTING = "rejecting"


DISPENSE_PROMPTS: dict[DispenseStep, tuple[str, str]] = {
    DispenseStep.PREPARING: ("正在为您准备手环，请稍候", "Preparing your wristband…"),
    DispenseStep.READING: ("正在为您准备手环，请稍候", "Preparing your wristband…"),
    DispenseStep.BINDING: ("正在为您准备手环，请稍候", "Preparing your wristband…"),
    DispenseStep.PRESENTING: ("请从下方出口取走手环", "Please take your wristband from the slot below"),
    DispenseStep.TAKEN: ("已取走手环", "Wristband taken"),
    DispenseStep.WITHDRAWING: ("手环未被取走，已收回", "The wristband was not taken and has been withdrawn"),
    DispenseStep.REJECTING: ("手环发放遇到问题，请联系现场工作人员", "There was a problem with your wristband"),
}
"""Default words per step (Simplified Chinese, English); the kiosk UI may word them its own way."""


@dataclass(frozen=True, slots=True)
class DispenseProgress:
    """One progress report during a dispense."""

    step: DispenseStep
    uid: str | None = None


@dataclass(frozen=True, slots=True)
class BindDecision:
    """The platform's answer to "bind this band to the expert now checking in"."""

    bound: bool
    reason: str | None = None
    """The platform's refusal reason (e.g. a RefusalReason name) when not bound."""
    check_in_id: str | None = None

    @classmethod
    def accepted(cls, check_in_id: str | None = None) -> BindDecision:
        """The platform bound the band."""
        return cls(bound=True, check_in_id=check_in_id)

    @classmethod
    def refused(cls, reason: str) -> BindDecision:
        """The platform refused to bind the band, with its reason."""
        return cls(bound=False, reason=reason)


@dataclass(frozen=True, slots=True)
class DispenseResult:
    """The end state of one dispense: outcome, band, reason and where the band is, so the kiosk can annul."""

    outcome: DispenseOutcome
    uid: str | None
    reason: DispenseReason | None
    band_location: BandLocation
    binding: BindingState
    fault: ErrorCode | None = None
    bind_reason: str | None = None
    check_in_id: str | None = None
    needs_staff: bool = False
    """A person must act: the band is not accounted for, or the arm is left not ready (e-stop, door, fault)."""
    stock_left: int | None = None
    detail: str = ""

    @property
    def needs_annul(self) -> bool:
        """True when a binding exists or may exist for a band that can no longer reach the expert.

        A band left lying in the pickup slot may still be taken, so it is flagged for staff instead
        (`needs_staff`), who annul only if they withdraw it.
        """
        if self.outcome is DispenseOutcome.HANDED_OUT or self.band_location is BandLocation.PICKUP_SLOT:
            return False
        return self.binding in {BindingState.BOUND, BindingState.UNKNOWN}


@dataclass(frozen=True, slots=True)
class StartUpReport:
    """What start-up found and did: homing, a band left in the gripper or the pickup slot."""

    ready: bool
    homed: bool
    band_in_gripper: bool
    band_in_pickup: bool
    rejected: int
    """Bands start-up moved into the reject bin (from the gripper and/or the pickup slot)."""
    status: ArmStatus | None
    problems: list[str] = field(default_factory=list)
