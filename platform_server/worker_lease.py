"""Exactly one holder of a named job across replicas: the UWB delivery worker of one gateway.

PostgreSQL: a session advisory lock on a connection kept only for it. The server releases it the
moment that connection ends, so a replica that dies (even SIGKILL) hands the job over: another
replica's `acquire` loop takes it within one poll. PgBouncer caveat: a session lock belongs to a
server connection, so this connection must go straight to PostgreSQL or through a pool in *session*
mode; in transaction mode another client could inherit or release the lock (docs/deploy.md).

SQLite (one machine): an exclusive `flock` on a file beside the database; the kernel drops it when
the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

if TYPE_CHECKING:
    import threading

log = logging.getLogger(__name__)


class Lease(Protocol):
    """A job only one process may run at a time."""

    def try_acquire(self) -> bool:
        """Take the lease if free; True if this process holds it now."""

    def still_held(self) -> bool:
        """True while the lease is certainly ours (checked before each round of work)."""

    def release(self) -> None:
        """Give the lease up (idempotent)."""


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a job name (the gateway's port URL)."""
    return int.from_bytes(hashlib.sha256(b"uwb-worker:" + name.encode()).digest()[:8], "big", signed=True)


class PostgresLease:
    """A session advisory lock on a dedicated connection."""

    def __init__(self, engine: sa.Engine, name: str) -> None:
        """Lease `name` on the engine's database (the connection is opened on first try)."""
        self._engine = engine
        self._key = lock_key(name)
        self._connection: sa.Connection | None = None

    def try_acquire(self) -> bool:
        """pg_try_advisory_lock on the lease's own connection; False if another process holds it."""
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            got = bool(self._connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({self._key})").scalar())
            self._connection.commit()
        except sa.exc.DBAPIError as err:
            log.warning("UWB worker lease: database unavailable: %s", err)
            self.release()
            return False
        return got

    def still_held(self) -> bool:
        """The lock is ours if our connection is alive and holds it (a dead connection lost it)."""
        if self._connection is None:
            return False
        try:
            unsigned = self._key & 0xFFFF_FFFF_FFFF_FFFF  # a bigint key shows as classid (high) and objid (low)
            held = self._connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                    " AND granted AND objsubid = 1 AND classid = :high AND objid = :low"
                ),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
            ).scalar()
            self._connection.commit()
        except sa.exc.DBAPIError:
            self.release()
            return False
        return bool(held)

    def release(self) -> None:
        """Close the connection: the server drops the lock with it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()  # never back into the pool still holding the lock
                connection.close()


class FileLease:
    """An exclusive flock on a file (SQLite: the replicas share one machine)."""

    def __init__(self, path: Path) -> None:
        """Lease the file at `path` (created if missing)."""
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """flock(LOCK_EX | LOCK_NB); False if another process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """A flock is held until released or the process ends."""
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def lease_for(engine: sa.Engine, name: str) -> Lease:
    """The lease fitting the engine's database for job `name`."""
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine, name)
    database = engine.url.database or ""
    if database and database != ":memory:":
        suffix = hashlib.sha256(name.encode()).hexdigest()[:12]
        return FileLease(Path(f"{database}.uwb-{suffix}.lock"))
    return FileLease(Path(f"/tmp/platform-uwb-{os.getpid()}.lock"))  # noqa: S108  (an in-memory database: one process)


def wait_for(lease: Lease, stopping: threading.Event, poll_s: float) -> bool:
    """Block until the lease is ours (True) or `stopping` is set (False)."""
    logged = False
    while not stopping.is_set():
        if lease.try_acquire():
            if logged:
                log.info("UWB worker lease taken over: this replica now drives the gateway")
            return True
        if not logged:
            log.info("UWB worker lease held by another replica: standing by")
            logged = True
        stopping.wait(poll_s)
    return False
