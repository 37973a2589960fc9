"""Timestamps written by the driver-level transactions (the hot paths' raw SQL) are stored as the ORM stores them.

SQLite keeps timestamps as text and compares them as text: a whole-second time written without its
microseconds ('…00:30:00') sorts before the same time written with them ('…00:30:00.000000').
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Kiosk
from platform_server.db.unit_of_work import run_driver_transaction
from tests.unit.platform_server.support import Clock, seed

if TYPE_CHECKING:
    from pathlib import Path

    from platform_server.db.unit_of_work import DriverTransaction

WHOLE_SECOND = dt.datetime(2025, 6, 1, 0, 30, tzinfo=dt.UTC)


def test_a_whole_second_is_stored_as_the_orm_stores_it_and_compares_equal(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=Clock(), kiosk_ids=["K1", "K2"])

    def by_driver(d: DriverTransaction) -> None:
        d.execute("UPDATE kiosks SET last_heartbeat_at = :at WHERE kiosk_id = 'K1'", {"at": d.timestamp(WHOLE_SECOND)})
        d.commit()

    run_driver_transaction(s.new_uow(), by_driver)
    with s.uow.engine.begin() as c:
        c.execute(sa.update(Kiosk).where(Kiosk.kiosk_id == "K2").values(last_heartbeat_at=WHOLE_SECOND))
        stored = c.execute(sa.text("SELECT kiosk_id, last_heartbeat_at FROM kiosks ORDER BY kiosk_id")).all()
        earlier = c.execute(sa.select(Kiosk.kiosk_id).where(Kiosk.last_heartbeat_at < WHOLE_SECOND)).all()
    assert stored == [("K1", "2025-06-01 00:30:00.000000"), ("K2", "2025-06-01 00:30:00.000000")]
    assert earlier == []
