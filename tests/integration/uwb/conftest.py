"""Fixtures for the UWB integration tests: a started gateway simulator and a driver connected to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from uwb.driver import UwbGateway
from uwb.simulator import GatewaySimulator

if TYPE_CHECKING:
    from collections.abc import Iterator

TAGS = (0x204C, 0x0F07, 0x1A2B)


@pytest.fixture
def sim() -> Iterator[GatewaySimulator]:
    simulator = GatewaySimulator(tags=TAGS, delivery_window_s=0.4, retry_interval_s=0.01).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def gateway(sim: GatewaySimulator) -> Iterator[UwbGateway]:
    # Generous link and acknowledgement timeouts: against the in-process simulator every request is
    # expected to be answered, and on a loaded CI machine a thread can be descheduled for hundreds of
    # ms. The one test that needs a silent gateway to time out shortens the link timeout itself.
    gw = UwbGateway.open(sim.url, timeout=2.0, retries=2, busy_retries=1, poll_interval=0.01, ack_timeout=10.0)
    yield gw
    gw.close()
