"""Where experts give up: per kiosk screen, how often it was reached, abandoned, timed out, and how long it took.

Computed from the kiosks' `step` events (ReportKioskEvent, stored as `kiosk:step` audit rows): the kiosk
reports each screen of a session when it leaves it, with the time spent there and how the session went
on (`next`, `cancelled`, `timeout`, `finished`). The rows of kiosks serving the batch (assigned to it,
or unassigned) since the batch was created count.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import AuditEntry, Batch, Kiosk
from platform_server.errors import NotFoundError

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork

ACTION = "kiosk:step"
MAX_ROWS = 100_000  # the newest rows only: a busy batch has a few thousand sessions of ~8 steps
# The flow's screens in the order an expert meets them (unknown ones follow, by name).
STEP_ORDER = (
    "id_card",
    "face",
    "verifying",
    "refusal",
    "card_on_file",
    "card_insert",
    "card_swipe",
    "card_type",
    "card_confirm",
    "signature",
    "dispensing",
    "done",
    "room_pending",
    "band_problem",
)
STEP_TEXT = {
    "id_card": "读身份证 / reading the ID card",
    "face": "拍照 / face capture",
    "verifying": "核验中 / verifying",
    "refusal": "拒绝页 / refusal screen",
    "card_on_file": "已登记银行卡 / card on file",
    "card_insert": "插银行卡 / insert bank card",
    "card_swipe": "刷银行卡 / swipe bank card",
    "card_type": "手输卡号 / type the card number",
    "card_confirm": "确认卡号 / confirm the card",
    "signature": "签名 / signature",
    "dispensing": "出手环 / dispensing the band",
    "done": "完成 / done",
    "room_pending": "房间待定 / room pending",
    "band_problem": "手环问题 / band problem",
}
_DETAIL = re.compile(r"^ms=(\d{1,9}) end=([a-z_]{1,20})$")


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One screen: visits, visits that ended the session by cancel or timeout, and durations in seconds."""

    step: str
    title: str
    reached: int
    abandoned: int
    timed_out: int
    median_s: float | None
    p90_s: float | None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def step_timings(uow: UnitOfWork, batch_code: str) -> list[StepFigures]:
    """The table for a batch, in flow order; screens nobody reached are left out."""
    with uow:
        batch = uow.execute(sa.select(Batch.id, Batch.created_at).where(Batch.code == batch_code)).first()
        if batch is None:
            raise NotFoundError(f"批次 {batch_code} 不存在 / batch {batch_code} does not exist")
        kiosks = sa.select(Kiosk.kiosk_id).where(sa.or_(Kiosk.batch_id == batch.id, Kiosk.batch_id.is_(None)))
        rows = uow.execute(
            sa.select(AuditEntry.outcome, AuditEntry.detail, AuditEntry.occurred_at)
            .where(AuditEntry.action == ACTION, AuditEntry.actor.in_(kiosks))
            .order_by(AuditEntry.id.desc())
            .limit(MAX_ROWS)
        ).all()
    # Compared here, not in SQL: SQLite stores the audit's and the batch's times in different text forms.
    since = _utc(batch.created_at)
    durations: dict[str, list[float]] = {}
    ends: dict[str, dict[str, int]] = {}
    for step, detail, occurred_at in rows:
        if _utc(occurred_at) < since:
            continue
        match = _DETAIL.match(detail or "")
        if match is None:
            continue  # a kiosk of another version: not a timing this table can read
        durations.setdefault(step, []).append(int(match.group(1)) / 1000)
        per_end = ends.setdefault(step, {})
        per_end[match.group(2)] = per_end.get(match.group(2), 0) + 1
    order = {name: i for i, name in enumerate(STEP_ORDER)}
    table = []
    for step in sorted(durations, key=lambda s: (order.get(s, len(order)), s)):
        values = sorted(durations[step])
        table.append(
            StepFigures(
                step=step,
                title=STEP_TEXT.get(step, step),
                reached=len(values),
                abandoned=ends[step].get("cancelled", 0),
                timed_out=ends[step].get("timeout", 0),
                median_s=percentile(values, 0.5),
                p90_s=percentile(values, 0.9),
            )
        )
    return table


def recent_durations(uow: UnitOfWork, *, limit: int = 10_000) -> dict[str, list[float]]:
    """Seconds per screen over the newest `limit` step reports of every kiosk (for /metrics)."""
    with uow:
        rows = uow.execute(
            sa.select(AuditEntry.outcome, AuditEntry.detail)
            .where(AuditEntry.action == ACTION)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        ).all()
    out: dict[str, list[float]] = {}
    for step, detail in rows:
        match = _DETAIL.match(detail or "")
        if match is not None:
            out.setdefault(step, []).append(int(match.group(1)) / 1000)
    return out
