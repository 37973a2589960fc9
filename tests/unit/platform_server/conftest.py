from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.unit.platform_server.support import Clock, FakeFaceVerifier, Seeded, seed

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier() -> FakeFaceVerifier:
    return FakeFaceVerifier()


@pytest.fixture
def seeded(tmp_path: Path, clock: Clock, verifier: FakeFaceVerifier) -> Seeded:
    return seed(f"sqlite:///{tmp_path / 'platform.db'}", clock=clock, verifier=verifier)
