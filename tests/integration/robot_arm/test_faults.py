"""Every named fault of the issue, through the dispense transaction: each ends in a known, reported state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from robot_arm.models import BandLocation, BindingState, DispenseOutcome, DispenseReason
from robot_arm.protocol import ErrorCode

if TYPE_CHECKING:
    from robot_arm.dispenser import WristbandDispenser
    from robot_arm.simulator import ArmSimulator
    from tests.support.arm import FakeBandReader, FakePlatform


def _accounted(sim: ArmSimulator, total: int = 12) -> None:
    ledger = sim.ledger()
    bands = ledger.all_bands()
    assert len(bands) == total
    assert len(set(bands)) == total


def test_stock_empty(ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform) -> None:
    sim.inject("stock_empty")
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.NOT_DISPENSED
    assert result.reason is DispenseReason.STOCK_EMPTY
    assert (result.band_location, result.binding, result.uid) == (BandLocation.NONE, BindingState.NOT_ATTEMPTED, None)
    assert result.needs_staff
    assert result.stock_left == 0
    assert platform.bind_calls == []
    sim.refill()
    assert ready_dispenser.dispense(platform.bind).outcome is DispenseOutcome.HANDED_OUT
    _accounted(sim)


def test_stock_runs_out_for_real(
    sim: ArmSimulator, ready_dispenser: WristbandDispenser, platform: FakePlatform
) -> None:
    outcomes = [ready_dispenser.dispense(platform.bind).outcome for _ in range(13)]
    assert outcomes[:12] == [DispenseOutcome.HANDED_OUT] * 12
    assert outcomes[12] is DispenseOutcome.NOT_DISPENSED
    assert len(sim.ledger().handed_out) == 12


def test_jam_while_picking_leaves_band_in_stock_and_arm_recovered(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    sim.inject("jam")
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.NOT_DISPENSED
    assert (result.reason, result.fault, result.band_location) == (
        DispenseReason.FAULT,
        ErrorCode.JAM,
        BandLocation.STOCK,
    )
    assert not result.needs_staff  # cleared and re-homed once inside the closed enclosure
    assert sim.status().ready
    assert len(sim.ledger().stock) == 12
    assert platform.bind_calls == []


def test_jam_while_carrying_a_bound_band_sends_it_to_reject_bin(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform, band_reader: FakeBandReader
) -> None:
    def jam_after_binding(uid: str):  # type: ignore[no-untyped-def]
        decision = platform.bind(uid)
        sim.inject("jam")  # the next move (reader -> pickup) stalls
        return decision

    result = ready_dispenser.dispense(jam_after_binding)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.reason, result.fault, result.band_location) == (
        DispenseReason.FAULT,
        ErrorCode.JAM,
        BandLocation.REJECT_BIN,
    )
    assert result.binding is BindingState.BOUND
    assert result.needs_annul
    assert sim.ledger().reject_bin == (result.uid,)
    assert sim.status().ready
    _accounted(sim)


def test_band_dropped_ends_in_reject_bin(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    sim.inject("band_dropped")  # fires on the first move with a band: stock -> reader
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.fault, result.band_location, result.binding) == (
        ErrorCode.BAND_DROPPED,
        BandLocation.REJECT_BIN,
        BindingState.NOT_ATTEMPTED,
    )
    assert not result.needs_annul
    assert len(sim.ledger().reject_bin) == 1
    assert sim.status().ready


def test_gripper_fault_at_pick(ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform) -> None:
    sim.inject("gripper_fault")
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.NOT_DISPENSED
    assert (result.fault, result.band_location) == (ErrorCode.GRIPPER_FAULT, BandLocation.STOCK)
    assert sim.status().ready
    _accounted(sim)


def test_gripper_fault_at_release_into_pickup_rejects_the_bound_band(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    def fault_after_binding(uid: str):  # type: ignore[no-untyped-def]
        sim.inject("gripper_fault")  # the next gripper action is the release at the pickup slot
        return platform.bind(uid)

    result = ready_dispenser.dispense(fault_after_binding)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.fault, result.band_location, result.binding) == (
        ErrorCode.GRIPPER_FAULT,
        BandLocation.REJECT_BIN,
        BindingState.BOUND,
    )
    assert result.needs_annul
    assert sim.ledger().handed_out == ()


def test_pickup_not_taken_is_withdrawn_and_reported(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    sim.inject("pickup_not_taken")
    ready_dispenser.pickup_timeout = 0.4  # nobody takes the band: this wait is meant to run out
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.NOT_TAKEN
    assert (result.reason, result.band_location, result.binding) == (
        DispenseReason.NOT_TAKEN,
        BandLocation.REJECT_BIN,
        BindingState.BOUND,
    )
    assert result.needs_annul
    assert not result.needs_staff
    assert sim.ledger().reject_bin == (result.uid,)
    assert sim.ledger().pickup_slot is None


@pytest.mark.parametrize(
    ("fault", "code"), [("door_opened", ErrorCode.DOOR_OPEN), ("e_stop", ErrorCode.EMERGENCY_STOP)]
)
def test_door_or_estop_while_carrying_leaves_band_held_for_staff(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform, fault: str, code: ErrorCode
) -> None:
    def fault_after_binding(uid: str):  # type: ignore[no-untyped-def]
        sim.inject(fault)
        return platform.bind(uid)

    result = ready_dispenser.dispense(fault_after_binding)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.reason, result.fault, result.band_location) == (DispenseReason.FAULT, code, BandLocation.GRIPPER)
    assert result.needs_staff
    assert result.needs_annul
    assert sim.ledger().held == result.uid
    # Nothing moves by itself: the next expert is told the kiosk is not ready.
    refused = ready_dispenser.dispense(platform.bind)
    assert (refused.outcome, refused.reason) == (DispenseOutcome.NOT_DISPENSED, DispenseReason.ARM_NOT_READY)
    # Staff resolve the cause and run start-up: the held band goes to the reject bin.
    sim.close_door()
    sim.release_estop()
    report = ready_dispenser.start_up()
    assert report.ready
    assert report.band_in_gripper
    assert report.rejected == 1
    assert sim.ledger().reject_bin == (result.uid,)
    _accounted(sim)


@pytest.mark.parametrize("keep_band", [True, False])
def test_power_loss_mid_move(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform, keep_band: bool
) -> None:
    def power_loss_after_binding(uid: str):  # type: ignore[no-untyped-def]
        sim.inject("power_loss", keep_band=keep_band)
        return platform.bind(uid)

    result = ready_dispenser.dispense(power_loss_after_binding)
    assert result.outcome is DispenseOutcome.REJECTED
    assert result.reason is DispenseReason.POWER_LOSS
    assert result.needs_staff
    assert result.needs_annul
    status = sim.status()
    assert (status.boot, status.homed) == (2, False)
    if keep_band:
        assert result.band_location is BandLocation.GRIPPER
        assert sim.ledger().held == result.uid
    else:
        # Fell from the unpowered gripper down the chute; the reject-bin counter shows it.
        assert result.band_location is BandLocation.REJECT_BIN
        assert sim.ledger().reject_bin == (result.uid,)
    report = ready_dispenser.start_up()
    assert report.ready
    assert report.band_in_gripper is keep_band
    assert sim.ledger().reject_bin == (result.uid,)
    _accounted(sim)


def test_power_loss_while_picking_is_not_dispensed(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    sim.inject("power_loss", keep_band=True)
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.NOT_DISPENSED
    assert (result.reason, result.band_location) == (DispenseReason.POWER_LOSS, BandLocation.STOCK)
    assert result.needs_staff
    assert ready_dispenser.start_up().ready


@pytest.mark.parametrize("fault", ["lost_request", "lost_reply", "lost_event", "garbled_reply", "disconnect"])
def test_transport_faults_do_not_change_the_outcome(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform, fault: str
) -> None:
    sim.inject(fault)
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.HANDED_OUT
    assert sim.faults_fired[fault] == 1
    assert sim.ledger().handed_out == (result.uid,)
    assert list(platform.bound) == [result.uid]
