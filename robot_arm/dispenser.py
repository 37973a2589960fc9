"""The dispense transaction the kiosk runs: stock → reader → bind → pickup (or the reject bin), never losing a band.

Rules it keeps, whatever fails:
- a band goes to the pickup slot only after `bind(uid)` said it is bound;
- every other band that left the stock ends in the reject bin, or the result says exactly where it
  is (gripper, pickup slot, unknown) and that staff are needed;
- after an e-stop, an opened door or a power loss the arm is not moved again without a person
  (restart after power restoration must not be automatic, IEC 60204-1 §7.5): staff run start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from robot_arm.errors import ArmCommandError, ArmError, ArmPowerLossError
from robot_arm.models import (
    BandLocation,
    BindDecision,
    BindingState,
    DispenseOutcome,
    DispenseProgress,
    DispenseReason,
    DispenseResult,
    DispenseStep,
    StartUpReport,
    normalise_uid,
)
from robot_arm.protocol import ArmStatus, ErrorCode, Event, EventName, Station

if TYPE_CHECKING:
    from collections.abc import Callable

    from robot_arm.models import ArmController

log = logging.getLogger(__name__)

RECOVERABLE_ALARMS: Final = frozenset(
    {ErrorCode.JAM, ErrorCode.GRIPPER_FAULT, ErrorCode.BAND_DROPPED, ErrorCode.ABORTED}
)
"""Alarms the dispenser may clear itself once, inside the closed enclosure; all others need a person."""
STAFF_LOCATIONS: Final = frozenset({BandLocation.GRIPPER, BandLocation.PICKUP_SLOT, BandLocation.UNKNOWN})


@dataclass(slots=True)
class _Attempt:
    """What one dispense has done so far."""

    reject_before: int
    boot_before: int
    uid: str | None = None
    picked: bool = False
    binding: BindingState = BindingState.NOT_ATTEMPTED
    decision: BindDecision | None = None
    reason: DispenseReason | None = None
    fault: ErrorCode | None = None
    details: list[str] = field(default_factory=list)

    def fail(self, reason: DispenseReason, err: BaseException | None = None) -> None:
        """Record the first reason; later failures only add detail and a fault code."""
        if self.reason is None:
            self.reason = reason
        if isinstance(err, ArmCommandError) and self.fault is None:
            self.fault = err.code
        if err is not None:
            self.details.append(str(err))


class WristbandDispenser:
    """Runs start-up and dispenses one band per check-in over an ArmController."""

    def __init__(
        self,
        arm: ArmController,
        read_uid: Callable[[float], str],
        *,
        pickup_timeout: float,
        read_timeout: float = 3.0,
        poll_interval: float = 0.5,
        on_progress: Callable[[DispenseProgress], None] | None = None,
    ) -> None:
        if not 0 < pickup_timeout <= 600:
            raise ValueError(f"pickup_timeout must be 0..600 s, got {pickup_timeout}")
        if not 0 < read_timeout <= 60:
            raise ValueError(f"read_timeout must be 0..60 s, got {read_timeout}")
        self.arm = arm
        self.read_uid = read_uid
        self.pickup_timeout = pickup_timeout
        self.read_timeout = read_timeout
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self._lock = threading.Lock()
        # A band fetched ahead (fetch()) and held at the reader with its UID read, for the next dispense.
        self._held: _Attempt | None = None

    # -- start-up ------------------------------------------------------------------------------

    def start_up(self) -> StartUpReport:
        """Home; a band found in the gripper goes to the reject bin, one left in the pickup slot is withdrawn."""
        with self._lock:
            self._held = None  # a band fetched ahead is in the gripper: start-up rejects it below
            problems: list[str] = []
            try:
                status = self.arm.status()
            except ArmError as err:
                return StartUpReport(
                    ready=False,
                    homed=False,
                    band_in_gripper=False,
                    band_in_pickup=False,
                    rejected=0,
                    status=None,
                    problems=[f"arm unreachable: {err}"],
                )
            held, in_slot = status.holding, status.pickup_occupied
            if status.estop or status.door_open:
                problems.append("emergency stop pressed" if status.estop else "service door open")
                return StartUpReport(
                    ready=False,
                    homed=status.homed,
                    band_in_gripper=held,
                    band_in_pickup=in_slot,
                    rejected=0,
                    status=status,
                    problems=problems,
                )
            rejected = 0
            try:
                if status.alarm is not None:
                    self.arm.clear()
                self.arm.home()
                if held:
                    log.warning("start-up: a band was left in the gripper; moving it to the reject bin")
                    self.arm.move(Station.REJECT)
                    self.arm.release()
                    rejected += 1
                if in_slot:
                    log.warning("start-up: a band was left in the pickup slot; withdrawing it")
                    rejected += int(self.arm.retract())
                self.arm.move(Station.HOME)
                final = self.arm.status()
            except ArmError as err:
                problems.append(f"start-up failed: {err}")
                try:
                    final = self.arm.status()
                except ArmError:
                    return StartUpReport(
                        ready=False,
                        homed=False,
                        band_in_gripper=held,
                        band_in_pickup=in_slot,
                        rejected=rejected,
                        status=None,
                        problems=problems,
                    )
            if final.stock == 0:
                problems.append("wristband stock empty")
            ready = final.ready and final.stock > 0
            return StartUpReport(ready, final.homed, held, in_slot, rejected, final, problems)

    # -- dispense ------------------------------------------------------------------------------

    def fetch(self) -> str | None:
        """Bring a band to the reader and read its UID ahead of the dispense (while the expert signs).

        The band stays in the gripper at the reader, unbound; the next `dispense` binds and hands out
        that band instead of picking one. A fetch that fails puts its band in the reject bin and
        returns None (the dispense then picks a band as usual). Returns the UID held.
        """
        with self._lock:
            if self._held is not None:
                return self._held.uid
            try:
                status = self.arm.status()
            except ArmError as err:
                log.warning("fetch ahead: arm unreachable: %s", err)
                return None
            if not status.ready or status.stock == 0:
                return None
            attempt = _Attempt(reject_before=status.reject_count, boot_before=status.boot)
            if not self._pick_and_read(attempt):
                self._reject(attempt)
                return None
            self._held = attempt
            return attempt.uid

    def put_away(self) -> DispenseResult | None:
        """The expert left before signing: the fetched band (never bound) goes to the reject bin.

        Rule: a band fetched ahead is never handed to anyone but the expert it was fetched for; it
        was not bound, so staff may return it from the reject bin to the magazine. None when no band
        was held.
        """
        with self._lock:
            attempt, self._held = self._held, None
            if attempt is None:
                return None
            log.info("fetch ahead: band %s not needed; to the reject bin", attempt.uid)
            return self._reject(attempt)

    @property
    def holding_fetched(self) -> str | None:
        """The UID of the band fetched ahead and held at the reader, if any."""
        return self._held.uid if self._held is not None else None

    def dispense(self, bind: Callable[[str], BindDecision]) -> DispenseResult:
        """Pick a band, read its UID, let `bind` bind it, and hand it out, or reject it with the reason.

        A band fetched ahead by `fetch` is used as it is: the dispense starts at the binding.
        """
        with self._lock:
            held, self._held = self._held, None
            done = self._dispense_held(held, bind) if held is not None else None
            return done if done is not None else self._dispense_fresh(bind)

    def _dispense_fresh(self, bind: Callable[[str], BindDecision]) -> DispenseResult:
        """The whole transaction from the stock (lock held)."""
        try:
            status = self.arm.status()
        except ArmError as err:
            return self._not_dispensed(DispenseReason.ARM_UNREACHABLE, None, f"arm unreachable: {err}")
        if not status.ready:
            return self._not_dispensed(DispenseReason.ARM_NOT_READY, status, _not_ready_detail(status))
        if status.stock == 0:
            return self._not_dispensed(DispenseReason.STOCK_EMPTY, status, "wristband stock empty")
        attempt = _Attempt(reject_before=status.reject_count, boot_before=status.boot)
        self._progress(DispenseStep.PREPARING)
        if not self._pick_and_read(attempt):
            return self._reject(attempt)
        assert attempt.uid is not None
        self._progress(DispenseStep.BINDING, attempt.uid)
        if not self._bind(attempt, bind):
            return self._reject(attempt)
        return self._present(attempt)

    def _dispense_held(self, held: _Attempt, bind: Callable[[str], BindDecision]) -> DispenseResult | None:
        """Bind and hand out the band fetched ahead; None when it is no longer at the reader (then pick afresh)."""
        self._progress(DispenseStep.PREPARING)
        if not self._still_holding(held):
            # A fault or a restart since the fetch: that band goes to the reject bin and a fresh one is
            # picked; if it cannot go there, the result says where it is and that staff are needed.
            rejected = self._reject(held)
            return None if rejected.band_location is BandLocation.REJECT_BIN else rejected
        assert held.uid is not None
        self._progress(DispenseStep.BINDING, held.uid)
        if not self._bind(held, bind):
            return self._reject(held)
        return self._present(held)

    def _still_holding(self, held: _Attempt) -> bool:
        """Whether the band fetched ahead is still in the gripper at the reader, with the arm ready to go on."""
        try:
            status = self.arm.status()
        except ArmError as err:
            self._note_arm_error(held, err)
            return False
        return (
            status.holding
            and status.position is Station.READER
            and status.alarm is None
            and not status.estop
            and not status.door_open
            and status.boot == held.boot_before
        )

    def _pick_and_read(self, attempt: _Attempt) -> bool:
        try:
            self.arm.pick()
            attempt.picked = True
            self.arm.move(Station.READER)
        except ArmError as err:
            self._note_arm_error(attempt, err)
            return False
        self._progress(DispenseStep.READING)
        try:
            attempt.uid = normalise_uid(self.read_uid(self.read_timeout))
        except Exception as err:
            # The reader's own errors (no card, timeout, PC/SC failure) all mean the same here.
            log.warning("band UID unreadable at the reader: %s", err)
            attempt.fail(DispenseReason.UNREADABLE_UID)
            attempt.details.append(f"UID unreadable: {err}")
            return False
        return True

    def _bind(self, attempt: _Attempt, bind: Callable[[str], BindDecision]) -> bool:
        assert attempt.uid is not None
        try:
            decision = bind(attempt.uid)
        except Exception as err:
            # The platform may have bound the band before the call failed: the kiosk must annul.
            log.warning("binding band %s failed: %s", attempt.uid, err)
            attempt.binding = BindingState.UNKNOWN
            attempt.fail(DispenseReason.BIND_FAILED)
            attempt.details.append(f"bind failed: {err}")
            return False
        attempt.decision = decision
        if not decision.bound:
            attempt.binding = BindingState.REFUSED
            attempt.fail(DispenseReason.BIND_REFUSED)
            attempt.details.append(f"binding refused: {decision.reason}")
            return False
        attempt.binding = BindingState.BOUND
        return True

    def _present(self, attempt: _Attempt) -> DispenseResult:
        slot_emptied = threading.Event()

        def on_event(event: Event) -> None:
            if event.name is EventName.SLOT and event.args[:1] == ("EMPTY",):
                slot_emptied.set()

        self.arm.add_event_listener(on_event)
        try:
            try:
                self.arm.move(Station.PICKUP)
                self.arm.release()
            except ArmError as err:
                self._note_arm_error(attempt, err)
                return self._reject(attempt)
            self._progress(DispenseStep.PRESENTING, attempt.uid)
            taken = self._wait_taken(slot_emptied)
        finally:
            self.arm.remove_event_listener(on_event)
        if taken is None:
            return self._finish(attempt, DispenseOutcome.REJECTED, BandLocation.PICKUP_SLOT)
        if taken:
            self._progress(DispenseStep.TAKEN, attempt.uid)
            return self._finish(attempt, DispenseOutcome.HANDED_OUT, BandLocation.PICKUP_TAKEN)
        self._progress(DispenseStep.WITHDRAWING, attempt.uid)
        try:
            withdrawn = self.arm.retract()
        except ArmError as err:
            self._note_arm_error(attempt, err)
            return self._after_failed_retract(attempt)
        if not withdrawn:
            # Taken in the last instant, between our last look and the flap closing.
            self._progress(DispenseStep.TAKEN, attempt.uid)
            return self._finish(attempt, DispenseOutcome.HANDED_OUT, BandLocation.PICKUP_TAKEN)
        attempt.fail(DispenseReason.NOT_TAKEN)
        return self._finish(attempt, DispenseOutcome.NOT_TAKEN, BandLocation.REJECT_BIN)

    def _wait_taken(self, slot_emptied: threading.Event) -> bool | None:
        """True once the slot sensor reads empty, False at the pickup timeout, None if the arm cannot tell."""
        deadline = time.monotonic() + self.pickup_timeout
        unreachable_since: float | None = None
        while True:
            remaining = deadline - time.monotonic()
            if slot_emptied.wait(max(0.0, min(remaining, self.poll_interval))):
                return True
            try:
                # Events can be lost on the wire; the sensor itself is the truth.
                if not self.arm.status().pickup_occupied:
                    return True
                unreachable_since = None
            except ArmError as err:
                log.warning("cannot read the pickup sensor: %s", err)
                unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() >= deadline:
                return None if unreachable_since is not None else False

    def _after_failed_retract(self, attempt: _Attempt) -> DispenseResult:
        try:
            status = self.arm.status()
        except ArmError:
            return self._finish(attempt, DispenseOutcome.REJECTED, BandLocation.PICKUP_SLOT)
        if status.pickup_occupied:
            return self._finish(attempt, DispenseOutcome.NOT_TAKEN, BandLocation.PICKUP_SLOT)
        if status.reject_count > attempt.reject_before:
            attempt.fail(DispenseReason.NOT_TAKEN)
            return self._finish(attempt, DispenseOutcome.NOT_TAKEN, BandLocation.REJECT_BIN)
        return self._finish(attempt, DispenseOutcome.HANDED_OUT, BandLocation.PICKUP_TAKEN)

    # -- rejecting and recovering --------------------------------------------------------------

    def _note_arm_error(self, attempt: _Attempt, err: ArmError) -> None:
        log.warning("arm fault during dispense: %s", err)
        if isinstance(err, ArmPowerLossError):
            attempt.fail(DispenseReason.POWER_LOSS, err)
        elif isinstance(err, ArmCommandError):
            attempt.fail(DispenseReason.STOCK_EMPTY if err.code is ErrorCode.STOCK_EMPTY else DispenseReason.FAULT, err)
        else:
            attempt.fail(DispenseReason.ARM_UNREACHABLE, err)

    def _reject(self, attempt: _Attempt) -> DispenseResult:
        """Put whatever band this dispense took into the reject bin, if that can be done safely."""
        self._progress(DispenseStep.REJECTING, attempt.uid)
        location = self._bring_band_to_reject(attempt)
        if location is BandLocation.STOCK:
            return self._finish(attempt, DispenseOutcome.NOT_DISPENSED, location)
        return self._finish(attempt, DispenseOutcome.REJECTED, location)

    def _bring_band_to_reject(self, attempt: _Attempt) -> BandLocation:
        try:
            status = self.arm.status()
        except ArmError as err:
            attempt.fail(DispenseReason.ARM_UNREACHABLE, err)
            return BandLocation.UNKNOWN
        if not status.holding:
            return self._where_without_gripper(attempt, status)
        if not self._may_move(attempt, status):
            return BandLocation.GRIPPER
        try:
            if status.alarm is not None:
                self.arm.clear()
            if not status.homed:
                self.arm.home()
            self.arm.move(Station.REJECT)
            self.arm.release()
        except ArmError as err:
            self._note_arm_error(attempt, err)
            try:
                status = self.arm.status()
            except ArmError:
                return BandLocation.UNKNOWN
            return BandLocation.GRIPPER if status.holding else self._where_without_gripper(attempt, status)
        return BandLocation.REJECT_BIN

    def _where_without_gripper(self, attempt: _Attempt, status: ArmStatus) -> BandLocation:
        if status.reject_count > attempt.reject_before:
            return BandLocation.REJECT_BIN
        if not attempt.picked:
            return BandLocation.STOCK
        return BandLocation.UNKNOWN

    def _may_move(self, attempt: _Attempt, status: ArmStatus) -> bool:
        """Whether the dispenser may move the arm itself to recover, or must leave it to staff."""
        if status.estop or status.door_open:
            return False
        if status.boot != attempt.boot_before:
            # Restart after power restoration must not be automatic: staff run start-up.
            return False
        return status.alarm is None or status.alarm in RECOVERABLE_ALARMS

    def _restore(self, attempt: _Attempt) -> ArmStatus | None:
        """Leave the arm ready for the next expert where that is safe: clear a recoverable alarm, home, park."""
        try:
            status = self.arm.status()
            if status.holding or not self._may_move(attempt, status):
                return status
            if status.alarm is None and status.homed and status.position is Station.HOME:
                return status
            if status.alarm is not None:
                self.arm.clear()
            if not status.homed:
                self.arm.home()
            elif status.position is not Station.HOME:
                # Park away from the pickup slot, where hands reach in.
                self.arm.move(Station.HOME)
            return self.arm.status()
        except ArmError as err:
            self._note_arm_error(attempt, err)
            attempt.details.append(f"restoring the arm failed: {err}")
        try:
            return self.arm.status()
        except ArmError:
            return None

    def _finish(self, attempt: _Attempt, outcome: DispenseOutcome, location: BandLocation) -> DispenseResult:
        status = self._restore(attempt)
        arm_ok = status is not None and status.ready
        if outcome is DispenseOutcome.HANDED_OUT:
            attempt.reason = None
        decision = attempt.decision
        result = DispenseResult(
            outcome=outcome,
            uid=attempt.uid,
            reason=attempt.reason,
            band_location=location,
            binding=attempt.binding,
            fault=attempt.fault,
            bind_reason=decision.reason if decision else None,
            check_in_id=decision.check_in_id if decision else None,
            needs_staff=location in STAFF_LOCATIONS or not arm_ok,
            stock_left=status.stock if status else None,
            detail="; ".join(attempt.details),
        )
        log.info(
            "dispense: %s uid=%s reason=%s band=%s binding=%s staff=%s",
            result.outcome.value,
            result.uid,
            result.reason.value if result.reason else "-",
            result.band_location.value,
            result.binding.value,
            result.needs_staff,
        )
        return result

    def _not_dispensed(self, reason: DispenseReason, status: ArmStatus | None, detail: str) -> DispenseResult:
        return DispenseResult(
            outcome=DispenseOutcome.NOT_DISPENSED,
            uid=None,
            reason=reason,
            band_location=BandLocation.NONE,
            binding=BindingState.NOT_ATTEMPTED,
            fault=status.alarm if status else None,
            needs_staff=True,
            stock_left=status.stock if status else None,
            detail=detail,
        )

    def _progress(self, step: DispenseStep, uid: str | None = None) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(DispenseProgress(step, uid))
        except Exception:
            log.exception("dispense progress listener failed")


def _not_ready_detail(status: ArmStatus) -> str:
    reasons = []
    if status.estop:
        reasons.append("emergency stop")
    if status.door_open:
        reasons.append("service door open")
    if status.alarm is not None:
        reasons.append(f"alarm E{int(status.alarm)} {status.alarm.name}")
    if not status.homed:
        reasons.append("not homed")
    if status.holding:
        reasons.append("a band is in the gripper")
    if status.pickup_occupied:
        reasons.append("a band is in the pickup slot")
    if status.state.value != "IDLE":
        reasons.append(f"state {status.state.value}")
    return "arm not ready: " + ", ".join(reasons or ["unknown"])
