"""Operations alerts: rules over the kiosks' heartbeats, opened when a cause appears, resolved on recovery.

Plain service code: the console's evaluator loop calls `evaluate()` every few seconds (any number of
replicas may: an open alert's `open_key` is unique, so the same alert is opened once) and sends what
opened or resolved to the configured webhook with `notify()`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from platform_server.db.models import Alert, AlertCause, Kiosk, NeedsStaffCase
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import audit, stock_forecast, uwb
from platform_server.services.cases import CaseKind

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

log = logging.getLogger(__name__)


class Rule(StrEnum):
    """What an alert is about."""

    KIOSK_OFFLINE = "kiosk_offline"
    STOCK_LOW = "stock_low"
    PAPER_OUT = "paper_out"
    DEVICE_FAULT = "device_fault"
    REFUSAL_STREAK = "refusal_streak"
    UWB_FAILING = "uwb_failing"
    UWB_LATE = "uwb_late"
    QUEUE_NOT_DRAINING = "queue_not_draining"
    STOCK_EMPTY_SOON = "stock_empty_soon"


RULE_TEXT: dict[Rule, str] = {
    Rule.KIOSK_OFFLINE: "终端离线 / kiosk offline",
    Rule.STOCK_LOW: "手环库存不足 / band stock low",
    Rule.PAPER_OUT: "打印机缺纸 / printer paper out",
    Rule.DEVICE_FAULT: "设备故障 / device fault",
    Rule.REFUSAL_STREAK: "连续拒绝 / refusals in a row",
    Rule.UWB_FAILING: "手环写入失败 / UWB delivery failing",
    Rule.UWB_LATE: "手环写入延迟 / band writes late",
    Rule.QUEUE_NOT_DRAINING: "待上传队列未减少 / queue not draining",
    Rule.STOCK_EMPTY_SOON: "手环即将用完 / bands predicted empty soon",
}
OK_DEVICE_STATES = frozenset({"ok", "OK", "DEVICE_STATE_OK"})


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Thresholds of the rules, and how long a cause must last before its alert opens (`*_for_s`).

    Each field can be set from the environment as PLATFORM_CONSOLE_ALERT_<FIELD> (console/serve.py).
    """

    offline_after_s: float = 90.0  # kiosk_offline: no heartbeat for this long (the duration itself)
    stock_low: int = 20  # stock_low: band stock at or below
    device_fault_for_s: float = 60.0  # device_fault: a device not ok for this long
    refusal_streak_for_s: float = 0.0  # refusal_streak: an open refusal-streak case (the case has its threshold)
    uwb_failed_min: int = 1  # uwb_failing: at least this many given-up UWB writes with open cases
    uwb_failing_for_s: float = 0.0
    uwb_late_after_s: float = 10.0  # uwb_late: a room write waiting longer than this for its band (0: rule off) ...
    uwb_late_for_s: float = 60.0  # ... for this long
    queue_pending_min: int = 1  # queue_not_draining: a kiosk's pending queue at or above this ...
    queue_stuck_for_s: float = 300.0  # ... for this long
    empty_within_min: float = 30.0  # stock_empty_soon: predicted empty within this many minutes ...
    rate_window_s: float = 1800.0  # ... at the pace of the check-ins in this window
    empty_soon_for_s: float = 0.0

    def hold_s(self, rule: Rule) -> float:
        """How long a rule's cause must last before its alert opens."""
        return {
            Rule.DEVICE_FAULT: self.device_fault_for_s,
            Rule.REFUSAL_STREAK: self.refusal_streak_for_s,
            Rule.UWB_FAILING: self.uwb_failing_for_s,
            Rule.UWB_LATE: self.uwb_late_for_s,
            Rule.QUEUE_NOT_DRAINING: self.queue_stuck_for_s,
            Rule.STOCK_EMPTY_SOON: self.empty_soon_for_s,
        }.get(rule, 0.0)


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the console and the webhook show it."""

    alert_id: int
    rule: str
    subject: str
    detail: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None

    @property
    def state(self) -> str:
        """open, acknowledged or resolved."""
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"

    @property
    def title(self) -> str:
        """The rule's words, Chinese first."""
        return RULE_TEXT[Rule(self.rule)]

    def to_json(self, state: str) -> dict[str, object]:
        """The webhook's payload."""
        data = asdict(self)
        data["opened_at"] = self.opened_at.isoformat()
        data["resolved_at"] = self.resolved_at.isoformat() if self.resolved_at else None
        data["acknowledged_at"] = self.acknowledged_at.isoformat() if self.acknowledged_at else None
        data["state"] = state
        data["title"] = self.title
        return data


def _view(row: Alert) -> AlertView:
    return AlertView(
        row.id,
        row.rule,
        row.subject,
        row.detail,
        row.opened_at,
        row.resolved_at,
        row.acknowledged_at,
        row.acknowledged_by,
    )


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
    found.update(_more_causes(uow, settings, now))
    return found


def _more_causes(uow: UnitOfWork, settings: AlertSettings, now: dt.datetime) -> dict[str, tuple[Rule, str, str]]:
    """Device faults and stuck queues (heartbeats), refusal streaks and UWB failures (cases), stock forecast."""
    found: dict[str, tuple[Rule, str, str]] = {}
    rows = uow.execute(sa.select(Kiosk.kiosk_id, Kiosk.devices_json, Kiosk.pending_check_ins)).all()
    for kiosk_id, devices_json, pending in rows:
        try:
            devices = json.loads(devices_json or "[]")
        except ValueError:
            devices = []
        faulty = sorted(
            f"{d.get('device', '?')}={d.get('state', '?')}"
            for d in devices
            if isinstance(d, dict) and d.get("state") not in OK_DEVICE_STATES
        )
        if faulty:
            found[f"{Rule.DEVICE_FAULT}:{kiosk_id}"] = (Rule.DEVICE_FAULT, kiosk_id, ", ".join(faulty))
        if pending is not None and pending >= settings.queue_pending_min:
            found[f"{Rule.QUEUE_NOT_DRAINING}:{kiosk_id}"] = (
                Rule.QUEUE_NOT_DRAINING,
                kiosk_id,
                f"{pending} 条待上传 / {pending} check-ins queued",
            )
    open_cases = uow.execute(
        sa.select(NeedsStaffCase.kind, NeedsStaffCase.kiosk_id, sa.func.count())
        .where(
            NeedsStaffCase.state == "open",
            NeedsStaffCase.kind.in_([CaseKind.KIOSK_REFUSAL_STREAK.value, CaseKind.UWB_DELIVERY_FAILED.value]),
        )
        .group_by(NeedsStaffCase.kind, NeedsStaffCase.kiosk_id)
    ).all()
    uwb_failed = 0
    for kind, kiosk_id, n in open_cases:
        if kind == CaseKind.KIOSK_REFUSAL_STREAK.value:
            found[f"{Rule.REFUSAL_STREAK}:{kiosk_id}"] = (Rule.REFUSAL_STREAK, kiosk_id, "需人工处理 / see needs staff")
        else:
            uwb_failed += int(n)
    if uwb_failed >= settings.uwb_failed_min:
        found[f"{Rule.UWB_FAILING}:uwb"] = (
            Rule.UWB_FAILING,
            "uwb",
            f"{uwb_failed} 个手环未写入 / {uwb_failed} band writes given up",
        )
    found.update(_late_band_writes(uow, settings, now))
    for kiosk_id, f in stock_forecast.forecast(uow, now, window_s=settings.rate_window_s).items():
        if f.minutes_to_empty is not None and f.minutes_to_empty <= settings.empty_within_min:
            found[f"{Rule.STOCK_EMPTY_SOON}:{kiosk_id}"] = (
                Rule.STOCK_EMPTY_SOON,
                kiosk_id,
                f"约 {f.minutes_to_empty:.0f} 分钟后用完 / empty in about {f.minutes_to_empty:.0f} min",
            )
    return found


def _late_band_writes(uow: UnitOfWork, settings: AlertSettings, now: dt.datetime) -> dict[str, tuple[Rule, str, str]]:
    """Room writes waiting for their band past `uwb_late_after_s`: the gateway offline, the worker behind or stopped.

    Given-up writes are uwb_failing's; these are the ones still pending, retries in backoff included.
    """
    if settings.uwb_late_after_s <= 0:
        return {}
    after = settings.uwb_late_after_s
    late = uwb.waiting(uow, made_before=now - dt.timedelta(seconds=after))
    if not late.count:
        return {}
    n, oldest = late.count, int(late.oldest_age_s(now))
    detail = (
        f"{n} 个手环写入等待超过 {after:g} 秒，最久 {oldest} 秒"
        f" / {n} band writes waiting over {after:g} s, the oldest {oldest} s"
    )
    return {f"{Rule.UWB_LATE}:uwb": (Rule.UWB_LATE, "uwb", detail)}


def _held(
    uow: UnitOfWork, settings: AlertSettings, present: dict[str, tuple[Rule, str, str]], now: dt.datetime
) -> set[str]:
    """The causes that have lasted their rule's duration; remembers new ones, forgets the gone ones."""
    seen = dict(uow.execute(sa.select(AlertCause.open_key, AlertCause.first_seen_at)).all())
    gone = [key for key in seen if key not in present]
    if gone:
        uow.execute(sa.delete(AlertCause).where(AlertCause.open_key.in_(gone)))
    held = set()
    for key, (rule, _subject, _detail) in present.items():
        hold = settings.hold_s(rule)
        if hold <= 0:
            held.add(key)
            continue
        first = seen.get(key)
        if first is None:
            # Another replica may insert the same key at the same moment: its time counts then.
            insert = (postgresql.insert if uow.is_postgres else sqlite.insert)(AlertCause)
            uow.execute(insert.values(open_key=key, first_seen_at=now).on_conflict_do_nothing())
            continue
        if (now - first).total_seconds() >= hold:
            held.add(key)
    return held


def evaluate(uow: UnitOfWork, ctx: ServiceContext, settings: AlertSettings) -> tuple[list[AlertView], list[AlertView]]:
    """Open alerts whose cause appeared, resolve those whose cause went away: (opened, resolved)."""
    now = ctx.clock()
    opened: list[AlertView] = []
    resolved: list[AlertView] = []
    with uow:
        present = causes(uow, settings, now)
        held = _held(uow, settings, present, now)
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
        if key in already or key not in held:
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


def acknowledge(uow: UnitOfWork, ctx: ServiceContext, alert_id: int, *, actor: str) -> AlertView:
    """Someone has seen an open alert and is on it: open -> acknowledged (audited). It still resolves on recovery."""
    with uow:
        now = ctx.clock()
        row = uow.session.get(Alert, alert_id)
        if row is None:
            raise NotFoundError(f"告警 {alert_id} 不存在 / alert {alert_id} does not exist")
        if row.resolved_at is not None:
            raise InvalidRequestError(f"alert {alert_id} has already resolved")
        if row.acknowledged_at is not None:
            raise InvalidRequestError(f"alert {alert_id} was already acknowledged by {row.acknowledged_by}")
        row.acknowledged_at = now
        row.acknowledged_by = actor[:64]
        audit.record(
            uow,
            at=now,
            actor=actor,
            action="alert_acknowledged",
            outcome=row.rule,
            detail={"subject": row.subject, "alert": row.id},
        )
        uow.commit()
        return _view(row)


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
