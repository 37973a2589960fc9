"""When a kiosk's band stock runs out at the current pace: its check-ins over a recent window, and the stock left.

Used by the fleet page (predicted time to empty) and the `stock_empty_soon` alert rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import CheckIn, Kiosk

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Forecast:
    """One kiosk: stock, check-ins per hour over the window, minutes until empty (None: no pace, or unknown stock)."""

    kiosk_id: str
    band_stock: int | None
    per_hour: float
    minutes_to_empty: float | None


def forecast(uow: UnitOfWork, now: dt.datetime, *, window_s: float) -> dict[str, Forecast]:
    """Every kiosk's forecast at `now`, from its check-ins in the last `window_s` seconds."""
    since = now - dt.timedelta(seconds=window_s)
    counts = dict(
        uow.execute(
            sa.select(CheckIn.kiosk_id, sa.func.count())
            .where(CheckIn.checked_in_at >= since, CheckIn.checked_in_at <= now)
            .group_by(CheckIn.kiosk_id)
        ).all()
    )
    out: dict[str, Forecast] = {}
    for kiosk_id, stock in uow.execute(sa.select(Kiosk.kiosk_id, Kiosk.band_stock)).all():
        per_hour = int(counts.get(kiosk_id, 0)) * 3600 / window_s
        minutes = None
        if stock is not None and per_hour > 0:
            minutes = max(0, stock) / per_hour * 60
        out[kiosk_id] = Forecast(kiosk_id, stock, per_hour, minutes)
    return out


def uow_forecast(uow: UnitOfWork, now: dt.datetime, *, window_s: float) -> dict[str, Forecast]:
    """forecast() in a read transaction of its own."""
    with uow:
        return forecast(uow, now, window_s=window_s)
