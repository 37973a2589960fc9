"""The UWB delivery worker in its own process: delivers, is started again when killed, stops on request,
and two supervisors over one database (two replicas) drive the gateway through one child only."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.config import DatabaseSection, FaceSection, PlatformConfig, SecuritySection, UwbSection
from platform_server.uwb_process import UwbWorkerProcess
from platform_server.worker_lease import lease_for
from tests.integration.uwb.platform_support import check_in, states
from tests.support.waiting import wait_until
from tests.unit.platform_server.support import seed
from uwb.simulator import GatewaySimulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.platform_server.support import Seeded

DATA_KEY_TEXT = "test-only data key, never used in production"  # support.TEST_KEY's text
BANDS = 6
START_S = 60.0  # a spawned child imports the platform: generous on a loaded machine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def sim() -> Iterator[GatewaySimulator]:
    simulator = GatewaySimulator(tags=tuple(range(1, BANDS + 1)), delivery_window_s=2.0, retry_interval_s=0.01).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(f"sqlite:///{tmp_path / 'platform.db'}", experts=5, rooms=5, bands=BANDS)


def config_for(seeded: Seeded, sim: GatewaySimulator) -> PlatformConfig:
    return PlatformConfig(
        database=DatabaseSection(url=seeded.url),
        security=SecuritySection(data_key=DATA_KEY_TEXT),
        face=FaceSection(verifier="none"),
        uwb=UwbSection(port=sim.url, poll_s=0.1, retry_s=0.5),
    )


def test_the_worker_process_delivers_comes_back_when_killed_and_stops_on_request(
    seeded: Seeded, sim: GatewaySimulator
) -> None:
    config = config_for(seeded, sim)
    supervisor = UwbWorkerProcess(config).start().go()
    try:
        check_in(seeded, 0, 0)
        wait_until(lambda: states(seeded) == ["delivered"], START_S, "the first band written by the child")
        first = supervisor.pid
        assert first is not None
        assert first != os.getpid()
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: supervisor.restarts == 1, START_S, "the child started again")
        assert supervisor.pid != first
        check_in(seeded, 1, 1)
        wait_until(lambda: states(seeded) == ["delivered"] * 2, START_S, "a band written by the new child")
    finally:
        supervisor.stop()
    last = supervisor.pid
    assert last is not None
    with pytest.raises(ProcessLookupError):
        os.kill(last, 0)  # reaped: gone
    # The lease went with it: another process may take it now.
    lease = lease_for(sa.create_engine(seeded.url), config.uwb.port)
    assert lease.try_acquire()
    lease.release()


def test_the_child_waits_for_go_and_stops_on_request_before_it(seeded: Seeded, sim: GatewaySimulator) -> None:
    supervisor = UwbWorkerProcess(config_for(seeded, sim)).start()
    check_in(seeded, 0, 0)
    try:
        # Not told to go: it never opens the gateway (no frame reaches the simulator).
        with pytest.raises(pytest.fail.Exception):
            wait_until(lambda: sim.counters().frames_in > 0, 3.0, "a frame before go")
        assert states(seeded) == ["pending"]
    finally:
        supervisor.stop()
    pid = supervisor.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_two_supervisors_over_one_database_have_one_child_driving_the_gateway(
    seeded: Seeded, sim: GatewaySimulator
) -> None:
    config = config_for(seeded, sim)
    engine = sa.create_engine(seeded.url)
    first = UwbWorkerProcess(config).start().go()
    second = UwbWorkerProcess(config).start().go()
    try:
        check_in(seeded, 0, 0)
        wait_until(lambda: states(seeded) == ["delivered"], START_S, "a band written")
        lease = lease_for(engine, config.uwb.port)
        assert not lease.try_acquire()  # one child holds it
        # The holder's replica stops: the other child takes over and writes the next band.
        holder, other = (first, second) if _holds(first) else (second, first)
        holder.stop()
        check_in(seeded, 1, 1)
        wait_until(lambda: states(seeded) == ["delivered"] * 2, START_S, "a band written by the other child")
        assert other.restarts == 0
    finally:
        first.stop()
        second.stop()


def _holds(supervisor: UwbWorkerProcess) -> bool:
    """Whether the supervisor's child holds the gateway's lease (it has the lock file open)."""
    pid = supervisor.pid
    assert pid is not None
    return any(str(fd.readlink()).endswith(".lock") for fd in Path(f"/proc/{pid}/fd").iterdir())
