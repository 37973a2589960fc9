"""A real gRPC server on a free port over a real SQLite file or a private PostgreSQL schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.platform import Running, db_url, pg_schema_url, start, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["db_url", "pg_schema_url"]  # fixtures of tests/support/platform.py used by this area


@pytest.fixture
def running(db_url: str) -> Iterator[Running]:
    r = start(db_url)
    yield r
    stop(r)
