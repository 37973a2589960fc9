"""The UWB worker's "a newer row for this tag?" check reads the tag index on SQLite and PostgreSQL.

Without it the check read every outbox row newer than the one checked: after a gateway outage, with
a backlog waiting, once per row of every round (docs/performance.md, "Bands on time").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.services import uwb
from tests.unit.platform_server.support import seed

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def _plan(connection: Connection) -> str:
    sql = str(
        uwb._CURRENT_TAGS.params(ids=[1, 2, 3]).compile(  # the statement the worker runs
            dialect=connection.dialect, compile_kwargs={"literal_binds": True}
        )
    )
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table would be read whole anyway
        return "\n".join(str(row[0]) for row in connection.execute(sa.text("EXPLAIN " + sql)))
    return "\n".join(str(row[-1]) for row in connection.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))


def test_the_newer_row_check_is_an_index_range_on_the_tag(db_url: str) -> None:
    seeded = seed(db_url, experts=1, rooms=1, bands=1)
    try:
        with seeded.uow.engine.connect() as connection:
            plan = _plan(connection)
    finally:
        seeded.uow.engine.dispose()
    assert "ix_uwb_deliveries_tag_id_id" in plan, plan
