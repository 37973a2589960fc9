"""The driver against the simulator over a real TCP socket: replies, refusals, transport faults, power loss."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

import pytest

from device_kit.clock import ManualClock
from robot_arm.driver import ArmDriver
from robot_arm.errors import (
    ArmConfigError,
    ArmConnectionError,
    ArmMotionError,
    ArmPowerLossError,
    ArmRefusedError,
    ArmTimeoutError,
)
from robot_arm.protocol import Command, ErrorCode, Event, EventName, Station
from robot_arm.simulator import ArmSimulator, SimSettings

if TYPE_CHECKING:
    from collections.abc import Callable


def test_status_and_info_after_open(arm: ArmDriver, sim: ArmSimulator) -> None:
    status = arm.status()
    assert not status.homed
    assert status.stock == 12
    assert status.boot == 1
    info = arm.info()
    assert (info.model, info.protocol, info.boot) == ("WD-ARM1", 1, 1)
    assert any(r.direction == ">>>" and "INFO?" in r.line for r in arm.traffic)
    assert any(r.direction == "<<<" and r.line.startswith("$") for r in arm.traffic)


def test_motions_move_the_simulated_mechanism(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    arm.pick()
    arm.move(Station.REJECT)
    arm.release()
    status = arm.status()
    assert (status.position, status.holding, status.stock, status.reject_count) == (Station.REJECT, False, 11, 1)
    assert sim.ledger().reject_bin == ("04A1B2C3D40000",)


@pytest.mark.parametrize(
    ("prepare", "command", "code"),
    [
        ([], "pick", ErrorCode.NOT_HOMED),
        (["home"], "release", ErrorCode.NOT_HOLDING),
        (["home", "pick"], "pick", ErrorCode.ALREADY_HOLDING),
        (["home", "pick", "reader"], "release", ErrorCode.RELEASE_NOT_ALLOWED),
    ],
)
def test_immediate_refusals_have_numbered_codes(
    arm: ArmDriver, sim: ArmSimulator, prepare: list[str], command: str, code: ErrorCode
) -> None:
    actions: dict[str, Callable[[], object]] = {
        "home": arm.home,
        "pick": arm.pick,
        "release": arm.release,
        "reader": lambda: arm.move(Station.READER),
    }
    for step in prepare:
        actions[step]()
    before = dict(sim.motions_run)
    with pytest.raises(ArmRefusedError) as info:
        actions[command]()
    assert info.value.code is code
    assert sim.motions_run == before  # refused at once: nothing moved


def test_pickup_occupied_is_refused(arm: ArmDriver, sim: ArmSimulator) -> None:
    sim.inject("pickup_not_taken")
    arm.home()
    arm.pick()
    arm.move(Station.PICKUP)
    arm.release()
    arm.pick()
    arm.move(Station.PICKUP)
    with pytest.raises(ArmRefusedError) as info:
        arm.release()
    assert info.value.code is ErrorCode.PICKUP_OCCUPIED
    assert arm.retract() is True
    assert arm.retract() is False


def test_lost_reply_is_reconciled_without_repeating_the_motion(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("lost_reply")
    arm.pick()
    assert sim.faults_fired["lost_reply"] == 1
    assert sim.motions_run[Command.PICK] == 1  # JOB? said it arrived: not sent again
    assert arm.status().holding
    assert any("JOB?" in r.line for r in arm.traffic if r.direction == ">>>")


def test_lost_request_is_sent_again_because_the_arm_never_saw_it(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("lost_request")
    arm.move(Station.READER)
    assert sim.faults_fired["lost_request"] == 1
    assert sim.motions_run[Command.MOVE] == 1
    assert arm.status().position is Station.READER


def test_garbled_reply_is_dropped_and_reconciled(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("garbled_reply")
    arm.move(Station.STOCK)
    assert sim.motions_run[Command.MOVE] == 1
    assert arm.transport_faults >= 2  # the bad line and the missing reply


def test_lost_completion_event_is_settled_by_job_query(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("lost_event")
    arm.pick()
    assert sim.faults_fired["lost_event"] == 1
    assert arm.status().holding
    assert sim.motions_run[Command.PICK] == 1


def test_dropped_link_reconnects_and_keeps_state(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("disconnect")
    arm.pick()
    assert sim.faults_fired["disconnect"] == 1
    assert sim.motions_run[Command.PICK] == 1
    status = arm.status()
    assert status.holding
    assert status.boot == 1  # same controller session: not a power loss


def test_motion_fault_raises_with_its_code(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    sim.inject("jam")
    with pytest.raises(ArmMotionError) as info:
        arm.move(Station.READER)
    assert info.value.code is ErrorCode.JAM
    status = arm.status()
    assert (status.alarm, status.homed, status.position) == (ErrorCode.JAM, False, None)
    with pytest.raises(ArmRefusedError) as refused:
        arm.move(Station.READER)
    assert refused.value.code is ErrorCode.ALARM_ACTIVE
    arm.clear()
    arm.home()
    assert arm.status().ready


def test_power_loss_is_reported_and_the_link_comes_back(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    arm.pick()
    sim.inject("power_loss", keep_band=True)
    with pytest.raises(ArmPowerLossError):
        arm.move(Station.READER)
    status = arm.status()
    assert (status.boot, status.homed, status.holding, status.alarm) == (2, False, True, None)
    assert arm.boot == 2


def test_software_estop_aborts_and_needs_clear_and_home(arm: ArmDriver, sim: ArmSimulator) -> None:
    arm.home()
    events: list[Event] = []
    arm.add_event_listener(events.append)
    arm.estop()
    status = arm.status()
    assert status.estop
    assert not status.homed
    with pytest.raises(ArmRefusedError) as info:
        arm.home()
    assert info.value.code is ErrorCode.EMERGENCY_STOP
    arm.clear()
    arm.home()
    assert arm.status().ready
    assert any(e.name is EventName.ESTOP for e in events)


def test_physical_estop_cannot_be_cleared_from_the_host(arm: ArmDriver, sim: ArmSimulator) -> None:
    sim.press_estop()
    with pytest.raises(ArmRefusedError) as info:
        arm.clear()
    assert info.value.code is ErrorCode.EMERGENCY_STOP
    sim.release_estop()
    arm.clear()
    arm.home()
    assert arm.status().ready


def test_unreachable_port_fails_after_bounded_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ArmConnectionError, match="after 3 attempts"):
        ArmDriver.open(f"socket://127.0.0.1:{port}", reconnect_attempts=3, backoff=0.01)


def test_silent_peer_times_out_after_bounded_retries() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.05)
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            with pytest.raises(ArmConnectionError, match="no answer to INFO"):
                ArmDriver.open(f"socket://127.0.0.1:{port}", command_timeout=0.05, reconnect_attempts=2, backoff=0.01)
        finally:
            stop.set()
            thread.join()
            for sock in accepted:
                sock.close()


def test_bad_url_and_settings_are_config_errors() -> None:
    with pytest.raises(ArmConfigError, match="not a usable port"):
        ArmDriver.open("nonsense://x")
    with pytest.raises(ArmConfigError, match="'command_timeout' must be between"):
        ArmDriver.open("loop://", command_timeout=0)


def test_timeout_error_type_is_distinct(arm: ArmDriver) -> None:
    assert not issubclass(ArmTimeoutError, ArmConnectionError)


def test_slow_home_takes_longer_once(sim_settings: SimSettings) -> None:
    """On the simulator's clock, moved by hand: HOME x100 is two halves of 0.15 s at speed 1000, then 3 ms."""
    clock = ManualClock()
    with (
        ArmSimulator(sim_settings, clock=clock) as sim,
        ArmDriver.open(sim.url, command_timeout=0.25, motion_timeout=10.0, backoff=0.02) as arm,
    ):
        sim.inject("slow_home", factor=100)
        homed = _in_thread(arm.home)
        for _half in range(2):
            clock.wait_for_sleepers(1)
            clock.advance(0.14)
            clock.wait_for_sleepers(1)  # not there yet: 0.14 of the half's 0.15 s
            assert not homed.is_set()
            clock.advance(0.02)
        assert homed.wait(10)
        assert sim.faults_fired["slow_home"] == 1
        assert "slow_home" not in sim.pending_faults()
        homed = _in_thread(arm.home)
        for _half in range(2):
            clock.wait_for_sleepers(1)
            clock.advance(0.002)  # the normal 1.5 ms half
        assert homed.wait(10)
        assert sim.faults_fired["slow_home"] == 1
        assert arm.status().homed


def _in_thread(call: Callable[[], None]) -> threading.Event:
    """Run `call` on a thread; the event is set when it returns."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def test_a_late_loss_report_from_a_replaced_link_leaves_the_new_link_alone(arm: ArmDriver) -> None:
    """A closed link's reader can report its loss after the reconnect opened the next link (a loaded
    machine, a slow close); that report is about the old link and must not take the new one down."""
    old_link = arm._link
    assert old_link is not None
    old_protocol = old_link.reader.protocol
    arm._drop_link()
    arm.status()  # reconnects: a new link
    new_link = arm._link
    assert new_link is not None
    assert new_link is not old_link
    faults = arm.transport_faults
    old_protocol.connection_made(old_link.reader)  # as it was while the old link was open
    old_protocol.connection_lost(None)  # the old reader's report, arriving late
    assert new_link.alive
    assert arm._link is new_link
    assert arm.transport_faults == faults
    arm.status()
    assert arm._link is new_link  # answered on the same link, no reconnect
