"""Fetching the band ahead (while the expert signs), against the arm simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from robot_arm.models import BandLocation, BindingState, DispenseOutcome, DispenseProgress, DispenseStep
from robot_arm.protocol import Command, Station

if TYPE_CHECKING:
    from robot_arm.dispenser import WristbandDispenser
    from robot_arm.simulator import ArmSimulator
    from tests.support.arm import FakeBandReader, FakePlatform


def test_a_band_fetched_ahead_is_bound_and_handed_out_without_a_second_pick(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, band_reader: FakeBandReader, platform: FakePlatform
) -> None:
    uid = ready_dispenser.fetch()
    assert uid == "04A1B2C3D40000"
    assert band_reader.reads == [uid]
    assert platform.bind_calls == []  # nothing is bound while the expert signs
    status = sim.status()
    assert (status.holding, status.position) == (True, Station.READER)
    assert ready_dispenser.fetch() == uid  # a second fetch keeps the same band
    picks = sim.motions_run.get(Command.PICK, 0)
    steps: list[DispenseProgress] = []
    ready_dispenser.on_progress = steps.append
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.HANDED_OUT
    assert (result.uid, result.binding, result.band_location) == (uid, BindingState.BOUND, BandLocation.PICKUP_TAKEN)
    assert sim.motions_run.get(Command.PICK, 0) == picks  # the held band, not a new one
    assert band_reader.reads == [uid]  # read once, ahead
    assert [s.step for s in steps] == [
        DispenseStep.PREPARING,
        DispenseStep.BINDING,
        DispenseStep.PRESENTING,
        DispenseStep.TAKEN,
    ]
    assert sim.ledger().handed_out == (uid,)
    assert ready_dispenser.holding_fetched is None


def test_a_band_fetched_for_an_expert_who_leaves_goes_to_the_reject_bin_unbound(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    uid = ready_dispenser.fetch()
    result = ready_dispenser.put_away()
    assert result is not None
    assert (result.uid, result.band_location, result.binding) == (
        uid,
        BandLocation.REJECT_BIN,
        BindingState.NOT_ATTEMPTED,
    )
    assert not result.needs_annul
    assert not result.needs_staff
    assert sim.ledger().reject_bin == (uid,)
    assert platform.bind_calls == []
    assert sim.status().ready  # ready for the next expert
    assert ready_dispenser.put_away() is None  # nothing held any more
    # The next expert's dispense picks a fresh band.
    after = ready_dispenser.dispense(platform.bind)
    assert after.outcome is DispenseOutcome.HANDED_OUT
    assert after.uid not in {None, uid}


def test_an_unreadable_band_at_the_fetch_is_rejected_and_the_dispense_picks_another(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, band_reader: FakeBandReader, platform: FakePlatform
) -> None:
    band_reader.fail_next = 1
    assert ready_dispenser.fetch() is None
    assert sim.ledger().reject_bin == ("04A1B2C3D40000",)
    assert ready_dispenser.holding_fetched is None
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.HANDED_OUT
    assert result.uid == "04A1B2C3D40001"


def test_start_up_clears_a_band_held_ahead_into_the_reject_bin(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    uid = ready_dispenser.fetch()
    report = ready_dispenser.start_up()
    assert report.ready
    assert (report.band_in_gripper, report.rejected) == (True, 1)
    assert sim.ledger().reject_bin == (uid,)
    assert ready_dispenser.holding_fetched is None
    result = ready_dispenser.dispense(platform.bind)
    assert result.outcome is DispenseOutcome.HANDED_OUT
    assert result.uid != uid


def test_an_e_stop_while_the_band_waits_at_the_reader_is_never_bound(
    ready_dispenser: WristbandDispenser, sim: ArmSimulator, platform: FakePlatform
) -> None:
    uid = ready_dispenser.fetch()
    sim.press_estop()
    result = ready_dispenser.dispense(platform.bind)
    assert platform.bind_calls == []  # a band held through an e-stop is left for staff, never bound
    assert (result.uid, result.outcome, result.band_location) == (uid, DispenseOutcome.REJECTED, BandLocation.GRIPPER)
    assert result.needs_staff
    assert not result.needs_annul
