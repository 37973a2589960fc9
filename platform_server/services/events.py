"""The organisers' check-in event stream: append in the step's transaction, read in id order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, CheckInEvent, NeedsStaffCase
from platform_server.errors import NotFoundError
from platform_server.services import cases  # lazy (lazy_imports): cases appends events
from platform_server.services.views import CheckInView, check_in_views

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from platform_server.db.unit_of_work import SqlTransaction, UnitOfWork
    from platform_server.services.cases import CaseView
    from platform_server.services.context import ServiceContext

# Key of the PostgreSQL advisory lock that keeps a reader resuming "after id N" from skipping an event
# committed late. Ids come from a sequence, so two writers can commit out of id order. Writers take the
# lock SHARED from before their id is drawn until commit: they never wait for one another. A reader
# takes it EXCLUSIVE only for the instant it reads the highest id: every writer that drew an id has then
# committed or rolled back, so every id up to that horizon is final and the reader stops there.
_EVENT_ORDER_LOCK = 0x45434B49  # "ECKI"


# Prebuilt: every step that appends an event would otherwise build and cache-key an ORM insert per call.
_LOCK_SHARED = sa.text("SELECT pg_advisory_xact_lock_shared(:lock)")
_INSERT_EVENT_TEXT = sa.text(
    "INSERT INTO check_in_events"
    " (batch_id, kind, kiosk_id, check_in_id, refusal_reason, occurred_at, needs_staff_case_id)"
    " VALUES (:batch_id, :kind, :kiosk_id, :check_in_id, :refusal_reason, :occurred_at, :needs_staff_case_id)"
).bindparams(sa.bindparam("occurred_at", type_=CheckInEvent.__table__.c.occurred_at.type))


class EventKind(StrEnum):
    """Kinds of events (mirrors StreamCheckInEventsResponse.Kind without the prefix)."""

    CHECKED_IN = "CHECKED_IN"
    ANNULLED = "ANNULLED"
    REFUSED = "REFUSED"
    UWB_DELIVERED = "UWB_DELIVERED"
    NEEDS_STAFF = "NEEDS_STAFF"


@dataclass(frozen=True, slots=True)
class EventView:
    """One event as streamed to organisers."""

    event_id: int
    kind: EventKind
    occurred_at: dt.datetime
    kiosk_id: str
    check_in: CheckInView | None
    refusal_reason: str | None
    needs_staff_case: CaseView | None = None


def append(
    uow: UnitOfWork,
    ctx: ServiceContext,
    *,
    batch_id: int,
    kind: EventKind,
    at: dt.datetime,
    kiosk_id: str = "",
    check_in_pk: int | None = None,
    refusal_reason: str | None = None,
    needs_staff_case_pk: int | None = None,
) -> None:
    """Add an event in the caller's transaction; streams in this process wake once it commits.

    Call this as the last write before commit: on PostgreSQL it holds the shared event-order lock until then.
    """
    append_many(
        uow,
        ctx,
        [
            NewEvent(
                batch_id=batch_id,
                kind=kind,
                at=at,
                kiosk_id=kiosk_id,
                check_in_pk=check_in_pk,
                refusal_reason=refusal_reason,
                needs_staff_case_pk=needs_staff_case_pk,
            )
        ],
    )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append (append_many)."""

    batch_id: int
    kind: EventKind
    at: dt.datetime
    kiosk_id: str = ""
    check_in_pk: int | None = None
    refusal_reason: str | None = None
    needs_staff_case_pk: int | None = None


def append_many(uow: UnitOfWork, ctx: ServiceContext, new: Sequence[NewEvent]) -> None:
    """append() of several events in one statement call (the UWB worker's acknowledgements of a claim)."""
    if uow.is_postgres:
        uow.execute(_LOCK_SHARED, {"lock": _EVENT_ORDER_LOCK})
    uow.execute(
        _INSERT_EVENT_TEXT,
        [
            {
                "batch_id": e.batch_id,
                "kind": e.kind.value,
                "kiosk_id": e.kiosk_id,
                "check_in_id": e.check_in_pk,
                "refusal_reason": e.refusal_reason,
                "occurred_at": e.at,
                "needs_staff_case_id": e.needs_staff_case_pk,
            }
            for e in new
        ],
    )
    uow.after_commit(ctx.bell.ring)


_INSERT_EVENT = (
    "INSERT INTO check_in_events (batch_id, kind, kiosk_id, check_in_id, refusal_reason, occurred_at)"
    " VALUES (:batch_id, :kind, :kiosk_id, :check_in_id, :refusal_reason, :occurred_at)"
)


def append_sql(
    d: SqlTransaction,
    ctx: ServiceContext,
    *,
    batch_id: int,
    kind: EventKind,
    at: dt.datetime,
    kiosk_id: str = "",
    check_in_pk: int | None = None,
    refusal_reason: str | None = None,
) -> None:
    """append() for a Session-free transaction (the same lock, row and wake-up)."""
    if d.postgres:
        d.execute("SELECT pg_advisory_xact_lock_shared(:lock)", {"lock": _EVENT_ORDER_LOCK})
    d.execute(
        _INSERT_EVENT,
        {
            "batch_id": batch_id,
            "kind": kind.value,
            "kiosk_id": kiosk_id,
            "check_in_id": check_in_pk,
            "refusal_reason": refusal_reason,
            "occurred_at": d.timestamp(at),
        },
    )
    d.after_commit(ctx.bell.ring)


def batch_id_of(uow: UnitOfWork, batch_code: str) -> int:
    """The batch's primary key, or NotFoundError."""
    batch_id = uow.execute(sa.select(Batch.id).where(Batch.code == batch_code)).scalar_one_or_none()
    if batch_id is None:
        raise NotFoundError(f"批次 {batch_code} 不存在 / batch {batch_code} does not exist")
    return int(batch_id)


def read_after(uow: UnitOfWork, ctx: ServiceContext, batch_id: int, after_id: int, limit: int = 200) -> list[EventView]:
    """Events of the batch with id > after_id, oldest first, at most `limit`.

    On PostgreSQL only events up to the committed horizon (see _EVENT_ORDER_LOCK): a later call
    returns the rest, never one with an id below what it has already returned.
    """
    horizon = _committed_horizon(uow) if uow.is_postgres else None
    rows = uow.execute(
        sa.select(
            CheckInEvent.id,
            CheckInEvent.kind,
            CheckInEvent.occurred_at,
            CheckInEvent.kiosk_id,
            CheckInEvent.check_in_id,
            CheckInEvent.refusal_reason,
            CheckInEvent.needs_staff_case_id,
        )
        .where(
            CheckInEvent.batch_id == batch_id,
            CheckInEvent.id > after_id,
            *([CheckInEvent.id <= horizon] if horizon is not None else []),
        )
        .order_by(CheckInEvent.id)
        .limit(limit)
    ).all()
    check_in_pks = {row[4] for row in rows if row[4] is not None}
    views: dict[str, CheckInView] = {}
    pk_by_public: dict[int, str] = {}
    if check_in_pks:
        pk_by_public = dict(
            uow.execute(sa.select(CheckIn.id, CheckIn.public_id).where(CheckIn.id.in_(check_in_pks))).all()
        )
        views = {v.check_in_id: v for v in check_in_views(uow, CheckIn.id.in_(check_in_pks), ctx.rules.annul_window_s)}
    case_pks = {row[6] for row in rows if row[6] is not None}
    case_views: dict[int, CaseView] = {}
    if case_pks:
        case_views = {
            row[0].id: cases.view_of_row(row)
            for row in uow.execute(cases.select_cases().where(NeedsStaffCase.id.in_(case_pks))).all()
        }
    return [
        EventView(
            event_id=row[0],
            kind=EventKind(row[1]),
            occurred_at=row[2],
            kiosk_id=row[3],
            check_in=views.get(pk_by_public[row[4]]) if row[4] is not None else None,
            refusal_reason=row[5],
            needs_staff_case=case_views.get(row[6]) if row[6] is not None else None,
        )
        for row in rows
    ]


def _committed_horizon(uow: UnitOfWork) -> int:
    """The highest event id below which no event can still commit (PostgreSQL; see _EVENT_ORDER_LOCK).

    A session lock taken and released around one read, so writers pause only for that instant; on the
    reader's own connection, so a reader that dies releases it with the connection. If the read fails
    (a lock timeout, a cancelled statement) the transaction is aborted and cannot run the unlock: the
    connection is then closed, which ends its session and the lock with it. Handed back to the pool
    still holding the lock, it would stop every writer of the database until it was recycled.
    """
    connection = uow.session.connection()
    uow.execute(sa.select(sa.func.pg_advisory_lock(_EVENT_ORDER_LOCK)))
    try:
        # A statement after the lock is granted: under READ COMMITTED it sees every writer that held it.
        highest = uow.execute(sa.select(sa.func.coalesce(sa.func.max(CheckInEvent.id), 0))).scalar_one()
        uow.execute(sa.select(sa.func.pg_advisory_unlock(_EVENT_ORDER_LOCK)))
    except BaseException:
        connection.invalidate()
        raise
    return int(highest)
