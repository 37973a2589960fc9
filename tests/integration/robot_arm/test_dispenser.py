"""The dispense transaction's ordinary paths and start-up, against the simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from robot_arm.dispenser import WristbandDispenser
from robot_arm.models import (
    BandLocation,
    BindingState,
    DispenseOutcome,
    DispenseProgress,
    DispenseReason,
    DispenseStep,
)
from robot_arm.protocol import Station

if TYPE_CHECKING:
    from robot_arm.driver import ArmDriver
    from robot_arm.simulator import ArmSimulator
    from tests.support.arm import FakeBandReader, FakePlatform


def test_hands_out_a_bound_band_and_reports_progress(
    arm: ArmDriver, sim: ArmSimulator, band_reader: FakeBandReader, platform: FakePlatform
) -> None:
    steps: list[DispenseProgress] = []
    dispenser = WristbandDispenser(
        arm, band_reader.read_uid, pickup_timeout=5.0, read_timeout=5.0, poll_interval=0.05, on_progress=steps.append
    )
    assert dispenser.start_up().ready
    result = dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.HANDED_OUT
    assert (result.uid, result.reason, result.band_location) == ("04A1B2C3D40000", None, BandLocation.PICKUP_TAKEN)
    assert (result.binding, result.check_in_id, result.needs_annul, result.needs_staff) == (
        BindingState.BOUND,
        "ci-1",
        False,
        False,
    )
    assert result.stock_left == 11
    assert [s.step for s in steps] == [
        DispenseStep.PREPARING,
        DispenseStep.READING,
        DispenseStep.BINDING,
        DispenseStep.PRESENTING,
        DispenseStep.TAKEN,
    ]
    assert sim.ledger().handed_out == ("04A1B2C3D40000",)
    assert band_reader.present is None  # the band left the reader station
    assert sim.status().position is Station.HOME  # parked away from the slot


def test_unreadable_band_goes_to_reject_bin_unbound(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, band_reader: FakeBandReader, platform: FakePlatform
) -> None:
    band_reader.fail_next = 1
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.reason, result.uid, result.binding) == (
        DispenseReason.UNREADABLE_UID,
        None,
        BindingState.NOT_ATTEMPTED,
    )
    assert result.band_location is BandLocation.REJECT_BIN
    assert "card unresponsive" in result.detail
    assert platform.bind_calls == []
    assert sim.ledger().reject_bin == ("04A1B2C3D40000",)
    assert not result.needs_staff


def test_binding_refused_rejects_with_platform_reason(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    platform.refuse_next = "BATCH_CLOSED"
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.reason, result.bind_reason, result.binding) == (
        DispenseReason.BIND_REFUSED,
        "BATCH_CLOSED",
        BindingState.REFUSED,
    )
    assert not result.needs_annul
    assert sim.ledger().reject_bin == (result.uid,)


def test_binding_call_failing_means_unknown_binding_and_annul(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    platform.fail_next = ConnectionError("deadline exceeded")
    platform.fail_after_binding = True
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.REJECTED
    assert (result.reason, result.binding) == (DispenseReason.BIND_FAILED, BindingState.UNKNOWN)
    assert result.needs_annul
    assert sim.ledger().handed_out == ()


def test_start_up_rejects_a_band_left_in_the_gripper(
    dispenser: WristbandDispenser, arm: ArmDriver, sim: ArmSimulator
) -> None:
    arm.home()
    arm.pick()
    arm.move(Station.READER)  # as if the kiosk restarted mid-dispense
    report = dispenser.start_up()
    assert report.ready
    assert report.band_in_gripper
    assert report.rejected == 1
    assert sim.ledger().held is None
    assert sim.ledger().reject_bin == ("04A1B2C3D40000",)


def test_start_up_withdraws_a_band_left_in_the_pickup_slot(
    dispenser: WristbandDispenser, arm: ArmDriver, sim: ArmSimulator
) -> None:
    sim.inject("pickup_not_taken")
    arm.home()
    arm.pick()
    arm.move(Station.PICKUP)
    arm.release()
    report = dispenser.start_up()
    assert report.ready
    assert report.band_in_pickup
    assert report.rejected == 1
    assert sim.ledger().reject_bin == ("04A1B2C3D40000",)


def test_start_up_with_estop_pressed_does_not_move(dispenser: WristbandDispenser, sim: ArmSimulator) -> None:
    sim.press_estop()
    report = dispenser.start_up()
    assert not report.ready
    assert report.problems == ["emergency stop pressed"]
    assert sum(sim.motions_run.values()) == 0


def test_dispense_refuses_when_arm_not_started(dispenser: WristbandDispenser, platform: FakePlatform) -> None:
    result = dispenser.dispense(platform.bind)
    assert (result.outcome, result.reason) == (DispenseOutcome.NOT_DISPENSED, DispenseReason.ARM_NOT_READY)
    assert "not homed" in result.detail
    assert platform.bind_calls == []
