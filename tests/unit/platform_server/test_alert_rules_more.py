"""The rules beyond offline/stock/paper: device fault and stuck queue held for a duration, refusal streak and UWB
failures from the needs-staff cases, band writes late from the UWB outbox, stock predicted empty from the check-in
pace; and acknowledging an alert."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db.models import AuditEntry, Kiosk
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import alerts, cases, kiosks, stock_forecast, uwb
from tests.unit.platform_server.support import Clock, Seeded, check_in_expert, seed

if TYPE_CHECKING:
    from pathlib import Path

SETTINGS = alerts.AlertSettings(
    offline_after_s=600, stock_low=0, device_fault_for_s=60, queue_stuck_for_s=300, empty_within_min=30
)


def beat(s: Seeded, kiosk: str, *, arm: str = "ok", pending: int = 0, stock: int = 40) -> None:
    devices = (kiosks.DeviceHealth("arm", arm), kiosks.DeviceHealth("camera", "ok"))
    kiosks.heartbeat(s.new_uow(), s.ctx, kiosks.HeartbeatCommand(kiosk, devices, stock, pending, False, "1.0"))


def rules(views: list[alerts.AlertView]) -> list[tuple[str, str]]:
    return sorted((a.rule, a.subject) for a in views)


def test_device_fault_and_stuck_queue_open_only_after_their_duration(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    beat(s, "K1", arm="fault", pending=3)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])  # seen, not yet held
    clock.advance(59)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])
    clock.advance(1)
    opened, _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(opened) == [("device_fault", "K1")]
    assert "arm=fault" in opened[0].detail
    clock.advance(240)
    beat(s, "K1", arm="fault", pending=3)
    opened, _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(opened) == [("queue_not_draining", "K1")]
    # The queue drains and fills again: the clock starts over.
    beat(s, "K1", arm="ok", pending=0)
    _, resolved = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(resolved) == [("device_fault", "K1"), ("queue_not_draining", "K1")]
    beat(s, "K1", pending=2)
    clock.advance(299)
    beat(s, "K1", pending=2)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])


def test_refusal_streak_and_uwb_failures_come_from_open_cases(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    streak = cases.open_case_now(
        s.new_uow(), s.ctx, kind=cases.CaseKind.KIOSK_REFUSAL_STREAK, created_by="K1", kiosk_id="K1"
    )
    uwb = cases.open_case_now(
        s.new_uow(), s.ctx, kind=cases.CaseKind.UWB_DELIVERY_FAILED, created_by="uwb", kiosk_id="K1"
    )
    opened, _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(opened) == [("refusal_streak", "K1"), ("uwb_failing", "uwb")]
    cases.resolve_case(s.new_uow(), s.ctx, streak, reason="checked the kiosk", actor="person:a")
    cases.resolve_case(s.new_uow(), s.ctx, uwb, reason="handed over", actor="person:a")
    _, resolved = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(resolved) == [("refusal_streak", "K1"), ("uwb_failing", "uwb")]


def test_stock_predicted_empty_from_the_check_in_pace(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    for n in range(3):  # 3 check-ins in the last 30 min: 6 an hour
        assert check_in_expert(s, n).refusal is None
        clock.advance(60)
    beat(s, "K1", stock=2)  # 2 bands at 6 an hour: 20 minutes
    f = stock_forecast.uow_forecast(s.new_uow(), clock(), window_s=1800)["K1"]
    assert f.per_hour == pytest.approx(6.0)
    assert f.minutes_to_empty == pytest.approx(20.0)
    opened, _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(opened) == [("stock_empty_soon", "K1")]
    beat(s, "K1", stock=40)  # refilled: 400 minutes
    _, resolved = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert rules(resolved) == [("stock_empty_soon", "K1")]


def test_acknowledge_open_then_resolved(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    with s.uow.engine.begin() as c:
        c.execute(sa.update(Kiosk).values(printer_paper="out", last_heartbeat_at=clock()))
    (alert,), _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert alert.state == "open"
    done = alerts.acknowledge(s.new_uow(), s.ctx, alert.alert_id, actor="person:li")
    assert (done.state, done.acknowledged_by) == ("acknowledged", "person:li")
    with pytest.raises(InvalidRequestError, match="already acknowledged"):
        alerts.acknowledge(s.new_uow(), s.ctx, alert.alert_id, actor="person:wang")
    with pytest.raises(NotFoundError):
        alerts.acknowledge(s.new_uow(), s.ctx, 999, actor="person:li")
    assert alerts.list_alerts(s.new_uow())[0].state == "acknowledged"
    with s.uow.engine.begin() as c:
        c.execute(sa.update(Kiosk).values(printer_paper="ok"))
    _, (resolved,) = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert resolved.state == "resolved"
    with pytest.raises(InvalidRequestError, match="resolved"):
        alerts.acknowledge(s.new_uow(), s.ctx, alert.alert_id, actor="person:li")
    with s.uow.engine.connect() as c:
        actors = c.execute(sa.select(AuditEntry.actor).where(AuditEntry.action == "alert_acknowledged")).scalars()
        assert list(actors) == ["person:li"]


def test_band_writes_late_open_after_their_duration_and_resolve_when_written(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    assert check_in_expert(s, 0).refusal is None  # its room write waits in the outbox: no gateway here
    clock.advance(10)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])  # 10 s is not late yet
    clock.advance(1)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])  # late, not yet for 60 s
    assert check_in_expert(s, 1).refusal is None
    clock.advance(59)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])
    clock.advance(1)
    (alert,), _ = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert (alert.rule, alert.subject) == ("uwb_late", "uwb")
    assert alert.detail.endswith("/ 2 band writes waiting over 10 s, the oldest 71 s")
    assert alert.title == "手环写入延迟 / band writes late"
    # The gateway is back: the worker writes both bands, and the alert resolves.
    written = uwb.claim_due(s.new_uow(), clock())
    uwb.mark_delivered_many(s.new_uow(), s.ctx, [d.delivery_id for d in written])
    _, (resolved,) = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert resolved.rule == "uwb_late"
    # A write waiting again starts the clock over: nothing opens before another 60 s.
    assert check_in_expert(s, 2).refusal is None
    clock.advance(69)
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])


def test_band_writes_late_rule_is_off_at_zero(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    assert check_in_expert(s, 0).refusal is None
    off = dataclasses.replace(SETTINGS, uwb_late_after_s=0, uwb_late_for_s=0)
    clock.advance(3600)
    assert alerts.evaluate(s.new_uow(), s.ctx, off) == ([], [])
    (alert,), _ = alerts.evaluate(s.new_uow(), s.ctx, dataclasses.replace(off, uwb_late_after_s=10))
    assert alert.rule == "uwb_late"
