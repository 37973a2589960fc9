"""A heartbeat that changes nothing is answered from one read; a change, or an old stored beat, is written.

A change of the figures alone (the band stock) is one UPDATE without an audit entry; a change of a
device's state, the service state or the paper is written with one.

On SQLite and PostgreSQL (the read runs on a driver connection and parses each driver's timestamps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db.models import AuditEntry, Kiosk
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


def _beat(s: Seeded, stock: int, printer: str = "OK", kiosk_id: str = "K1") -> kiosks.HeartbeatAnswer:
    return kiosks.heartbeat(
        s.new_uow(),
        s.ctx,
        kiosks.HeartbeatCommand(
            kiosk_id=kiosk_id,
            devices=(kiosks.DeviceHealth("printer", printer),),
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


def _health_entries(s: Seeded) -> list[str]:
    with s.new_uow() as u:
        rows = u.execute(
            sa.select(AuditEntry.detail).where(AuditEntry.action == "kiosk_health").order_by(AuditEntry.id)
        )
        return [str(r[0]) for r in rows]


def _stored_devices(s: Seeded) -> str:
    with s.new_uow() as u:
        return str(u.execute(sa.select(Kiosk.devices_json).where(Kiosk.kiosk_id == "K1")).scalar_one())


def test_the_stock_alone_is_written_without_an_audit_entry_a_device_change_with_one(seeded: Seeded) -> None:
    s = seeded
    clock = s.ctx.clock
    assert isinstance(clock, Clock)
    _beat(s, 50)  # the first beat stores the devices: a change of health
    assert len(_health_entries(s)) == 1
    clock.advance(1)
    answer = _beat(s, 20)
    assert (answer.registered, answer.stock_low) == (True, True)  # 20 is at the low mark
    assert _stored(s) == (clock(), 20)
    assert len(_health_entries(s)) == 1  # the stock alone: no audit entry
    clock.advance(1)
    _beat(s, 20, printer="FAULT")
    assert _stored(s) == (clock(), 20)
    assert '"state": "FAULT"' in _stored_devices(s)
    entries = _health_entries(s)
    assert len(entries) == 2
    assert '"state": "FAULT"' in entries[-1]
    clock.advance(1)
    _beat(s, 19, printer="FAULT")  # the stock again, the fault unchanged: written, not audited
    assert _stored(s) == (clock(), 19)
    assert len(_health_entries(s)) == 2


def test_a_beat_from_a_kiosk_not_registered_is_not_written(seeded: Seeded) -> None:
    answer = _beat(seeded, 5, kiosk_id="K-unknown")
    assert (answer.registered, answer.stock_low) == (False, False)
    with seeded.new_uow() as u:
        assert u.execute(sa.select(Kiosk.id).where(Kiosk.kiosk_id == "K-unknown")).first() is None
