"""The UWB outbox, for the delivery worker: claim due rows, mark them delivered or failed.

Events and audit rows for deliveries are made here only, so the worker (platform_server/uwb_delivery.py)
needs no knowledge of either. Each function is its own transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
import sqlalchemy.orm as so

from platform_server.db.models import CheckIn, UwbDelivery, Wristband
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import NotFoundError
from platform_server.services import audit, cases, events

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

# A claimed row is hidden from other workers for this long; a worker that dies mid-write loses its claim.
CLAIM_LEASE = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One write the worker must make: 'assign' a room to a tag, or 'clear' it."""

    delivery_id: int
    check_in_id: int
    tag_id: str
    kind: str
    batch_code: str
    hotel_code: str
    room_number: str
    attempts: int


# Prebuilt: the worker claims and checks a round of rows beside every check-in (see _LOAD_DELIVERIES).
_UTC = UwbDelivery.__table__.c.next_attempt_at.type
_CLAIM_SQL = (
    "SELECT id, check_in_id, tag_id, kind, batch_code, hotel_code, room_number, attempts FROM uwb_deliveries"
    " WHERE state = 'pending' AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT :limit"
)
_CLAIM = sa.text(_CLAIM_SQL).bindparams(sa.bindparam("now", type_=_UTC))
_CLAIM_PG = sa.text(_CLAIM_SQL + " FOR UPDATE SKIP LOCKED").bindparams(sa.bindparam("now", type_=_UTC))
_LEASE = sa.text("UPDATE uwb_deliveries SET next_attempt_at = :until WHERE id IN :ids").bindparams(
    sa.bindparam("until", type_=_UTC), sa.bindparam("ids", expanding=True)
)


def claim_due(uow: UnitOfWork, now: dt.datetime, limit: int = 10) -> list[Delivery]:
    """Pending rows due by `now`, oldest first, leased to the caller for CLAIM_LEASE."""

    def work(u: UnitOfWork) -> list[Delivery]:
        rows = u.execute(_CLAIM_PG if u.is_postgres else _CLAIM, {"now": now, "limit": limit}).all()
        claimed = [
            Delivery(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]), int(r[7]))
            for r in rows
        ]
        if claimed:
            u.execute(_LEASE, {"until": now + CLAIM_LEASE, "ids": [d.delivery_id for d in claimed]})
        u.commit()
        return claimed

    return run_transaction(uow, work)


def _load(u: UnitOfWork, delivery_id: int) -> tuple[UwbDelivery, CheckIn]:
    row = u.session.execute(
        sa.select(UwbDelivery, CheckIn)
        .join(CheckIn, CheckIn.id == UwbDelivery.check_in_id)
        .where(UwbDelivery.id == delivery_id)
    ).first()
    if row is None:
        raise NotFoundError(f"UWB delivery {delivery_id} does not exist")
    return row[0], row[1]


def mark_delivered(uow: UnitOfWork, ctx: ServiceContext, delivery_id: int) -> None:
    """The band acknowledged the write: record it, audit it, emit KIND_UWB_DELIVERED."""
    mark_delivered_many(uow, ctx, [delivery_id])


def mark_delivered_many(uow: UnitOfWork, ctx: ServiceContext, delivery_ids: list[int]) -> None:
    """mark_delivered() for every row acknowledged in one claim, in one transaction of a few statements.

    Under load every statement waits its turn beside 200 kiosks' (SQLite's write lock, PostgreSQL's
    CPU): one read, one update, one insert of events and one of audit entries for the whole claim,
    instead of five statements per band, keeps the worker ahead of the check-ins.
    """

    def work(u: UnitOfWork) -> None:
        now = ctx.clock()
        ids = sorted(set(delivery_ids))
        rows = {int(r[0]): r for r in u.execute(_LOAD_DELIVERIES, {"ids": ids})}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFoundError(f"UWB delivery {missing[0]} does not exist")
        # Rows superseded by an annulment meanwhile, or already marked, are left as they are.
        marked = {int(r[0]) for r in u.execute(_SET_DELIVERED, {"now": now, "ids": ids})}
        done = [rows[i] for i in ids if i in marked]
        if done:
            events.append_many(
                u,
                ctx,
                [
                    events.NewEvent(
                        batch_id=int(r.batch_id),
                        kind=events.EventKind.UWB_DELIVERED,
                        at=now,
                        kiosk_id=r.kiosk_id,
                        check_in_pk=int(r.check_in_pk),
                    )
                    for r in done
                ],
            )
            # The audit rows last, as on the kiosk paths (services.audit_chain).
            audit.record_many(
                u,
                [
                    audit.entry(
                        at=now,
                        actor="uwb",
                        action=f"uwb_{r.kind}",
                        outcome="delivered",
                        batch_code=r.batch_code,
                        check_in_public_id=r.public_id,
                        detail={"tag": r.tag_id, "room": r.room_number, "attempts": int(r.attempts) + 1},
                    )
                    for r in done
                ],
            )
        u.commit()

    run_transaction(uow, work)


# Prebuilt: a claim's acknowledged rows read and marked in one statement each.
_LOAD_DELIVERIES = sa.text(
    "SELECT d.id, d.kind, d.batch_code, d.tag_id, d.room_number, d.attempts, c.public_id, c.batch_id,"
    " c.kiosk_id, c.id AS check_in_pk"
    " FROM uwb_deliveries d JOIN check_ins c ON c.id = d.check_in_id WHERE d.id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))
_SET_DELIVERED = sa.text(
    "UPDATE uwb_deliveries SET state = 'delivered', delivered_at = :now, attempts = attempts + 1, last_error = NULL"
    " WHERE id IN :ids AND state = 'pending' RETURNING id"
).bindparams(sa.bindparam("now", type_=UwbDelivery.__table__.c.delivered_at.type), sa.bindparam("ids", expanding=True))


def mark_failed_attempt(
    uow: UnitOfWork, ctx: ServiceContext, delivery_id: int, error: str, *, max_attempts: int, retry_after: dt.timedelta
) -> bool:
    """Count a failed write; retry later, or after max_attempts give up and flag staff. True if given up."""

    def work(u: UnitOfWork) -> bool:
        now = ctx.clock()
        delivery, check_in = _load(u, delivery_id)
        if delivery.state != "pending":
            return False
        delivery.attempts += 1
        delivery.last_error = error[:400]
        if delivery.attempts < max_attempts:
            # Exponential backoff from retry_after, capped at 32x, so an outage does not flood the gateway.
            delivery.next_attempt_at = now + retry_after * min(2 ** (delivery.attempts - 1), 32)
            u.commit()
            return False
        delivery.state = "failed"
        check_in.needs_staff = True
        audit.record(
            u,
            at=now,
            actor="uwb",
            action=f"uwb_{delivery.kind}",
            outcome="failed",
            batch_code=delivery.batch_code,
            check_in_public_id=check_in.public_id,
            detail={"tag": delivery.tag_id, "attempts": delivery.attempts, "error": error[:200]},
        )
        cases.open_case(  # appends the NEEDS_STAFF event, naming the case
            u,
            ctx,
            kind=cases.CaseKind.UWB_DELIVERY_FAILED,
            at=now,
            created_by="uwb",
            kiosk_id=check_in.kiosk_id,
            batch_id=check_in.batch_id,
            invitation_id=check_in.invitation_id,
            check_in_pk=check_in.id,
            reason=f"uwb_{delivery.kind}_failed",
            detail={"tag": delivery.tag_id, "attempts": delivery.attempts, "error": error[:200]},
            dedupe_key=f"uwb:{delivery.id}",
        )
        u.commit()
        return True

    return run_transaction(uow, work)


# --- Added for the delivery worker (platform_server/uwb_delivery.py) -------------------------------


def release_claims(uow: UnitOfWork, now: dt.datetime, delivery_ids: list[int] | None = None) -> int:
    """Make pending rows due now without counting an attempt: the given ids, or every pending row.

    The worker calls it at start-up (a killed predecessor's leases would otherwise hide rows for
    CLAIM_LEASE; one worker per gateway, so no live worker holds them), when it stops with rows
    claimed but not sent (a drain, a replica whose serving process died), and for rows it could not
    try because the gateway itself was unreachable (an outage delays, never fails, a row). Each row
    is due again from its creation, so it keeps its place in line: due from `now`, it went behind
    every row made while it was claimed, and with a backlog its band was written that much later.
    """
    due_again = sa.case((UwbDelivery.created_at < now, UwbDelivery.created_at), else_=sa.literal(now, _UTC))

    def work(u: UnitOfWork) -> int:
        query = sa.update(UwbDelivery).where(UwbDelivery.state == "pending", UwbDelivery.next_attempt_at > now)
        if delivery_ids is not None:
            query = query.where(UwbDelivery.id.in_(delivery_ids))
        result = u.execute(query.values(next_attempt_at=due_again).execution_options(synchronize_session=False))
        u.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    return run_transaction(uow, work)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Room writes not yet acknowledged by their band (retries in backoff included): how many, and the oldest."""

    count: int
    oldest_created_at: dt.datetime | None

    def oldest_age_s(self, now: dt.datetime) -> float:
        """Seconds the oldest has waited at `now` (0 when none)."""
        return max(0.0, (now - self.oldest_created_at).total_seconds()) if self.oldest_created_at else 0.0


def waiting(u: UnitOfWork, *, made_before: dt.datetime | None = None) -> Waiting:
    """The outbox's pending rows, or only those made before `made_before`, in the caller's transaction.

    For the people watching delivery (the console's metrics and its `uwb_late` alert): a band whose
    room is not written within seconds of its check-in leaves its expert without a room on the band.
    """
    query = sa.select(sa.func.count(), sa.func.min(UwbDelivery.created_at)).where(UwbDelivery.state == "pending")
    if made_before is not None:
        query = query.where(UwbDelivery.created_at < made_before)
    count, oldest = u.execute(query).one()
    return Waiting(int(count), oldest)


def current_tags_for(uow: UnitOfWork, delivery_ids: list[int]) -> dict[int, str]:
    """The tags of the rows that may be sent as they are: pending, same tag, no newer row for it.

    One read-only transaction for a whole round (no SQLite write lock, one round trip to PostgreSQL);
    a row missing from the answer goes through current_tag_for().
    """
    if not delivery_ids:
        return {}
    reader = uow.read_only()
    with reader:
        rows = reader.execute(_CURRENT_TAGS, {"ids": delivery_ids}).all()
    return {int(row[0]): str(row[1]) for row in rows}


_d = so.aliased(UwbDelivery, name="d")
# Built once (an expanding IN): the worker asks this for every round.
_CURRENT_TAGS = (
    sa.select(_d.id, _d.tag_id)
    .join(CheckIn, CheckIn.id == _d.check_in_id)
    .join(Wristband, Wristband.id == CheckIn.wristband_id)
    .where(
        _d.id.in_(sa.bindparam("ids", expanding=True)),
        _d.state == "pending",
        _d.tag_id == Wristband.uwb_tag_id,
        ~sa.exists().where(UwbDelivery.tag_id == _d.tag_id, UwbDelivery.id > _d.id),
    )
)


def current_tag_for(uow: UnitOfWork, delivery_id: int) -> str | None:
    """The tag to write a claimed row to now, or None if the row must not be sent.

    None when the row is no longer pending, or when a newer row exists for the same tag (then this
    one is marked superseded: an older write must never land after a newer one). The tag comes from
    the band's current inventory mapping, re-read here, not from the copy taken at check-in.
    """
    quick = current_tags_for(uow, [delivery_id])
    if delivery_id in quick:
        return quick[delivery_id]

    def work(u: UnitOfWork) -> str | None:
        delivery, check_in = _load(u, delivery_id)
        if delivery.state != "pending":
            return None
        band_tag = sa.select(Wristband.uwb_tag_id).where(Wristband.id == check_in.wristband_id)
        tag = u.session.execute(band_tag).scalar_one()
        newer = u.session.execute(
            sa.select(UwbDelivery.id)
            .where(UwbDelivery.tag_id.in_({delivery.tag_id, tag}), UwbDelivery.id > delivery.id)
            .limit(1)
        ).first()
        if newer is not None:
            delivery.state = "superseded"
            delivery.last_error = f"superseded by newer delivery {newer[0]} for tag {tag}"
            u.commit()
            return None
        if tag != delivery.tag_id:
            delivery.last_error = f"band mapping changed: tag {delivery.tag_id} -> {tag}"
            delivery.tag_id = tag
            u.commit()
        return tag

    return run_transaction(uow, work)
