"""Engine set-up for SQLite (WAL, busy timeout, immediate write transactions) and PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm as so

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Name of the schema a bulk import attaches to its connection (see services.roster.InvitationWriter).
IMPORT_STAGED_SCHEMA = "import_staged"

# How long a SQLite writer waits for the lock before "database is locked"; the unit of work also retries,
# within its own overall deadline (unit_of_work.LOCK_WAIT_BUDGET_S), so a call never waits minutes.
SQLITE_BUSY_TIMEOUT_MS = 2_000
SQLITE_SYNCHRONOUS = "FULL"
# PostgreSQL: the longest one statement waits for a row or advisory lock before 55P03 (retried, bounded).
PG_LOCK_TIMEOUT_MS = 2_000
# Key of the session advisory lock held while migrations run, so replicas starting together migrate once.
MIGRATION_LOCK = 0x4D494752  # "MIGR"


# record_info key: this pooled connection's transaction holds its process's WriteGate.
_GATE_HELD = "write_gate_held"
# PostgreSQL: a pooled connection idle at least this long is pinged before use (see _ping_when_idle).
PG_PING_AFTER_IDLE_S = 0.5
# ConnectionRecord.info key: when the connection went back to the pool (time.monotonic()).
_IDLE_SINCE = "idle_since"


@dataclass(frozen=True, slots=True)
class WriteGateFigures:
    """What a process's SQLite writers did at its WriteGate since it was made (for /metrics)."""

    transactions: int  # write transactions that held the gate
    held_s: float  # their time holding it: per second of wall time, how busy the one write lock was
    waited_s: float  # time writers spent queueing for it
    timeouts: int  # writers that gave up queueing after the busy timeout (then SQLite's own wait)


class WriteGate:
    """SQLite writers of one process queue on a lock here, each woken the moment the one before finishes.

    SQLite's busy handler polls with growing sleeps (1, 2, 5 ... 100 ms): with dozens of kiosks writing
    at once the write lock sat free while its waiters slept, and an unlucky call waited seconds. Queued
    here first, the BEGIN IMMEDIATE that follows finds the lock free (unless another process holds it:
    then SQLite's busy timeout applies, as before). The wait is bounded: past the busy timeout a writer
    goes on without the gate, to SQLite's own wait. It also counts its use (figures()): the share of
    time the lock is held is how near its limit a SQLite platform runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Updated by the holder only (after acquiring, before releasing): the lock orders the updates.
        self._transactions = 0
        self._held_s = 0.0
        self._waited_s = 0.0
        self._entered_at = 0.0
        self._timeouts = 0
        self._timeouts_lock = threading.Lock()  # a writer that gave up holds no gate to order its count

    def enter(self) -> bool:
        """Wait for the gate (bounded); True when this caller now holds it and must leave() it."""
        asked = time.perf_counter()
        if not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            with self._timeouts_lock:
                self._timeouts += 1
            return False
        self._entered_at = now = time.perf_counter()
        self._waited_s += now - asked
        return True

    def leave(self) -> None:
        """Let the next writer in."""
        self._held_s += time.perf_counter() - self._entered_at
        self._transactions += 1
        self._lock.release()

    @property
    def held(self) -> bool:
        """True while a writer of this process holds the gate."""
        return self._lock.locked()

    def figures(self) -> WriteGateFigures:
        """The counts so far (read without the lock: each figure may lag the others by one writer)."""
        return WriteGateFigures(self._transactions, self._held_s, self._waited_s, self._timeouts)


_GATES: weakref.WeakKeyDictionary[sa.Dialect, WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: sa.Engine) -> WriteGate | None:
    """The write gate of a SQLite engine (and its execution_options() copies); None on PostgreSQL."""
    return _GATES.get(engine.dialect)


def is_sqlite(url: str | sa.URL) -> bool:
    """True for sqlite URLs."""
    return sa.make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, ping_after_idle_s: float = PG_PING_AFTER_IDLE_S) -> sa.Engine:
    """Build an engine; on SQLite make every transaction BEGIN IMMEDIATE under WAL.

    SQLite's default deferred transactions take the write lock only at the first write, and a reader
    that then wants to write fails at once with SQLITE_BUSY whatever the busy timeout (its snapshot is
    stale). Taking the write lock at BEGIN makes writers queue on the busy timeout instead, so eight
    kiosks completing at once all get answered. On PostgreSQL a pooled connection idle for
    `ping_after_idle_s` is pinged before use (see _ping_when_idle).
    """
    if not is_sqlite(url):
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size)

        @sa.event.listens_for(engine, "connect")
        def _bound_lock_waits(dbapi_connection: Any, _record: Any) -> None:
            # A lock wait ends with 55P03 (retried by the unit of work) instead of hanging the call.
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {PG_LOCK_TIMEOUT_MS}")
            dbapi_connection.commit()

        _ping_when_idle(engine, ping_after_idle_s)
        return engine
    parsed = sa.make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced before it returns, so a check-in acknowledged to a kiosk (which then
        # drops its queued copy) survives a power cut; NORMAL in WAL mode would only survive a process crash.
        # bench/sqlite_durability.py measures the cost.
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        # A bulk import attached its staging schema and raised the page cache on this connection
        # (services.roster.InvitationWriter); its transaction has ended, so undo both before reuse.
        if record.info.pop(IMPORT_STAGED_SCHEMA, False) and dbapi_connection is not None:
            dbapi_connection.execute(f"DETACH DATABASE {IMPORT_STAGED_SCHEMA}")
            dbapi_connection.execute("PRAGMA main.cache_size = -2000")

    _begin_behind_gate(engine)
    return engine


def _ping_when_idle(engine: sa.Engine, after_idle_s: float) -> None:
    """Check a PostgreSQL connection at check-out only when it sat idle in the pool for a while.

    SQLAlchemy's pool_pre_ping pings at every check-out: a round trip for every transaction of a hot
    path. A connection back from a call that finished moments ago is as alive as a ping would show,
    so, like HikariCP's alive-bypass window, only one idle for `after_idle_s` (default
    PG_PING_AFTER_IDLE_S) or more is pinged. One the server dropped within that window fails its
    first statement, and the unit of work reruns the transaction on a new connection
    (unit_of_work.is_retryable).
    """

    @sa.event.listens_for(engine, "checkin")
    def _note_idle(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < after_idle_s:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            # The pool drops this connection and checks out another (or connects anew).
            raise sa.exc.DisconnectionError(
                f"pooled connection found dead after {time.monotonic() - idle_since:.0f} s idle"
            ) from err


def _begin_behind_gate(engine: sa.Engine) -> None:
    """BEGIN as the `sqlite_begin` option says (IMMEDIATE unless read-only), writers behind the WriteGate.

    A writer holds the gate from its BEGIN until its connection goes back to the pool.
    """
    gate = _GATES.setdefault(engine.dialect, WriteGate())

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode != "IMMEDIATE":
            connection.exec_driver_sql(f"BEGIN {mode}")
            return
        # Held until check-in, not commit: a Session may begin again on the same connection after one.
        info = connection.connection.record_info
        if info is None:  # a connection detached from the pool: no check-in to leave the gate at
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        if not info.get(_GATE_HELD):
            info[_GATE_HELD] = gate.enter()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if info.pop(_GATE_HELD, False):
                gate.leave()
            raise

    @sa.event.listens_for(engine, "checkin")
    def _release(_dbapi_connection: Any, record: Any) -> None:
        # Back in the pool, committed or rolled back: its write transaction is over.
        if record.record_info.pop(_GATE_HELD, False):
            gate.leave()


def read_only(engine: sa.Engine) -> sa.Engine:
    """The same engine and pool, but SQLite transactions begin DEFERRED: reads never take the write lock.

    Only for transactions that do not write: a deferred transaction that later writes can fail at once
    with SQLITE_BUSY (see make_engine). PostgreSQL transactions are unaffected.
    """
    return engine.execution_options(sqlite_begin="DEFERRED")


def make_session_factory(engine: sa.Engine) -> so.sessionmaker[so.Session]:
    """Sessions that keep loaded values after commit (services return plain values built from them)."""
    return so.sessionmaker(engine, expire_on_commit=False, autoflush=True)


def alembic_config(engine: sa.Engine | None = None) -> AlembicConfig:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415  (importing alembic costs ~0.15 s: only migrations need it)

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (idempotent).

    A database already at the head is recognised without loading Alembic (its import and a no-op
    upgrade cost every CLI command about 0.3 s of CPU); anything else goes through Alembic.
    """
    if revision == "head" and is_up_to_date(engine):
        return
    from alembic import command  # noqa: PLC0415  (as above)

    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), revision)  # SQLite: Alembic's transaction takes the write lock
        return
    # Replicas started together: the first takes the lock and migrates, the others wait, then find the
    # schema at the head and do nothing. A session lock, on its own connection, released in `finally`
    # (and by the server if this process dies).
    with engine.connect() as lock_connection:
        lock_connection.exec_driver_sql("SET lock_timeout = 0")  # migrations may take long: wait for them
        lock_connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        lock_connection.commit()
        try:
            if revision != "head" or not is_up_to_date(engine):
                command.upgrade(alembic_config(engine), revision)
        finally:
            lock_connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            # Back to the bounded wait every pooled connection has (a session setting outlives the commit).
            lock_connection.exec_driver_sql(f"SET lock_timeout = {PG_LOCK_TIMEOUT_MS}")
            lock_connection.commit()


_REVISION = re.compile(r"""^revision\s*=\s*['"]([^'"]+)['"]\s*$""", re.MULTILINE)
_DOWN_REVISION = re.compile(r"""^down_revision\s*=\s*(?:['"]([^'"]+)['"]|None)\s*$""", re.MULTILINE)


def script_head() -> str | None:
    """The one head revision of the migration scripts, read as text; None when that is not plain."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None  # merges, tuples of parents, anything unusual: ask Alembic
        revisions.add(revision[0])
        parents.update(p for p in down if p)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def database_revision(engine: sa.Engine) -> str | None:
    """The revision stamped in the database, or None (no schema yet, or not a single stamp)."""
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:  # a read: no write lock
        try:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except sa.exc.DBAPIError:
            return None
    return str(rows[0][0]) if len(rows) == 1 else None


def is_up_to_date(engine: sa.Engine) -> bool:
    """True when the database is at the newest migration."""
    head = script_head()
    if head is None:
        from alembic.script import ScriptDirectory  # noqa: PLC0415  (as above)

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head is not None and database_revision(engine) == head
