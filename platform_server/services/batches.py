"""Batches and hotels: create, list, close (organiser CLI and OrganiserService share these)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db.models import Batch, Hotel
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from platform_server.services import audit, idempotency

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

# Codes travel to the band over UWB in a 34-byte payload, so they are short and ASCII.
BATCH_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")
HOTEL_CODE = re.compile(r"^[A-Za-z0-9]{1,8}$")
CREATE_BATCH = "CreateBatch"
CLOSE_BATCH = "CloseBatch"


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """A new batch as the organiser describes it."""

    code: str
    name: str
    venue: str = ""
    hotel_code: str = "H1"
    hotel_name: str = ""
    hotel_address: str = ""
    evaluation_start: dt.datetime | None = None
    evaluation_end: dt.datetime | None = None
    check_in_opens: dt.datetime | None = None
    allow_id_only: bool = False


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch as screens and organisers see it."""

    code: str
    name: str
    venue: str
    hotel_code: str
    hotel_name: str
    hotel_address: str
    evaluation_start: dt.datetime
    evaluation_end: dt.datetime
    check_in_opens: dt.datetime
    closed: bool
    allow_id_only: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the idempotency record (times as ISO 8601 with their offset)."""
        data = dataclasses.asdict(self)
        for name in _TIME_FIELDS:
            data[name] = data[name].isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchView:
        """Inverse of to_dict()."""
        values = dict(data)
        for name in _TIME_FIELDS:
            values[name] = dt.datetime.fromisoformat(values[name])
        return cls(**values)


_TIME_FIELDS = ("evaluation_start", "evaluation_end", "check_in_opens")


def view_of(batch: Batch) -> BatchView:
    """BatchView from a loaded Batch (its hotel is joined eagerly)."""
    return BatchView(
        code=batch.code,
        name=batch.name,
        venue=batch.venue,
        hotel_code=batch.hotel.code,
        hotel_name=batch.hotel.name,
        hotel_address=batch.hotel.address,
        evaluation_start=batch.evaluation_start,
        evaluation_end=batch.evaluation_end,
        check_in_opens=batch.check_in_opens,
        closed=batch.closed,
        allow_id_only=batch.allow_id_only,
    )


def create_batch(
    uow: UnitOfWork, ctx: ServiceContext, spec: BatchSpec, actor: str = "organiser", *, request_id: str | None = None
) -> BatchView:
    """Create a batch (and its hotel if the code is new); defaults: evaluation tomorrow 09:00-17:00 CST.

    With a request_id (OrganiserService.CreateBatch) a retry of the same request gets the first
    answer instead of ALREADY_EXISTS; the CLI passes none and is told when the code is taken.
    """
    now = ctx.clock()
    start, end, opens = _checked_times(spec, now)

    def insert(u: UnitOfWork) -> BatchView:
        if u.execute(sa.select(Batch.id).where(Batch.code == spec.code)).first() is not None:
            raise AlreadyExistsError(f"批次 {spec.code} 已存在 / batch {spec.code} already exists")
        hotel = u.session.execute(sa.select(Hotel).where(Hotel.code == spec.hotel_code)).scalar_one_or_none()
        if hotel is None:
            hotel = Hotel(code=spec.hotel_code, name=spec.hotel_name or spec.hotel_code, address=spec.hotel_address)
            u.session.add(hotel)
        else:
            if spec.hotel_name:
                hotel.name = spec.hotel_name
            if spec.hotel_address:
                hotel.address = spec.hotel_address
        batch = Batch(
            code=spec.code,
            name=spec.name.strip(),
            venue=spec.venue,
            hotel=hotel,
            evaluation_start=start,
            evaluation_end=end,
            check_in_opens=opens,
            closed=False,
            allow_id_only=spec.allow_id_only,
            created_at=now,
        )
        u.session.add(batch)
        u.session.flush()
        audit.record(u, at=now, actor=actor, action="batch_create", outcome="created", batch_code=spec.code)
        return view_of(batch)

    if request_id is None:
        return run_transaction(uow, lambda u: _committed(u, insert(u)))
    call = idempotency.Call(
        idempotency.ORGANISER_CALLER,
        request_id,
        CREATE_BATCH,
        idempotency.payload_hash(CREATE_BATCH, dataclasses.astuple(spec)),
    )
    return idempotency.run_once(uow, ctx, call, insert, encode=BatchView.to_dict, decode=BatchView.from_dict)


def _checked_times(spec: BatchSpec, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """Check the spec and fill in default times: (evaluation start, evaluation end, check-in opens)."""
    if not BATCH_CODE.match(spec.code):
        raise InvalidRequestError(
            f"批次编号 {spec.code!r} 无效 / batch code {spec.code!r} must be 1-16 ASCII letters, digits, - or _"
        )
    if not HOTEL_CODE.match(spec.hotel_code):
        raise InvalidRequestError(f"hotel code {spec.hotel_code!r} must be 1-8 ASCII letters or digits")
    if not spec.name.strip():
        raise InvalidRequestError("批次名称不能为空 / the batch name must not be empty")
    cst = dt.timezone(dt.timedelta(hours=8))
    tomorrow = (now.astimezone(cst) + dt.timedelta(days=1)).date()
    start = spec.evaluation_start or dt.datetime.combine(tomorrow, dt.time(9), cst)
    end = spec.evaluation_end or dt.datetime.combine(start.astimezone(cst).date(), dt.time(17), cst)
    opens = spec.check_in_opens or now
    for name, value in (("evaluation_start", start), ("evaluation_end", end), ("check_in_opens", opens)):
        if value.tzinfo is None:
            raise InvalidRequestError(f"{name} needs a time zone")
    if end <= start:
        raise InvalidRequestError("评标结束时间须晚于开始时间 / evaluation_end must be after evaluation_start")
    if opens > end:
        raise InvalidRequestError("check_in_opens must be before evaluation_end")
    return start, end, opens


def _committed(uow: UnitOfWork, view: BatchView) -> BatchView:
    """Commit and pass the view on (for the calls without a request id)."""
    uow.commit()
    return view


def list_batches(uow: UnitOfWork, include_closed: bool = False) -> list[BatchView]:
    """Batches by evaluation start, newest last."""
    with uow:
        query = sa.select(Batch).order_by(Batch.evaluation_start, Batch.code)
        if not include_closed:
            query = query.where(Batch.closed.is_(False))
        return [view_of(b) for b in uow.session.execute(query).scalars()]


def get_batch(uow: UnitOfWork, code: str) -> BatchView:
    """One batch by code, or NotFoundError."""
    with uow:
        batch = uow.session.execute(sa.select(Batch).where(Batch.code == code)).scalar_one_or_none()
        if batch is None:
            raise NotFoundError(f"批次 {code} 不存在 / batch {code} does not exist")
        return view_of(batch)


def close_batch(
    uow: UnitOfWork, ctx: ServiceContext, code: str, actor: str = "organiser", *, request_id: str | None = None
) -> BatchView:
    """Close a batch: kiosks refuse further check-ins with BATCH_CLOSED (idempotent).

    Closing a closed batch changes nothing and writes no second audit row; with a request_id
    (OrganiserService.CloseBatch) a retry also gets the first answer back.
    """

    def close(u: UnitOfWork) -> BatchView:
        batch = u.session.execute(sa.select(Batch).where(Batch.code == code)).scalar_one_or_none()
        if batch is None:
            raise NotFoundError(f"批次 {code} 不存在 / batch {code} does not exist")
        if not batch.closed:
            batch.closed = True
            audit.record(u, at=ctx.clock(), actor=actor, action="batch_close", outcome="closed", batch_code=code)
        return view_of(batch)

    if request_id is None:
        return run_transaction(uow, lambda u: _committed(u, close(u)))
    call = idempotency.Call(
        idempotency.ORGANISER_CALLER, request_id, CLOSE_BATCH, idempotency.payload_hash(CLOSE_BATCH, code)
    )
    return idempotency.run_once(uow, ctx, call, close, encode=BatchView.to_dict, decode=BatchView.from_dict)
