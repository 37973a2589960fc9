"""A claim's acknowledged band writes recorded in one transaction, on SQLite and PostgreSQL: each row
marked once, one UWB_DELIVERED event and one audit entry per band newly marked, nothing for a row
marked before, and nothing at all when an id is unknown.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from platform_server.errors import NotFoundError
from platform_server.services import audit_chain, events
from platform_server.services import uwb as outbox
from tests.integration.uwb.platform_support import check_in, deliveries
from tests.unit.platform_server.support import seed


def counts(engine: sa.Engine) -> tuple[int, int]:
    """UWB_DELIVERED events, and audit entries of delivered band writes."""
    with engine.connect() as c:
        delivered_events = c.execute(
            sa.text("SELECT count(*) FROM check_in_events WHERE kind = :k"), {"k": events.EventKind.UWB_DELIVERED.value}
        ).scalar_one()
        audited = c.exec_driver_sql(
            "SELECT count(*) FROM audit_log WHERE actor = 'uwb' AND outcome = 'delivered'"
        ).scalar_one()
    return int(delivered_events), int(audited)


def test_a_claims_acknowledgements_are_recorded_once_each(db_url: str) -> None:
    s = seed(db_url, experts=4, rooms=4, bands=4)
    for n in range(4):
        check_in(s, n, n)
    ids = [int(str(row["id"])) for row in deliveries(s)]
    outbox.mark_delivered(s.new_uow(), s.ctx, ids[0])  # acknowledged in an earlier round
    assert counts(s.uow.engine) == (1, 1)
    with pytest.raises(NotFoundError, match="does not exist"):
        outbox.mark_delivered_many(s.new_uow(), s.ctx, [*ids, 999_999])
    assert counts(s.uow.engine) == (1, 1)  # nothing half-done
    outbox.mark_delivered_many(s.new_uow(), s.ctx, ids)
    rows = deliveries(s)
    assert [r["state"] for r in rows] == ["delivered"] * 4
    assert [r["attempts"] for r in rows] == [1] * 4  # the earlier one not counted twice
    assert counts(s.uow.engine) == (4, 4)
    report = audit_chain.verify(s.uow.engine, audit_chain.key_for(s.uow.engine))
    assert report.ok, report.findings
