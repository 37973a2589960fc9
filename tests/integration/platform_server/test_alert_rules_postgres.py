"""Alerts on PostgreSQL: the first sighting of a cause is stored once (ON CONFLICT), however many replicas; band writes
late read from the outbox."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from platform_server.db.models import AlertCause
from platform_server.services import alerts, kiosks
from tests.unit.platform_server.support import Clock, check_in_expert, seed

pytestmark = pytest.mark.postgres


def test_device_fault_held_for_its_duration_with_two_replicas(pg_schema_url: str) -> None:
    clock = Clock()
    s = seed(pg_schema_url, clock=clock, kiosk_ids=["K1"])
    settings = alerts.AlertSettings(device_fault_for_s=60)
    devices = (kiosks.DeviceHealth("arm", "fault"),)
    kiosks.heartbeat(s.new_uow(), s.ctx, kiosks.HeartbeatCommand("K1", devices, 40, 0, False, "1.0"))
    assert alerts.evaluate(s.new_uow(), s.ctx, settings) == ([], [])
    clock.advance(30)
    assert alerts.evaluate(s.new_uow(), s.ctx, settings) == ([], [])  # a second replica: the same first sighting
    with s.uow.engine.connect() as c:
        assert c.execute(sa.select(AlertCause.open_key, AlertCause.first_seen_at)).all() == [
            ("device_fault:K1", clock() - dt.timedelta(seconds=30))
        ]
    clock.advance(30)
    opened, _ = alerts.evaluate(s.new_uow(), s.ctx, settings)
    assert [(a.rule, a.subject) for a in opened] == [("device_fault", "K1")]


def test_band_writes_late_from_the_outbox_on_postgres(pg_schema_url: str) -> None:
    clock = Clock()
    s = seed(pg_schema_url, clock=clock, kiosk_ids=["K1"])
    assert check_in_expert(s, 0).refusal is None  # its room write waits in the outbox: no gateway here
    clock.advance(10)
    assert alerts.evaluate(s.new_uow(), s.ctx, alerts.AlertSettings()) == ([], [])  # 10 s is not late yet
    clock.advance(1)
    assert alerts.evaluate(s.new_uow(), s.ctx, alerts.AlertSettings()) == ([], [])  # late, not yet for 60 s
    clock.advance(60)
    (alert,), _ = alerts.evaluate(s.new_uow(), s.ctx, alerts.AlertSettings())
    assert alert.rule == "uwb_late"
    assert alert.detail.endswith("/ 1 band writes waiting over 10 s, the oldest 71 s")
