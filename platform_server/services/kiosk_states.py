"""Which kiosks are taken out of service by the platform (kiosk_access.disable), and why: for the fleet page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Kiosk

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork


def disabled_kiosks(uow: UnitOfWork) -> dict[str, str]:
    """Kiosk id -> the reason given, for every disabled (not removed) kiosk."""
    with uow:
        rows = uow.execute(
            sa.select(Kiosk.kiosk_id, Kiosk.disabled_reason).where(
                Kiosk.disabled_at.is_not(None), Kiosk.removed_at.is_(None)
            )
        ).all()
    return {kiosk_id: reason or "" for kiosk_id, reason in rows}
