"""The simulated world finds ../shared/data/faces beside the repository, as the tests do."""

from __future__ import annotations

import pytest

from sim_world import faces
from tests.support.paths import SHARED_FACES


def test_the_world_finds_the_shared_faces_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/data/faces is not present beside the repository")
    monkeypatch.delenv(faces.FACES_ENV, raising=False)
    # Without it every scenario face falls back to the stand-in and the face-mismatch case is skipped.
    assert faces.faces_dir() == SHARED_FACES.resolve()
