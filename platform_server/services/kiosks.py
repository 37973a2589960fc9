"""Kiosks: registry, the batch a kiosk serves, heartbeats with device health, kiosk-side audit events."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db.models import Batch, Kiosk
from platform_server.db.unit_of_work import (
    run_driver_transaction,
    run_transaction,
    utc_read,
    utc_read_set,
)
from platform_server.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from platform_server.services import audit, cases, idempotency
from platform_server.services.batches import BatchView

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from platform_server.db.unit_of_work import SqlTransaction, UnitOfWork
    from platform_server.services.context import ServiceContext

KIOSK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REPORT_EVENT = "ReportKioskEvent"
# A heartbeat that changes nothing is written only when the stored one is older than this: 200 kiosks
# beating every 5 s are then ~7 writes/s instead of 40. Whoever judges a kiosk online must allow for
# it: a kiosk is offline when its last_heartbeat_at is older than this plus its heartbeat period.
HEARTBEAT_REFRESH_S = 30


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One device's state as the kiosk reports it."""

    device: str
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatCommand:
    """A kiosk's periodic report."""

    kiosk_id: str
    devices: tuple[DeviceHealth, ...]
    band_stock: int
    pending_check_ins: int
    out_of_service: bool
    software_version: str
    kiosk_time: dt.datetime | None = None
    #: The receipt printer's paper: ok, near_end, out, or "" (no printer, or it did not answer).
    printer_paper: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """The platform's reply: its clock, whether stock is low, and the batch the kiosk serves (as `kiosk_context`)."""

    server_time: dt.datetime
    stock_low: bool
    registered: bool
    batch: BatchView | None = None  # read with the stored beat, in the same statement


def register_kiosk(  # noqa: PLR0917
    uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, name: str = "", location: str = "", batch_code: str = ""
) -> None:
    """Register a kiosk (kiosk_id = its certificate CN), optionally serving one batch."""
    if not KIOSK_ID.match(kiosk_id):
        raise InvalidRequestError(f"kiosk id {kiosk_id!r} must be 1-64 ASCII letters, digits, '.', '-' or '_'")
    with uow:
        if uow.execute(sa.select(Kiosk.id).where(Kiosk.kiosk_id == kiosk_id)).first() is not None:
            raise AlreadyExistsError(f"终端 {kiosk_id} 已登记 / kiosk {kiosk_id} is already registered")
        batch_id = None
        if batch_code:
            batch_id = uow.execute(sa.select(Batch.id).where(Batch.code == batch_code)).scalar_one_or_none()
            if batch_id is None:
                raise NotFoundError(f"批次 {batch_code} 不存在 / batch {batch_code} does not exist")
        uow.session.add(Kiosk(kiosk_id=kiosk_id, name=name, location=location, batch_id=batch_id))
        audit.record(
            uow,
            at=ctx.clock(),
            actor="organiser",
            action="kiosk_register",
            outcome="registered",
            batch_code=batch_code or None,
            detail={"kiosk": kiosk_id},
        )
        uow.commit()


# The kiosk's own batch (NULL columns when it has none, or when that batch is closed); no row: no such
# kiosk. Columns 1-11 as _batch_view() reads them, in _OPEN_BATCHES too.
_KIOSK_BATCH = (
    "SELECT k.batch_id, b.code, b.name, b.venue, h.code, h.name, h.address, b.evaluation_start,"
    " b.evaluation_end, b.check_in_opens, b.closed, b.allow_id_only FROM kiosks k"
    " LEFT JOIN batches b ON b.id = k.batch_id AND NOT b.closed LEFT JOIN hotels h ON h.id = b.hotel_id"
    " WHERE k.kiosk_id = :kiosk_id"
)
_OPEN_BATCHES = (
    "SELECT b.code, b.name, b.venue, h.code, h.name, h.address, b.evaluation_start, b.evaluation_end,"
    " b.check_in_opens, b.closed, b.allow_id_only FROM batches b JOIN hotels h ON h.id = b.hotel_id"
    " WHERE NOT b.closed LIMIT 2"
)


def _batch_view(row: Sequence[Any]) -> BatchView:
    """A BatchView from a driver row of _OPEN_BATCHES' columns."""
    return BatchView(
        code=row[0],
        name=row[1],
        venue=row[2],
        hotel_code=row[3],
        hotel_name=row[4],
        hotel_address=row[5],
        evaluation_start=utc_read_set(row[6]),
        evaluation_end=utc_read_set(row[7]),
        check_in_opens=utc_read_set(row[8]),
        closed=bool(row[9]),
        allow_id_only=bool(row[10]),
    )


def kiosk_context(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str) -> tuple[BatchView | None, dt.datetime]:
    """The open batch this kiosk serves (its own, or the only open one), and the server time.

    Asked with every heartbeat (40 a second for 200 kiosks): reads on a driver connection, no Session,
    no write lock on SQLite.
    """

    def read(d: SqlTransaction) -> BatchView | None:
        row = d.execute(_KIOSK_BATCH, {"kiosk_id": kiosk_id}).fetchone()
        return None if row is None else _served_batch(d, row)

    batch = run_driver_transaction(uow, read, read_only=True)
    return batch, ctx.clock()


def _served_batch(d: SqlTransaction, columns: Sequence[Any]) -> BatchView | None:
    """The batch a kiosk serves, from its row's _KIOSK_BATCH columns: its own if open, else the only open one."""
    if columns[0] is not None:  # the kiosk's own batch, if still open
        return _batch_view(columns[1:]) if columns[1] is not None else None
    open_batches = d.execute(_OPEN_BATCHES).fetchall()
    return _batch_view(open_batches[0]) if len(open_batches) == 1 else None


# The stored beat and, after it, _KIOSK_BATCH's columns: a beat's comparison and its answer's context
# in one statement of one read transaction (a beat is most of a kiosk's calls: 40 a second for 200).
_LAST_BEAT = _KIOSK_BATCH.replace(
    "SELECT ",
    "SELECT k.last_heartbeat_at, k.devices_json, k.band_stock, k.pending_check_ins, k.out_of_service,"
    " k.software_version, k.printer_paper, ",
    1,
)
_BATCH_COLUMNS = 7  # where _KIOSK_BATCH's columns start in a _LAST_BEAT row


class _Beat(enum.Enum):
    """How a beat compares with what is stored of its kiosk."""

    UNKNOWN = "unknown"  # no such kiosk
    UNCHANGED = "unchanged"  # nothing to write: the stored state is this beat's, and recent
    FIGURES = "figures"  # only the figures (stock, queue, version) changed, or the stored beat is old
    HEALTH = "health"  # a device, the service state or the paper changed: written with an audit entry


def _compare_beat(
    uow: UnitOfWork, cmd: HeartbeatCommand, devices: str, now: dt.datetime
) -> tuple[_Beat, BatchView | None]:
    """Read the stored beat and say what this one changes; with it, the batch the kiosk serves.

    A read-only transaction: on SQLite it does not queue for the write lock.
    """

    def read(d: SqlTransaction) -> tuple[Sequence[Any] | None, BatchView | None]:
        row = d.execute(_LAST_BEAT, {"kiosk_id": cmd.kiosk_id}).fetchone()
        return (None, None) if row is None else (row, _served_batch(d, row[_BATCH_COLUMNS:]))

    # One statement on a driver connection (two for a kiosk without a batch of its own): no Session,
    # no write lock (about 40 beats/s for 200 kiosks); retried like every transaction when the
    # database is briefly unreachable.
    row, batch = run_driver_transaction(uow, read, read_only=True)
    if row is None:
        return _Beat.UNKNOWN, None
    return _what_changed(row, cmd, devices, now), batch


def _what_changed(row: Sequence[Any], cmd: HeartbeatCommand, devices: str, now: dt.datetime) -> _Beat:
    """How a beat compares with the stored one (a _LAST_BEAT row)."""
    stored_devices, stock, pending, version, paper = row[1], row[2], row[3], row[5], row[6]
    last, out_of_service = utc_read(row[0]), bool(row[4])
    if (stored_devices, out_of_service, paper) != (devices, cmd.out_of_service, cmd.printer_paper[:10]):
        return _Beat.HEALTH
    fresh = last is not None and (now - last).total_seconds() < HEARTBEAT_REFRESH_S
    same = (stock, pending, version) == (cmd.band_stock, cmd.pending_check_ins, cmd.software_version[:64])
    return _Beat.UNCHANGED if fresh and same else _Beat.FIGURES


_BEAT_FIGURES = (
    "UPDATE kiosks SET last_heartbeat_at = :now, band_stock = :band_stock, pending_check_ins = :pending,"
    " software_version = :version WHERE kiosk_id = :kiosk_id"
)


def _write_figures(d: SqlTransaction, cmd: HeartbeatCommand, now: dt.datetime) -> bool:
    """One UPDATE of a beat's figures, in a transaction opened not to wait for the disk; False: no such kiosk.

    A beat is the kiosk's latest word, sent again in 5 s: should a crash of the database's machine
    lose the last moment's beats (DriverTransaction, `flushed=False`), the next ones write the same
    columns again.
    """
    params = {
        "now": d.timestamp(now),
        "band_stock": cmd.band_stock,
        "pending": cmd.pending_check_ins,
        "version": cmd.software_version[:64],
        "kiosk_id": cmd.kiosk_id,
    }
    written = bool(d.execute(_BEAT_FIGURES, params).rowcount == 1)
    d.commit()
    return written


def heartbeat(uow: UnitOfWork, ctx: ServiceContext, cmd: HeartbeatCommand) -> HeartbeatAnswer:
    """Store the kiosk's health; audit only changes (service state, device states), not every beat.

    A beat that changes nothing and follows a stored one by less than HEARTBEAT_REFRESH_S is answered
    from a read alone, without a write transaction; one that changes only its figures (the band stock
    as bands go out) is one UPDATE on a driver connection; a change of health goes through the Session
    with its audit entry.
    """
    now = ctx.clock()
    devices = json.dumps([asdict(d) for d in cmd.devices], ensure_ascii=False, sort_keys=True)
    stock_low = cmd.band_stock <= ctx.rules.band_stock_low
    beat, batch = _compare_beat(uow, cmd, devices, now)
    if beat is _Beat.UNKNOWN:
        return HeartbeatAnswer(now, stock_low=False, registered=False)
    if beat is _Beat.UNCHANGED:
        return HeartbeatAnswer(now, stock_low=stock_low, registered=True, batch=batch)
    if beat is _Beat.FIGURES:
        written = run_driver_transaction(uow, lambda d: _write_figures(d, cmd, now), flushed=False)
        return HeartbeatAnswer(now, stock_low=stock_low and written, registered=written, batch=batch)

    def store_health(u: UnitOfWork) -> HeartbeatAnswer:
        kiosk = u.session.execute(sa.select(Kiosk).where(Kiosk.kiosk_id == cmd.kiosk_id)).scalar_one_or_none()
        if kiosk is None:
            return HeartbeatAnswer(now, stock_low=False, registered=False)
        paper_changed = cmd.printer_paper != kiosk.printer_paper
        if devices != kiosk.devices_json or cmd.out_of_service != kiosk.out_of_service or paper_changed:
            audit.record(
                u,
                at=now,
                kiosk_time=cmd.kiosk_time,
                actor=cmd.kiosk_id,
                action="kiosk_health",
                outcome="out_of_service" if cmd.out_of_service else "in_service",
                detail=devices,
            )
        kiosk.last_heartbeat_at = now
        kiosk.devices_json = devices
        kiosk.band_stock = cmd.band_stock
        kiosk.pending_check_ins = cmd.pending_check_ins
        kiosk.out_of_service = cmd.out_of_service
        kiosk.software_version = cmd.software_version[:64]
        kiosk.printer_paper = cmd.printer_paper[:10]
        u.commit()
        return HeartbeatAnswer(now, stock_low=stock_low, registered=True, batch=batch)

    # In the retry loop like every kiosk write: a lock held past its bound ends as "try again".
    return run_transaction(uow, store_health)


# Kiosk events that need a person, and the case kind each becomes (any event whose outcome is
# `needs_staff` becomes a KIOSK_SIGNAL case).
STAFF_SIGNALS = {
    "dispense_outcome_unknown": cases.CaseKind.DISPENSE_OUTCOME_UNKNOWN,
    "queued_check_in_refused": cases.CaseKind.QUEUED_CHECK_IN_REFUSED,
    "annul_refused": cases.CaseKind.ANNUL_REFUSED,
}
_QUEUED_REQUEST = re.compile(r"request_id=([A-Za-z0-9_.:-]{1,64})")


def _staff_signal(  # noqa: PLR0917
    u: UnitOfWork,
    ctx: ServiceContext,
    kiosk_id: str,
    batch_id: int | None,
    event: str,
    outcome: str,
    detail: str,
    request_id: str | None,
    now: dt.datetime,
) -> None:
    """A staff signal from a kiosk becomes a needs-staff case (and event), not only an audit row.

    A signal about a queued check-in names its CompleteCheckIn request id: the case is the same one
    the platform opened when it answered that replay, so a signal and an answer never make two cases.
    """
    kind = STAFF_SIGNALS.get(event)
    if kind is None and outcome != "needs_staff":
        return
    queued = _QUEUED_REQUEST.search(detail)
    key = queued.group(1) if queued else (request_id or "")
    cases.open_case(
        u,
        ctx,
        kind=kind or cases.CaseKind.KIOSK_SIGNAL,
        at=now,
        created_by=kiosk_id,
        kiosk_id=kiosk_id,
        batch_id=batch_id,
        reason=(outcome if kind else event)[:40],
        detail={"event": event, "outcome": outcome, "detail": detail[:500]},
        dedupe_key=cases.dedupe(kind or cases.CaseKind.KIOSK_SIGNAL, kiosk_id, key) if key else None,
    )


def report_event(
    uow: UnitOfWork,
    ctx: ServiceContext,
    *,
    kiosk_id: str,
    event: str,
    outcome: str,
    detail: str,
    id_hint: str,
    kiosk_time: dt.datetime | None,
    request_id: str | None = None,
) -> bool:
    """Append a kiosk-side step or failure to the audit log; False if the kiosk is not registered.

    With a request_id (ReportKioskEvent) the row is written once however often the kiosk retries:
    a retry after a lost answer must not make one cancelled check-in look like two in the audit log.
    """
    if len(id_hint) > 4 or (id_hint and not id_hint.isalnum()):
        raise InvalidRequestError("id_number_hash_hint may hold the last 4 characters of the ID number only")

    def append(u: UnitOfWork) -> bool:
        kiosk = u.execute(sa.select(Kiosk.id, Kiosk.batch_id).where(Kiosk.kiosk_id == kiosk_id)).first()
        if kiosk is None:
            return False
        now = ctx.clock()
        audit.record(
            u,
            at=now,
            kiosk_time=kiosk_time,
            actor=kiosk_id,
            action=("kiosk:" + event)[:40],
            outcome=outcome[:40] or "-",
            id_masked=("*" * 14 + id_hint) if id_hint else None,
            detail=detail,
        )
        _staff_signal(u, ctx, kiosk_id, kiosk[1], event, outcome, detail, request_id, now)
        return True

    if request_id is None:

        def append_once(u: UnitOfWork) -> bool:
            recorded = append(u)
            u.commit()
            return recorded

        return run_transaction(uow, append_once)
    # Keyed: the free-text detail may hold personal data, and the digest is stored.
    content = idempotency.keyed_payload_hash(
        ctx.data_key, REPORT_EVENT, event, outcome, detail, id_hint, kiosk_time.isoformat() if kiosk_time else ""
    )
    call = idempotency.Call(kiosk_id, request_id, REPORT_EVENT, content)
    return idempotency.run_once(
        uow,
        ctx,
        call,
        append,
        encode=lambda recorded: {"recorded": recorded},
        decode=lambda data: bool(data["recorded"]),
        keep=bool,  # an unregistered kiosk's report leaves nothing behind, not even a request record
    )
