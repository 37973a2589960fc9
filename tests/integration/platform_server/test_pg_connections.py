"""PostgreSQL connections on the hot paths: pinged only after sitting idle, a dropped one replaced,
one-statement reads without BEGIN and ROLLBACK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from psycopg import pq

from platform_server.db.engine import make_engine, make_session_factory
from platform_server.db.unit_of_work import DriverTransaction, UnitOfWork, run_driver_transaction

if TYPE_CHECKING:
    import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def _backend_pid(engine: sa.Engine) -> int:
    """The server process behind the connection the next transaction gets (the pool's only one)."""
    return int(run_driver_transaction(_uow(engine), lambda d: d.execute("SELECT pg_backend_pid()").fetchone()[0]))


def _uow(engine: sa.Engine) -> UnitOfWork:
    return UnitOfWork(make_session_factory(engine))


def _terminate(url: str, pid: int) -> None:
    admin = make_engine(url, pool_size=1)
    try:
        with admin.connect() as connection:
            assert connection.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
            # pg_terminate_backend only signals: wait (at most 30 s) until the backend is gone.
            connection.exec_driver_sql(
                f"DO $$ BEGIN FOR i IN 1..3000 LOOP PERFORM pg_stat_clear_snapshot();"
                f" EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {pid});"
                f" PERFORM pg_sleep(0.01); END LOOP; END $$"
            )
            gone = connection.exec_driver_sql(f"SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {pid})")
            assert gone.scalar(), f"backend {pid} still there 30 s after pg_terminate_backend"
    finally:
        admin.dispose()


def _pings(engine: sa.Engine) -> list[str]:
    """A list that gets an entry for each ping the engine's pool sends from now on."""
    seen: list[str] = []
    original = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        seen.append("ping")
        return original(dbapi_connection)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return seen


def test_a_connection_dropped_while_idle_is_found_by_the_ping_and_replaced(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle_s=0.0)  # every check-out counts as idle
    pings = _pings(engine)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        pings.clear()
        # No error and no retry: the check-out's ping finds the dead connection, the pool connects anew.
        second = run_driver_transaction(
            _uow(engine), lambda d: d.execute("SELECT pg_backend_pid()").fetchone()[0], attempts=1
        )
        assert second != first
        assert pings == ["ping"]
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle_s=3600.0)
    pings = _pings(engine)
    try:
        pids = {_backend_pid(engine) for _ in range(5)}
        assert len(pids) == 1  # the same pooled connection each time
        assert pings == []
    finally:
        engine.dispose()


def test_a_connection_dropped_within_the_window_fails_once_and_the_transaction_is_retried(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle_s=3600.0)  # never pinged
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        runs: list[int] = []

        def work(d: DriverTransaction) -> int:
            runs.append(1)
            return int(d.execute("SELECT pg_backend_pid()").fetchone()[0])

        # The first run meets the dead connection; the retry every hot path has gets a new one.
        assert run_driver_transaction(_uow(engine), work) != first
        assert len(runs) == 2
    finally:
        engine.dispose()


def test_a_one_statement_read_runs_without_a_transaction_and_leaves_none_open(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        with DriverTransaction(engine, read_only=True) as read:
            read.execute("SELECT 1").fetchone()
            assert read.raw.info.transaction_status == pq.TransactionStatus.IDLE  # no BEGIN was sent
        with DriverTransaction(engine) as write:  # the same connection, back to transactions
            write.execute("SELECT 1").fetchone()
            assert write.raw.info.transaction_status == pq.TransactionStatus.INTRANS
            assert not write.raw.autocommit
    finally:
        engine.dispose()
