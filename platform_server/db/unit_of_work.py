"""Unit of work over a SQLAlchemy session, with retry of whole transactions on write conflicts.

Services take a `UnitOfWork`, open it with `with uow:`, and `uow.commit()`. Conflicts between
concurrent kiosks (a unique index on an active room or band, SQLite's write lock, PostgreSQL
serialisation failures) surface as retryable errors; `run_transaction` reruns the whole service
function, so the loser of a race simply sees the winner's commit and picks another room.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import re
import sqlite3
import time
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from platform_server.db import engine as db_engine  # lazy (lazy_imports): both import this module
from platform_server.db import models
from platform_server.errors import TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    import sqlalchemy.orm as so

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL SQLSTATEs worth retrying: unique violation, serialisation failure, deadlock, lock timeout,
# and the server going away (shut down, restarted, connection lost): the pool then reconnects. Every
# kiosk write is idempotent by its request id, so rerunning one whose commit was lost is safe.
_RETRYABLE_SQLSTATES = {"23505", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "08000", "08003", "08006"}
MAX_ATTEMPTS = 12
# Overall bound on one transaction's lock waits and retries: past it the caller gets UNAVAILABLE
# ("try again") instead of a call that hangs for minutes (each wait is itself bounded, see db.engine).
LOCK_WAIT_BUDGET_S = 8.0


class RetryTransactionError(Exception):
    """Raised inside a transaction that saw a concurrent change: run_transaction reruns it."""


class UnitOfWork:
    """One database transaction: `with uow:` opens a session, leaving without commit rolls back."""

    _read_only_factories: ClassVar[weakref.WeakKeyDictionary[Any, so.sessionmaker[so.Session]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, session_factory: so.sessionmaker[so.Session]) -> None:
        self._session_factory = session_factory
        self._after_commit: list[Callable[[], None]] = []
        self._session: so.Session | None = None
        bind = session_factory.kw.get("bind")
        self.dialect: str = bind.dialect.name if bind is not None else "sqlite"

    @property
    def session(self) -> so.Session:
        """The open session; only valid inside `with uow:`."""
        if self._session is None:
            raise RuntimeError("unit of work used outside `with uow:`")
        return self._session

    def __enter__(self) -> Self:
        self._session = self._session_factory()
        self._after_commit = []
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.rollback()
            session.close()

    def read_only(self) -> UnitOfWork:
        """A unit of work for reads only: on SQLite its transactions do not take the write lock.

        Readers then run beside a writer (WAL) instead of queueing behind it; writing in one fails.
        """
        bind = self._session_factory.kw.get("bind")
        if bind is None or bind.dialect.name != "sqlite":
            return UnitOfWork(self._session_factory)
        factory = self._read_only_factories.get(bind)
        if factory is None:
            factory = self._read_only_factories.setdefault(
                bind, db_engine.make_session_factory(db_engine.read_only(bind))
            )
        return UnitOfWork(factory)

    def commit(self) -> None:
        """Commit, then run the callbacks registered for after the commit (e.g. wake event streams)."""
        self.session.commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def rollback(self) -> None:
        """Roll back everything since the last commit."""
        self.session.rollback()
        self._after_commit = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    @property
    def engine(self) -> sa.Engine:
        """The engine this unit of work's sessions are bound to."""
        engine: sa.Engine = self._session_factory.kw["bind"]
        return engine

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL (row locks with SKIP LOCKED, advisory locks)."""
        return self.dialect == "postgresql"

    def driver_transaction(self, *, read_only: bool = False, flushed: bool = True) -> DriverTransaction:
        """A Session-free transaction on the same engine (see DriverTransaction)."""
        return DriverTransaction(self._session_factory.kw["bind"], read_only=read_only, flushed=flushed)

    def execute(
        self, statement: sa.Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> sa.Result[*tuple[Any, ...]]:
        """Run a Core statement in this transaction (the hot paths skip building ORM objects)."""
        return self.session.execute(statement, params)


def is_retryable(err: BaseException) -> bool:
    """True for errors a rerun of the same transaction can get past (races and lock waits).

    Takes SQLAlchemy's wrapped errors and the drivers' own (a DriverTransaction's are not wrapped).
    """
    if isinstance(err, RetryTransactionError):
        return True
    orig = err.orig if isinstance(err, sa_exc.DBAPIError) else err
    # The database went away (the pool replaces the connection on the next attempt); a raw driver
    # error of a lost connection (DriverTransaction) carries no SQLSTATE to read.
    if (isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated) or (
        type(orig).__name__ == "OperationalError" and type(orig).__module__.startswith("psycopg")
    ):
        return True
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRYABLE_SQLSTATES
    if not isinstance(err, sa_exc.DBAPIError) and not isinstance(orig, sqlite3.Error):
        return False
    text = str(orig).lower()
    if isinstance(err, sa_exc.IntegrityError) or isinstance(orig, sqlite3.IntegrityError):
        return "unique constraint failed" in text
    return "database is locked" in text or "database is busy" in text


def as_transient(err: BaseException) -> TransientError | None:
    """A database error a later call gets past (a lock wait, a lost connection) as the caller's "try again".

    For the boundaries (servicers, console routes): a path that ran outside run_transaction still
    answers UNAVAILABLE, never an unexpected error, when the database was only busy or away. A
    TransientError (a retry loop's own "try again") is returned as it is.
    """
    if isinstance(err, TransientError):
        return err
    orig = err.orig if isinstance(err, sa_exc.DBAPIError) else err
    if isinstance(orig, sqlite3.IntegrityError) or getattr(orig, "sqlstate", None) == "23505":
        return None  # a race on a unique key: retried inside a transaction loop, a conflict outside one
    if not is_retryable(err):
        return None
    return TransientError("数据库繁忙，请稍后重试 / the database is busy, try again")


class SqlTransaction(Protocol):
    """A transaction that runs SQL text with `:name` parameters: a DriverTransaction or a Session's."""

    postgres: bool
    engine: sa.Engine

    def timestamp(self, value: dt.datetime) -> Any:
        """A UTC time as the column stores it."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; the driver's cursor."""

    def commit(self) -> None:
        """Commit, then run the after-commit callbacks."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed."""


_COMMIT_WITHOUT_FLUSH = "SET LOCAL synchronous_commit TO OFF"
# SQLite in WAL mode: a commit appends to the WAL without fsyncing it. The safety level cannot change
# inside a transaction, so it is set before BEGIN and put back after the transaction (DriverTransaction).
_SQLITE_UNFLUSHED = "PRAGMA synchronous=NORMAL"


def commit_without_flush(d: SqlTransaction) -> None:
    """PostgreSQL: this transaction's COMMIT returns before its WAL is on disk (SQLite: nothing changes).

    A crash of PostgreSQL (or of its machine) within about 0.6 s (3 × wal_writer_delay) can lose the
    transaction, whole and never out of order: its WAL may still be in the server's buffers. Any later
    synchronous commit flushes it first. For writes nothing a kiosk does next relies on being durable
    (services.identify; docs/platform-configuration.md). Call it before the transaction's first write.
    On SQLite this is decided before the transaction begins: a DriverTransaction opened with
    `flushed=False` (both databases), which is what the kiosk's hot paths use.
    """
    if d.postgres:
        d.execute(_COMMIT_WITHOUT_FLUSH)


class DriverTransaction:
    """One transaction straight on a pooled driver connection, without a Session: the kiosk's hot paths.

    SQLAlchemy's Session costs about 0.1 ms to open and as much again to commit, more than the database
    work of an identify; this runs fixed SQL text with bound parameters (`:name`, rewritten for psycopg)
    in the same kind of transaction (BEGIN IMMEDIATE on SQLite) on the same pool.
    """

    _PYFORMAT = re.compile(r"(?<!:):([a-z_]+)")
    _pyformat_cache: ClassVar[dict[str, str]] = {}

    def __init__(self, engine: sa.Engine, *, read_only: bool = False, flushed: bool = True) -> None:
        """Bind to the engine's pool; the connection is taken on entering.

        `read_only`: one-statement reads (the kiosk gate) that need no write lock: on SQLite no
        BEGIN IMMEDIATE, so they never queue behind writers; on PostgreSQL in autocommit, each
        statement its own transaction.
        `flushed=False`: the COMMIT returns before the transaction is on disk, for writes nothing a
        kiosk does next relies on being durable (an identify, a beat's figures). PostgreSQL: as
        `commit_without_flush`. SQLite: the WAL is not fsynced at this COMMIT (synchronous NORMAL for
        this transaction only); a power cut can lose it, whole, with the other unflushed commits
        after the last flushed one, never out of order: the next flushed COMMIT of any connection
        fsyncs the WAL, and so everything appended to it before. A process crash loses nothing.
        """
        self._engine = engine
        self.engine = engine
        self._read_only = read_only
        self._flushed = flushed or read_only
        self._level: int | None = None  # SQLite: the connection's safety level while this one runs unflushed
        self.postgres = engine.dialect.name == "postgresql"
        self.timestamp: Callable[[dt.datetime], Any] = _timestamp_binder(engine.dialect)
        self._fairy: Any = None
        self.raw: Any = None
        self._after_commit: list[Callable[[], None]] = []
        self._gate: db_engine.WriteGate | None = None

    def __enter__(self) -> Self:
        gate = None if self.postgres or self._read_only else db_engine.write_gate(self._engine)
        # SQLite: queue behind this process's other writers first (db.engine.WriteGate), then BEGIN.
        self._gate = gate if gate is not None and gate.enter() else None
        try:
            self._fairy = _IdleConnections.of(self._engine).take(writer=self._gate is not None)
            self.raw = self._fairy.driver_connection
            self._after_commit = []
            if not self.postgres and not self._read_only:
                if not self._flushed:  # until __exit__ puts the connection's own level back
                    self._level = self.raw.execute("PRAGMA synchronous").fetchone()[0]
                    self.raw.execute(_SQLITE_UNFLUSHED)
                self.raw.execute("BEGIN IMMEDIATE")  # see db.engine: writers queue at BEGIN, not mid-way
            elif self.postgres and self._read_only:
                # A one-statement read is its own transaction: no BEGIN and ROLLBACK round trips.
                self.raw.autocommit = True
            elif self.postgres and not self._flushed:
                self.raw.execute(_COMMIT_WITHOUT_FLUSH)  # the transaction's first statement
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fairy, self._fairy = self._fairy, None
        gate, self._gate = self._gate, None
        try:
            if fairy is None:
                return
            try:
                if self.postgres and self._read_only:
                    self.raw.autocommit = False  # as the pool hands connections out
                self.raw.rollback()  # nothing to undo after a commit
                if self._level is not None:  # every other transaction on it waits for the disk again
                    self.raw.execute(f"PRAGMA synchronous={int(self._level)}")
                    self._level = None
            except Exception:
                fairy.invalidate()  # a connection that cannot even roll back is not reused
                if exc is not None:
                    return  # the original error (e.g. the server went away) is the one to report
                raise
            _IdleConnections.of(self._engine).give(fairy, writer=gate is not None)
        finally:
            if gate is not None:
                gate.leave()

    def _driver_sql(self, sql: str) -> str:
        """`:name` parameters as the driver wants them (psycopg: `%(name)s`), converted once per text."""
        if not self.postgres:
            return sql
        text = self._pyformat_cache.get(sql)
        if text is None:
            text = self._pyformat_cache.setdefault(sql, self._PYFORMAT.sub(r"%(\1)s", sql))
        return text

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement in the transaction; the driver's cursor."""
        return self.raw.execute(self._driver_sql(sql), params or {})

    def execute_many(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each parameter set in one driver call (psycopg pipelines them)."""
        if self.postgres:
            with self.raw.cursor() as cursor:
                cursor.executemany(self._driver_sql(sql), params)
            return
        self.raw.executemany(sql, params)

    def commit(self) -> None:
        """Commit, then run the after-commit callbacks."""
        self.raw.commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed."""
        self._after_commit.append(callback)


class _IdleConnections:
    """SQLite connections kept checked out of the pool between DriverTransactions, per engine.

    The pool's own check-out and check-in cost ~20 µs, a tenth of an identify. A SQLite connection is a
    local file handle that cannot go stale, and each one is rolled back before it is kept. PostgreSQL
    connections always go back to the pool, which pings one that sat idle (db.engine._ping_when_idle).

    The holder of the process's WriteGate always writes on one connection of its own (`writer`). In WAL
    mode a connection throws its whole page cache away when it begins a transaction after another
    connection has committed; writers taking turns on whichever connection came to hand each began
    cold and read their B-tree pages again from the file while holding the one write lock. The gate's
    own connection is the last writer whenever this process wrote last, so its cache stays valid, and
    it is given a larger one (WRITER_CACHE_KIB).
    """

    KEEP = 4  # of the pool's connections (one per request thread by default): Sessions still find plenty
    # The write-gate holder's page cache (SQLite's default is 2 MiB): the indexes a check-in's writes
    # descend. One per process, so its memory is bounded.
    WRITER_CACHE_KIB = 65_536
    _by_engine: ClassVar[weakref.WeakKeyDictionary[sa.Engine, _IdleConnections]] = weakref.WeakKeyDictionary()

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._keep = 0 if engine.dialect.name == "postgresql" else self.KEEP
        self._idle: collections.deque[Any] = collections.deque()  # append/pop are atomic
        # The write-gate holder's connection while no one holds the gate; only the holder swaps it.
        self._writer: Any = None
        sa.event.listen(engine, "engine_disposed", self._drain)

    @classmethod
    def of(cls, engine: sa.Engine) -> _IdleConnections:
        """The engine's idle connections (made on first use)."""
        idle = cls._by_engine.get(engine)
        if idle is None:
            idle = cls._by_engine.setdefault(engine, cls(engine))
        return idle

    def take(self, *, writer: bool = False) -> Any:
        """A kept connection, or one from the pool; `writer`: the caller holds the WriteGate."""
        if writer and self._writer is not None:
            fairy, self._writer = self._writer, None
            return fairy
        try:
            fairy = self._idle.pop()
        except IndexError:
            fairy = self._engine.raw_connection()
        if writer and self._keep:
            # Becomes the gate's connection when given back (see give): it goes back to the pool only
            # to be closed (invalidated, or the engine disposed), so its larger cache is not handed on.
            fairy.driver_connection.execute(f"PRAGMA main.cache_size = -{self.WRITER_CACHE_KIB}")
        return fairy

    def give(self, fairy: Any, *, writer: bool = False) -> None:
        """Keep a connection with no transaction open, or hand it back to the pool."""
        if writer and self._keep and self._writer is None:
            self._writer = fairy
        elif len(self._idle) < self._keep:
            self._idle.append(fairy)
        else:
            fairy.close()

    def _drain(self, _engine: sa.Engine) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        while self._idle:
            self._idle.pop().close()


_BINDERS: dict[str, Callable[[dt.datetime], Any]] = {}


def _timestamp_binder(dialect: sa.Dialect) -> Callable[[dt.datetime], Any]:
    """The UTC column type's own bind processing (SQLite keeps a fixed text form; compare as stored).

    The dialect's form of the type: on SQLite that ends in its text form, microseconds always written
    ('2025-06-01 00:30:00.000000'), as the ORM stores it; the type's own processor alone gives a
    datetime, which the driver writes without them at a whole second, and text compares that as earlier.
    """
    binder = _BINDERS.get(dialect.name)
    if binder is None:
        processor = models.UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        binder = _BINDERS.setdefault(dialect.name, processor if processor is not None else _unchanged)
    return binder


def _unchanged(value: dt.datetime) -> Any:
    return value


def utc_read(value: object) -> dt.datetime | None:
    """A timestamp as a driver returns it (SQLite: naive UTC text; PostgreSQL: aware) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utc_read_set(value: object) -> dt.datetime:
    """utc_read() of a NOT NULL column: never None."""
    read = utc_read(value)
    assert read is not None, "a NOT NULL timestamp column read NULL"
    return read


def run_driver_transaction(
    uow: UnitOfWork,
    work: Callable[[DriverTransaction], T],
    *,
    attempts: int = MAX_ATTEMPTS,
    read_only: bool = False,
    flushed: bool = True,
) -> T:
    """run_transaction() for a DriverTransaction on the unit of work's engine.

    `read_only`: a read with no write lock (see DriverTransaction); a database that cannot be reached
    (restarting, a dropped connection) is retried the same way and ends as TransientError, never as an
    unexpected error. `flushed=False`: its COMMIT does not wait for the disk (see DriverTransaction).
    """
    transaction = uow.driver_transaction(read_only=read_only, flushed=flushed)
    deadline = time.monotonic() + LOCK_WAIT_BUDGET_S
    for attempt in range(1, attempts + 1):
        try:
            with transaction:
                return work(transaction)
        except Exception as err:
            if not is_retryable(err):
                raise
            if attempt == attempts or time.monotonic() > deadline:
                raise TransientError(f"the database stayed busy through {attempt} attempts, try again") from err
            log.info("transaction conflict (attempt %d of %d): %s", attempt, attempts, type(err).__name__)
            time.sleep(min(0.002 * 2**attempt, 0.2) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def run_transaction(uow: UnitOfWork, work: Callable[[UnitOfWork], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `work` inside `with uow:`, rerunning it on a retryable conflict with jittered backoff.

    `work` must commit itself and must be safe to rerun from the start (it reads everything anew).
    """
    deadline = time.monotonic() + LOCK_WAIT_BUDGET_S
    for attempt in range(1, attempts + 1):
        try:
            with uow:
                return work(uow)
        except (sa_exc.DBAPIError, RetryTransactionError) as err:
            if not is_retryable(err):
                raise
            if attempt == attempts or time.monotonic() > deadline:
                raise TransientError(f"the database stayed busy through {attempt} attempts, try again") from err
            log.info("transaction conflict (attempt %d of %d): %s", attempt, attempts, type(err).__name__)
            # Backoff between attempts of a production retry loop (not a test wait): 2, 4, 8 ms ... capped.
            time.sleep(min(0.002 * 2**attempt, 0.2) * (0.5 + random.random()))
    raise AssertionError("unreachable")
