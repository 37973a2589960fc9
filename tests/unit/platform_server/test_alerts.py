"""Alert rules: open when the cause appears, resolve when it goes, one open alert per cause."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Alert, AuditEntry
from platform_server.services import alerts, kiosks
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    from pathlib import Path

SETTINGS = alerts.AlertSettings(offline_after_s=60, stock_low=5)


def beat(s: Seeded, kiosk: str, *, stock: int = 40, paper: str = "ok") -> None:
    kiosks.heartbeat(
        s.new_uow(),
        s.ctx,
        kiosks.HeartbeatCommand(kiosk, (), stock, 0, False, "1.0", printer_paper=paper),
    )


def test_offline_stock_and_paper_open_and_resolve(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1", "K2"])
    beat(s, "K1")
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])  # K2 never started: no alert
    clock.advance(61)
    beat(s, "K2", stock=3, paper="out")
    opened, resolved = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert sorted((a.rule, a.subject) for a in opened) == [
        ("kiosk_offline", "K1"),
        ("paper_out", "K2"),
        ("stock_low", "K2"),
    ]
    assert resolved == []
    # Evaluating again (another replica, the next round) opens nothing new.
    assert alerts.evaluate(s.new_uow(), s.ctx, SETTINGS) == ([], [])
    beat(s, "K1")
    beat(s, "K2", stock=30, paper="ok")
    opened, resolved = alerts.evaluate(s.new_uow(), s.ctx, SETTINGS)
    assert opened == []
    assert sorted((a.rule, a.subject) for a in resolved) == [
        ("kiosk_offline", "K1"),
        ("paper_out", "K2"),
        ("stock_low", "K2"),
    ]
    with s.uow.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(Alert).where(Alert.open_key.is_not(None))).scalar() == 0
        actions = list(c.execute(sa.select(AuditEntry.action).where(AuditEntry.actor == "console:alerts")).scalars())
    assert actions.count("alert_opened") == 3
    assert actions.count("alert_resolved") == 3


def test_the_unique_open_key_keeps_a_second_replica_from_opening_the_same_alert(tmp_path: Path) -> None:
    clock = Clock()
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", clock=clock, kiosk_ids=["K1"])
    beat(s, "K1", stock=1)
    uow = s.new_uow()
    with uow:
        uow.session.add(Alert(rule="stock_low", subject="K1", open_key="stock_low:K1", detail="", opened_at=clock()))
        uow.commit()
    # A replica that read the open alerts before this one committed would try to insert it again.
    with uow:
        uow.session.add(Alert(rule="stock_low", subject="K1", open_key="stock_low:K1", detail="", opened_at=clock()))
        try:
            uow.session.flush()
        except sa.exc.IntegrityError:
            uow.session.rollback()
        else:
            raise AssertionError("a second open alert for the same cause was accepted")
