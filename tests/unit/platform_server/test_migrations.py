"""The Alembic migrations produce exactly the models' schema, and the audit log refuses changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from platform_server.db.engine import make_engine, upgrade
from platform_server.db.models import Base

if TYPE_CHECKING:
    from pathlib import Path


def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_audit_log_is_append_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail) "
            "VALUES ('2025-01-01 00:00:00', 'a', 'b', 'c', '')"
        )
    for statement in ("UPDATE audit_log SET outcome = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"), engine.begin() as c:
            c.exec_driver_sql(statement)
