"""Operations alerts: rules over the kiosks' heartbeats, opened when a cause appears, resolved on recovery.

Plain service code: the console's evaluator loop calls `evaluate()` every few seconds (any number of
replicas may: an open alert's `open_key` is unique, so the same alert is opened once) and sends what
opened or resolved to the configured webhook with `notify()`.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Alert, Kiosk
from platform_server.services import audit

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

log = logging.getLogger(__name__)


class Rule(StrEnum):
    """What an alert is about."""

    KIOSK_OFFLINE = "kiosk_offline"
    STOCK_LOW = "stock_low"
    PAPER_OUT = "paper_out"


RULE_TEXT: dict[Rule, str] = {
    Rule.KIOSK_OFFLINE: "终端离线 / kiosk offline",
    Rule.STOCK_LOW: "手环库存不足 / band stock low",
    Rule.PAPER_OUT: "打印机缺纸 / printer paper out",
}


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Thresholds of the rules."""

    offline_after_s: float = 90.0
    stock_low: int = 20


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the console and the webhook show it."""

    alert_id: int
    rule: str
    subject: str
    detail: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None

    @property
    def title(self) -> str:
        """The rule's words, Chinese first."""
        return RULE_TEXT[Rule(self.rule)]

    def to_json(self, state: str) -> dict[str, object]:
        """The webhook's payload."""
        data = asdict(self)
        data["opened_at"] = self.opened_at.isoformat()
        data["resolved_at"] = self.resolved_at.isoformat() if self.resolved_at else None
        data["state"] = state
        data["title"] = self.title
        return data


def _view(row: Alert) -> AlertView:
    return AlertView(row.id, row.rule, row.subject, row.detail, row.opened_at, row.resolved_at)


def causes(uow: UnitOfWork, settings: AlertSettings, now: dt.datetime) -> dict[str, tuple[Rule, str, str]]:
    """Every cause present now: open_key -> (rule, subject, detail)."""
    found: dict[str, tuple[Rule, str, str]] = {}
    kiosks = uow.execute(
        sa.select(Kiosk.kiosk_id, Kiosk.last_heartbeat_at, Kiosk.band_stock, Kiosk.printer_paper)
    ).all()
    for kiosk_id, last, stock, paper in kiosks:
        if last is None:
            continue  # never started: not offline, just not installed yet
        silent = (now - last).total_seconds()
        if silent > settings.offline_after_s:
            found[f"{Rule.KIOSK_OFFLINE}:{kiosk_id}"] = (
                Rule.KIOSK_OFFLINE,
                kiosk_id,
                f"{int(silent)} 秒无心跳 / no heartbeat for {int(silent)} s",
            )
        if stock is not None and stock <= settings.stock_low:
            found[f"{Rule.STOCK_LOW}:{kiosk_id}"] = (Rule.STOCK_LOW, kiosk_id, f"剩余 {stock} / {stock} left")
        if paper == "out":
            found[f"{Rule.PAPER_OUT}:{kiosk_id}"] = (Rule.PAPER_OUT, kiosk_id, "")
    return found


def evaluate(uow: UnitOfWork, ctx: ServiceContext, settings: AlertSettings) -> tuple[list[AlertView], list[AlertView]]:
    """Open alerts whose cause appeared, resolve those whose cause went away: (opened, resolved)."""
    now = ctx.clock()
    opened: list[AlertView] = []
    resolved: list[AlertView] = []
    with uow:
        present = causes(uow, settings, now)
        open_rows = list(uow.session.scalars(sa.select(Alert).where(Alert.open_key.is_not(None))))
        for row in open_rows:
            if row.open_key not in present:
                row.open_key = None
                row.resolved_at = now
                audit.record(
                    uow,
                    at=now,
                    actor="console:alerts",
                    action="alert_resolved",
                    outcome=row.rule,
                    detail={"subject": row.subject, "alert": row.id},
                )
                resolved.append(_view(row))
        uow.commit()
    already = {row.open_key for row in open_rows if row.resolved_at is None}
    for key, (rule, subject, detail) in present.items():
        if key in already:
            continue
        try:
            with uow:
                row = Alert(rule=rule.value, subject=subject, open_key=key, detail=detail[:500], opened_at=now)
                uow.session.add(row)
                uow.session.flush()
                audit.record(
                    uow,
                    at=now,
                    actor="console:alerts",
                    action="alert_opened",
                    outcome=rule.value,
                    detail={"subject": subject, "alert": row.id},
                )
                uow.commit()
                opened.append(_view(row))
        except sa.exc.IntegrityError:
            log.debug("alert %s already opened by another replica", key)
    return opened, resolved


def list_alerts(uow: UnitOfWork, *, limit: int = 100) -> list[AlertView]:
    """Open alerts first, then the newest resolved ones."""
    with uow:
        rows = uow.session.scalars(
            sa.select(Alert).order_by(Alert.resolved_at.is_not(None), Alert.id.desc()).limit(limit)
        ).all()
        return [_view(r) for r in rows]


def notify(webhook_url: str, state: str, alert: AlertView, *, timeout_s: float = 5.0) -> bool:
    """POST the alert as JSON to the webhook; False (logged) if it could not be delivered."""
    body = json.dumps(alert.to_json(state), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310  (an operator-configured http(s) URL)
        webhook_url, data=body, headers={"Content-Type": "application/json; charset=utf-8"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            return 200 <= int(answer.status) < 300
    except OSError as err:
        log.warning(f"alert webhook failed for alert {alert.alert_id}: {err}")
        return False
