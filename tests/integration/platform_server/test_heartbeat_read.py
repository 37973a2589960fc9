"""A heartbeat that changes nothing is answered from one read; a change, or an old stored beat, is written.

On SQLite and PostgreSQL (the read runs on a driver connection and parses each driver's timestamps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db.models import Kiosk
from platform_server.services import kiosks
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator


@pytest.fixture
def seeded(db_url: str) -> Iterator[Seeded]:
    s = seed(db_url, clock=Clock())
    yield s
    s.uow.engine.dispose()


def _beat(s: Seeded, stock: int) -> kiosks.HeartbeatAnswer:
    return kiosks.heartbeat(
        s.new_uow(),
        s.ctx,
        kiosks.HeartbeatCommand(
            kiosk_id="K1",
            devices=(kiosks.DeviceHealth("printer", "OK"),),
            band_stock=stock,
            pending_check_ins=0,
            out_of_service=False,
            software_version="1.0",
        ),
    )


def _stored(s: Seeded) -> tuple[dt.datetime | None, int | None]:
    with s.new_uow() as u:
        row = u.execute(sa.select(Kiosk.last_heartbeat_at, Kiosk.band_stock).where(Kiosk.kiosk_id == "K1")).one()
    return row[0], row[1]


def test_unchanged_beats_are_read_only_until_the_refresh_interval(seeded: Seeded) -> None:
    s = seeded
    clock = s.ctx.clock
    assert isinstance(clock, Clock)
    assert _beat(s, 50).registered
    first = _stored(s)
    assert first == (clock(), 50)
    clock.advance(kiosks.HEARTBEAT_REFRESH_S - 1)
    assert _beat(s, 50).registered
    assert _stored(s) == first  # nothing changed, stored recently: not written
    _beat(s, 49)
    assert _stored(s) == (clock(), 49)  # a change is written at once
    clock.advance(kiosks.HEARTBEAT_REFRESH_S + 1)
    _beat(s, 49)
    assert _stored(s) == (clock(), 49)  # the same beat, but the stored one is old: refreshed
