"""Fixtures for the UWB integration tests: a started gateway simulator and a driver connected to it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from uwb.driver import UwbGateway
from uwb.simulator import GatewaySimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TAGS = (0x204C, 0x0F07, 0x1A2B)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def sim() -> Iterator[GatewaySimulator]:
    simulator = GatewaySimulator(tags=TAGS, delivery_window_s=0.4, retry_interval_s=0.01).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def gateway(sim: GatewaySimulator) -> Iterator[UwbGateway]:
    gw = UwbGateway.open(sim.url, timeout=0.15, retries=2, busy_retries=1, poll_interval=0.01, ack_timeout=2.0)
    yield gw
    gw.close()
