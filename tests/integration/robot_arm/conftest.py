"""Fixtures for the arm: the simulator on a real TCP port, the driver over socket://, a fake band reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from robot_arm.dispenser import WristbandDispenser
from robot_arm.driver import ArmDriver
from robot_arm.simulator import ArmSimulator, SimSettings, default_bands
from tests.support.arm import FakeBandReader, FakePlatform

if TYPE_CHECKING:
    from collections.abc import Iterator

SPEED = 1000.0


@pytest.fixture
def band_reader() -> FakeBandReader:
    return FakeBandReader()


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def sim_settings() -> SimSettings:
    return SimSettings(bands=tuple(default_bands(12)), speed=SPEED, pickup_take_after=1.0, reboot_time=2.0, seed=7)


@pytest.fixture
def sim(sim_settings: SimSettings, band_reader: FakeBandReader) -> Iterator[ArmSimulator]:
    simulator = ArmSimulator(
        sim_settings, on_band_at_reader=band_reader.band_arrived, on_band_left_reader=band_reader.band_left
    )
    with simulator:
        yield simulator


@pytest.fixture
def arm(sim: ArmSimulator) -> Iterator[ArmDriver]:
    driver = ArmDriver.open(sim.url, command_timeout=0.25, motion_timeout=1.0, backoff=0.02)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def dispenser(arm: ArmDriver, band_reader: FakeBandReader) -> WristbandDispenser:
    # Generous pickup and read timeouts: the simulated expert takes the band at once and the band reader
    # sees it at once, and a loaded CI machine can stall a thread for hundreds of ms. Tests where the
    # band must not be taken shorten pickup_timeout themselves.
    return WristbandDispenser(arm, band_reader.read_uid, pickup_timeout=5.0, read_timeout=5.0, poll_interval=0.05)


@pytest.fixture
def ready_dispenser(dispenser: WristbandDispenser) -> WristbandDispenser:
    report = dispenser.start_up()
    assert report.ready, report.problems
    return dispenser
