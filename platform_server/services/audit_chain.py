"""The audit log's hash chain: each entry carries an HMAC over the previous entry's mac and its own content.

The key is the platform's audit key (random, kept in `platform_keys` sealed under the data key; see
services.keyring), so someone holding the database alone can edit, delete or insert rows but cannot
make the chain verify again. On SQLite a writer takes the next place in its own transaction by updating
the one-row `audit_chain` tip (the database's single write lock orders writers anyway). On PostgreSQL
that row lock would order every auditing transaction of every replica until its commit (measured: 30
kiosk calls queued on it, the database's CPU spent on the waiting), so there a writer only seals its
entry (an HMAC over the entry alone, no place yet) and `chain_pending`, run by a chainer in every
serving process (platform_server/audit_chainer.py), gives the sealed entries their places in the order
it finds them committed, a fraction of a second later. `verify` walks the chain and names every stretch
that was edited, deleted, inserted or cut off.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db import unit_of_work  # lazy (lazy_imports): the db layer imports models
from platform_server.db.models import AuditChain, AuditEntry
from platform_server.services.formula_cells import neutralised

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from platform_server.db.unit_of_work import UnitOfWork

COLUMNS = (
    "occurred_at",
    "kiosk_time",
    "actor",
    "action",
    "outcome",
    "batch_code",
    "id_hash",
    "id_masked",
    "check_in_public_id",
    "detail",
)
AUDIT_KEY_BYTES = 32
RETENTION_YEARS = 3  # nothing in the audit log is deleted before this (and the platform deletes nothing)

# SQLite: the writer takes the next place in its own transaction (the write lock orders writers).
ADVANCE_SQL = "UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, mac"
SET_TIP_SQL = "UPDATE audit_chain SET mac = :mac, tip_mac = :tip_mac WHERE id = 1"
INSERT_SQL = (
    f"INSERT INTO audit_log ({', '.join(COLUMNS)}, seq, mac) "  # noqa: S608  (fixed column names)
    f"VALUES ({', '.join(':' + c for c in COLUMNS)}, :seq, :mac)"
)

# PostgreSQL: a sealed entry, its place still to come (seq NULL); chain_pending gives it one.
INSERT_SEALED_SQL = (
    f"INSERT INTO audit_log ({', '.join(COLUMNS)}, mac) "  # noqa: S608  (fixed column names)
    f"VALUES ({', '.join(':' + c for c in COLUMNS)}, :mac)"
)
# The seal stands where the chain's previous mac will: no chain mac is ever this text.
SEAL_MARK = "sealed"
# One chainer at a time; another one finding the tip taken skips its round instead of queueing.
TAKE_TIP_SQL = "SELECT seq, mac FROM audit_chain WHERE id = 1 FOR UPDATE SKIP LOCKED"
PLACE_SQL = "UPDATE audit_log SET seq = :seq, mac = :mac WHERE id = :id AND seq IS NULL"
MOVE_TIP_SQL = "UPDATE audit_chain SET seq = :seq, mac = :mac, tip_mac = :tip_mac WHERE id = 1"
CHAIN_BATCH = 2_000  # entries placed per chaining transaction

_KEYS: weakref.WeakKeyDictionary[sa.Engine, bytes] = weakref.WeakKeyDictionary()
# Ids of sealed-looking rows whose seal is wrong, per engine: left out of the chain, logged once.
_REFUSED: weakref.WeakKeyDictionary[sa.Engine, set[int]] = weakref.WeakKeyDictionary()
log = logging.getLogger(__name__)


class AuditKeyMissingError(RuntimeError):
    """An audit entry was to be written on an engine whose audit key was never loaded (a wiring bug)."""


def bind_key(engine: sa.Engine, key: bytes) -> None:
    """Use `key` for the audit chain of everything written through `engine` (services.keyring.open_keys)."""
    _KEYS[engine] = key


def key_for(engine: sa.Engine) -> bytes:
    """The audit key bound to `engine`."""
    try:
        return _KEYS[engine]
    except KeyError:
        raise AuditKeyMissingError(
            "no audit key loaded for this database: build the platform through bootstrap (services.keyring)"
        ) from None


def _stamp(value: dt.datetime | None) -> str | None:
    """A time as both databases give it back: UTC to the microsecond."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _mac(  # noqa: PLR0917  (the hot loop of verify: positional, no dict per row)
    key: bytes,
    previous_mac: str,
    seq: int,
    occurred_at: dt.datetime,
    kiosk_time: dt.datetime | None,
    rest: Sequence[Any],
) -> str:
    body = json.dumps([seq, _stamp(occurred_at), _stamp(kiosk_time), *rest], ensure_ascii=False, separators=(",", ":"))
    message = b"audit entry\n" + previous_mac.encode("ascii") + b"\n" + body.encode("utf-8")
    return hmac.digest(key, message, "sha256").hex()


def entry_mac(key: bytes, previous_mac: str, seq: int, values: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the previous mac, the entry's place and every column of the entry."""
    return _mac(key, previous_mac, seq, values["occurred_at"], values["kiosk_time"], [values[c] for c in COLUMNS[2:]])


def seal(key: bytes, values: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the entry alone, as a PostgreSQL writer stores it until the entry has a place."""
    return entry_mac(key, SEAL_MARK, 0, values)


def _seal_holds(key: bytes, row: Any) -> bool:
    """True when a row read as (id, seq, mac, *COLUMNS) carries the seal of its own content."""
    expected = _mac(key, SEAL_MARK, 0, row[3], row[4], row[5:])
    return row.mac is not None and hmac.compare_digest(str(row.mac), expected)


def tip_mac(key: bytes, seq: int, mac: str) -> str:
    """HMAC of the tip, so it cannot be set back to an earlier entry copied from the log."""
    return hmac.new(key, f"audit tip\n{seq}\n{mac}".encode("ascii"), hashlib.sha256).hexdigest()


def append(
    run: Callable[[str, Mapping[str, Any]], Any],
    key: bytes,
    values: Mapping[str, Any],
    bound: Mapping[str, Any],
    *,
    postgres: bool,
) -> None:
    """Write one chained entry through `run(sql, params)` (returns a cursor or result with fetchone).

    `values` are the entry's Python values (the mac is computed over them); `bound` the same with the
    times as the column stores them. On PostgreSQL the entry is sealed, and placed by chain_pending.
    """
    if postgres:
        run(INSERT_SEALED_SQL, {**bound, "mac": seal(key, values)})
        return
    seq, previous = run(ADVANCE_SQL, {}).fetchone()
    seq = int(seq)
    mac = entry_mac(key, str(previous), seq, values)
    params = {**bound, "seq": seq, "mac": mac, "tip_mac": tip_mac(key, seq, mac)}
    run(INSERT_SQL, params)
    run(SET_TIP_SQL, params)


def append_uow(uow: UnitOfWork, values: Mapping[str, Any]) -> None:
    """append() in a unit of work's transaction, on its driver connection.

    SQLAlchemy's statement layer costs several times the database work of these three statements, and
    every step of every service writes an entry; the Session's transaction is the same either way.
    """
    append_many_uow(uow, [values])


def append_many_uow(uow: UnitOfWork, entries: Sequence[Mapping[str, Any]]) -> None:
    """append() of several entries in a unit of work's transaction, in their order.

    On PostgreSQL the sealed entries go in one driver call (the UWB worker records a whole claim's
    acknowledgements at once); on SQLite each takes its place in turn.
    """
    connection = uow.session.connection()  # begins the transaction (BEGIN IMMEDIATE on SQLite)
    driver = unit_of_work.DriverTransaction(connection.engine)
    driver.raw = connection.connection.driver_connection
    key = key_for(connection.engine)
    bound_entries = []
    for values in entries:
        bound = {**values, "occurred_at": driver.timestamp(values["occurred_at"])}
        if values["kiosk_time"] is not None:
            bound["kiosk_time"] = driver.timestamp(values["kiosk_time"])
        bound_entries.append(bound)
    if driver.postgres:
        sealed = [{**bound, "mac": seal(key, values)} for values, bound in zip(entries, bound_entries, strict=True)]
        driver.execute_many(INSERT_SEALED_SQL, sealed)
        return
    for values, bound in zip(entries, bound_entries, strict=True):
        append(driver.execute, key, values, bound, postgres=driver.postgres)


def start_chain(connection: sa.Connection, key: bytes) -> int:
    """Key the chain: authenticate its tip and chain the entries written before it existed; their count.

    Called once, when the platform's keys are first stored (services.keyring), in that transaction.
    """
    seq, previous = connection.execute(
        sa.select(AuditChain.seq, AuditChain.mac).where(AuditChain.id == 1).with_for_update()
    ).one()
    seq, previous = int(seq), str(previous)
    rows = connection.execute(
        sa.select(AuditEntry.id, *(AuditEntry.__table__.c[c] for c in COLUMNS))
        .where(AuditEntry.seq.is_(None))
        .order_by(AuditEntry.id)
    ).all()
    for row in rows:
        seq += 1
        values = dict(zip(COLUMNS, row[1:], strict=True))
        previous = entry_mac(key, previous, seq, values)
        connection.execute(sa.update(AuditEntry).where(AuditEntry.id == row[0]).values(seq=seq, mac=previous))
    connection.execute(
        sa.update(AuditChain)
        .where(AuditChain.id == 1)
        .values(seq=seq, mac=previous, tip_mac=tip_mac(key, seq, previous))
    )
    return len(rows)


def _row_query() -> sa.Select[Any]:
    """id, seq, mac, then COLUMNS: the shape _mac, _seal_holds and verify read rows in."""
    table: Any = AuditEntry.__table__
    return sa.select(table.c.id, table.c.seq, table.c.mac, *(table.c[c] for c in COLUMNS))


def chain_pending(engine: sa.Engine, key: bytes, *, limit: int = CHAIN_BATCH) -> int | None:
    """Give the sealed entries committed so far their places in the chain (PostgreSQL): how many, or None.

    One transaction holds the tip row: the entries it sees (committed ones only) go in id order after
    the tip, each one's seal checked first. A row whose seal does not hold was not written by the
    platform: it stays out of the chain (verify names it) and is logged once. None: another chainer
    holds the tip, this round placed nothing. SQLite chains as it writes: nothing to do (0).
    """
    if engine.dialect.name != "postgresql":
        return 0
    refused = _REFUSED.setdefault(engine, set())
    table = AuditEntry.__table__
    with engine.begin() as connection:
        tip = connection.exec_driver_sql(TAKE_TIP_SQL).first()
        if tip is None:
            return None
        query = _row_query().where(table.c.seq.is_(None)).order_by(table.c.id).limit(limit)
        if refused:
            query = query.where(table.c.id.not_in(sorted(refused)))
        seq, previous = int(tip.seq), str(tip.mac)
        places: list[dict[str, Any]] = []
        for row in connection.execute(query):
            if not _seal_holds(key, row):
                refused.add(row.id)
                log.error("audit entry id %s has no valid seal: not the platform's, left out of the chain", row.id)
                continue
            seq += 1
            previous = _mac(key, previous, seq, row[3], row[4], row[5:])
            places.append({"id": row.id, "seq": seq, "mac": previous})
        if places:
            connection.execute(sa.text(PLACE_SQL), places)
            new_tip = {"seq": seq, "mac": previous, "tip_mac": tip_mac(key, seq, previous)}
            connection.execute(sa.text(MOVE_TIP_SQL), new_tip)
    return len(places)


def chain_all_pending(engine: sa.Engine, key: bytes, *, timeout_s: float = 60.0) -> int:
    """chain_pending until everything committed before is placed, taking turns with running chainers.

    Raises TimeoutError when other chainers kept the tip for `timeout_s` (they are placing, slowly).
    """
    total, deadline = 0, time.monotonic() + timeout_s
    while True:
        placed = chain_pending(engine, key)
        if placed is None:  # a replica's chainer is placing right now: its round is short, wait for it
            if time.monotonic() > deadline:
                raise TimeoutError(f"the audit chain's tip stayed taken for {timeout_s:.0f} s: try again")
            time.sleep(0.05)
            continue
        total += placed
        if placed < CHAIN_BATCH:  # a short round: everything committed before it is placed
            return total


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One broken stretch of the chain: what, which entries (ids, seq) and when."""

    kind: str  # edited | deleted | inserted | truncated | tip
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` found."""

    entries: int
    tip_seq: int
    findings: list[Finding]
    seconds: float
    pending: int = 0  # sealed entries written since the walk's chaining round: placed by the next one

    @property
    def ok(self) -> bool:
        """True when the chain is whole."""
        return not self.findings


def _where(row: Any) -> str:
    return f"id {row.id} (seq {row.seq}, {_stamp(row.occurred_at)} UTC)"


def _read_connection(engine: sa.Engine) -> sa.Connection:
    """A connection whose reads all see one snapshot (the tip and the rows must agree)."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="REPEATABLE READ")
    return connection.execution_options(sqlite_begin="DEFERRED")


def verify(engine: sa.Engine, key: bytes) -> VerifyReport:
    """Walk the whole chain in order and report every stretch that does not authenticate.

    On PostgreSQL the sealed entries are placed first, so the walk covers everything written before it.
    """
    started = time.perf_counter()
    chain_all_pending(engine, key)
    findings: list[Finding] = []
    table = AuditEntry.__table__
    with _read_connection(engine) as connection, connection.begin():
        tip = connection.execute(sa.select(AuditChain.seq, AuditChain.mac, AuditChain.tip_mac)).one()
        if not hmac.compare_digest(str(tip.tip_mac), tip_mac(key, int(tip.seq), str(tip.mac))):
            findings.append(
                Finding("tip", f"the chain tip (seq {tip.seq}) does not authenticate: it was altered or set back")
            )
        rows = connection.execution_options(yield_per=5000).execute(
            _row_query().where(table.c.seq.is_not(None)).order_by(table.c.seq)
        )
        expected, previous, last, count = 1, "", None, 0
        for row in rows:
            count += 1
            if row.seq > expected:
                after = f"after {_where(last)}" if last is not None else "at the start of the log"
                findings.append(
                    Finding(
                        "deleted", f"entries seq {expected}..{row.seq - 1} are missing, {after}, before {_where(row)}"
                    )
                )
            # Columns in the select's order: id, seq, mac, then COLUMNS.
            elif not hmac.compare_digest(str(row.mac), _mac(key, previous, int(row.seq), row[3], row[4], row[5:])):
                findings.append(
                    Finding(
                        "edited",
                        f"entry {_where(row)} does not authenticate: edited, or put in place of the original",
                    )
                )
            # Go on from the stored mac, so one bad entry is one finding and the rest is still checked.
            expected, previous, last = int(row.seq) + 1, str(row.mac), row
        last_seq = expected - 1
        if int(tip.seq) > last_seq:
            after = f"after {_where(last)}" if last is not None else "(the log is empty)"
            findings.append(
                Finding(
                    "truncated",
                    f"entries seq {last_seq + 1}..{tip.seq} are missing at the end {after}: the log was cut off",
                )
            )
        elif last_seq > int(tip.seq):
            findings.append(
                Finding(
                    "inserted",
                    f"entries seq {int(tip.seq) + 1}..{last_seq} lie beyond the chain tip: not written by the platform",
                )
            )
        elif last is not None and str(last.mac) != str(tip.mac):
            findings.append(Finding("edited", f"the last entry {_where(last)} is not the one the chain tip names"))
        loose = connection.execute(_row_query().where(table.c.seq.is_(None)).order_by(table.c.id)).all()
        foreign = [row for row in loose if not _seal_holds(key, row)]
        if foreign:
            ids = ", ".join(f"id {r.id} ({_stamp(r.occurred_at)} UTC)" for r in foreign[:20])
            more = f" and {len(foreign) - 20} more" if len(foreign) > 20 else ""
            findings.append(Finding("inserted", f"entries without a place in the chain: {ids}{more}"))
    return VerifyReport(count, int(tip.seq), findings, time.perf_counter() - started, len(loose) - len(foreign))


EXPORT_FIELDS = (
    "seq",
    "id",
    "occurred_at",
    "kiosk_time",
    "actor",
    "action",
    "outcome",
    "batch_code",
    "id_masked",
    "check_in_public_id",
    "detail",
    "mac",
)


def export_rows(engine: sa.Engine, since: dt.datetime | None, until: dt.datetime | None) -> Iterator[dict[str, Any]]:
    """Entries with since <= occurred_at < until, in chain order, for inspectors.

    Personal data stays masked: ID numbers only as stored (masked), the keyed ID hash left out (it links
    entries to a person for whoever holds the key), free text already masked when it was written.
    Sealed entries are placed first (PostgreSQL), so the export has everything written before it.
    """
    chain_all_pending(engine, key_for(engine))
    table = AuditEntry.__table__
    query = sa.select(*(table.c[f] for f in EXPORT_FIELDS)).where(table.c.seq.is_not(None)).order_by(table.c.seq)
    if since is not None:
        query = query.where(table.c.occurred_at >= since)
    if until is not None:
        query = query.where(table.c.occurred_at < until)
    with _read_connection(engine) as connection, connection.begin():
        for row in connection.execution_options(yield_per=5000).execute(query):
            item = dict(row._mapping)  # noqa: SLF001
            item["occurred_at"] = _stamp(item["occurred_at"])
            item["kiosk_time"] = _stamp(item["kiosk_time"])
            yield item


def write_export(rows: Iterator[dict[str, Any]], out: Path, fmt: str) -> int:
    """Write CSV (with a header) or JSON lines; the number of entries."""
    if fmt not in {"csv", "jsonl"}:
        raise ValueError(f"--format must be csv or jsonl, not {fmt!r}")
    count = 0
    with out.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            return count
        writer = csv.DictWriter(handle, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for row in rows:
            # A spreadsheet would run a cell starting with = + - @ as a formula: quote it as text.
            writer.writerow({k: neutralised(v) for k, v in row.items()})
            count += 1
    return count
