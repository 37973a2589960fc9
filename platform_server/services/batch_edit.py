"""Edit a batch before it opens: name, venue, times and hotel, with the same checks as create.

Once any check-in exists (annulled ones included: a slip may have been printed with the old venue)
the batch is refused edits, and a closed batch is never edited.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, Hotel, Invitation
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import audit
from platform_server.services.batches import BatchSpec, BatchView, _checked_times, view_of

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext


def edit_batch(uow: UnitOfWork, ctx: ServiceContext, spec: BatchSpec, *, actor: str) -> BatchView:
    """Replace the batch's name, venue, times and hotel (by `spec.code`); audited with what changed."""
    now = ctx.clock()
    start, end, opens = _checked_times(spec, now)

    def edit(u: UnitOfWork) -> BatchView:
        batch = u.session.execute(sa.select(Batch).where(Batch.code == spec.code)).scalar_one_or_none()
        if batch is None:
            raise NotFoundError(f"批次 {spec.code} 不存在 / batch {spec.code} does not exist")
        if batch.closed:
            raise InvalidRequestError(f"批次 {spec.code} 已关闭，不能修改 / batch {spec.code} is closed")
        checked_in = u.execute(
            sa.select(sa.func.count())
            .select_from(CheckIn)
            .join(Invitation, Invitation.id == CheckIn.invitation_id)
            .where(Invitation.batch_id == batch.id)
        ).scalar_one()
        if checked_in:
            raise InvalidRequestError(
                f"批次 {spec.code} 已有 {checked_in} 次签到，不能修改 / "
                f"batch {spec.code} has {checked_in} check-ins and can no longer be edited"
            )
        hotel = u.session.execute(sa.select(Hotel).where(Hotel.code == spec.hotel_code)).scalar_one_or_none()
        if hotel is None:
            hotel = Hotel(code=spec.hotel_code, name=spec.hotel_name or spec.hotel_code, address=spec.hotel_address)
            u.session.add(hotel)
        else:
            if spec.hotel_name:
                hotel.name = spec.hotel_name
            if spec.hotel_address:
                hotel.address = spec.hotel_address
        before = dataclasses.asdict(view_of(batch))
        batch.name = spec.name.strip()
        batch.venue = spec.venue
        batch.hotel = hotel
        batch.evaluation_start, batch.evaluation_end, batch.check_in_opens = start, end, opens
        u.session.flush()
        after = view_of(batch)
        changed: dict[str, object] = {k: str(v) for k, v in dataclasses.asdict(after).items() if before[k] != v}
        audit.record(
            u, at=now, actor=actor, action="batch_edit", outcome="edited", batch_code=spec.code, detail=changed
        )
        u.commit()
        return after

    return run_transaction(uow, edit)
