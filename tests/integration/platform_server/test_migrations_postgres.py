from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from platform_server.db.engine import make_engine, upgrade
from platform_server.db.models import Base

pytestmark = pytest.mark.postgres


def test_postgres_migrations_match_models_and_guard_the_audit_log(pg_schema_url: str) -> None:
    engine = make_engine(pg_schema_url)
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail) VALUES (now(), 'a', 'b', 'c', '')"
        )
    for statement in ("DELETE FROM audit_log", "TRUNCATE audit_log", "UPDATE audit_log SET outcome = 'x'"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as c:
            c.exec_driver_sql(statement)
    # A row from before the chain may be given its place once (seq and mac), nothing else.
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE audit_log SET seq = 1, mac = 'm'")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as c:
        c.exec_driver_sql("UPDATE audit_log SET mac = 'other'")
    engine.dispose()
