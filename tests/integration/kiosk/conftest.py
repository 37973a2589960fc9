"""Fixtures for the kiosk's integration tests: a fake platform on a real gRPC port, a queue file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from checkin.platform_client import PlatformClient
from tests.integration.kiosk.fake_platform import FakePlatformServer, settings_for, start_fake_platform

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def fake_platform() -> Iterator[FakePlatformServer]:
    running = start_fake_platform()
    yield running
    running.stop()


@pytest.fixture
def client(fake_platform: FakePlatformServer) -> Iterator[PlatformClient]:
    c = PlatformClient(settings_for(fake_platform.port), "K1")
    yield c
    c.close()


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "kiosk-queue.sqlite3"
