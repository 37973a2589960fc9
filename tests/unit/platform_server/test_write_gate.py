"""The SQLite write gate: taken by every write transaction, left when it ends, whatever the path.

A gate left held would make every later writer of the process wait its full bound, so each way a
transaction can end is checked: commit, rollback, an error inside, a Session that begins again after
a commit, a driver transaction, and reads that must not take it at all.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db.engine import make_engine, make_session_factory, read_only, write_gate
from platform_server.db.unit_of_work import UnitOfWork, run_driver_transaction

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from platform_server.db.engine import WriteGate
    from platform_server.db.unit_of_work import DriverTransaction


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield engine
    engine.dispose()


def _gate(engine: sa.Engine) -> WriteGate:
    gate = write_gate(engine)
    assert gate is not None
    return gate


def test_a_session_holds_the_gate_from_its_first_statement_until_it_is_closed(engine: sa.Engine) -> None:
    gate = _gate(engine)
    uow = UnitOfWork(make_session_factory(engine))
    with uow:
        assert not gate.held  # nothing begun yet
        uow.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert gate.held
        uow.commit()
        uow.execute(sa.text("INSERT INTO t VALUES (2)"))  # begins again on the same connection
        assert gate.held
    assert not gate.held

    def fails() -> None:
        with uow:
            uow.execute(sa.text("INSERT INTO t VALUES (3)"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    assert not gate.held


def test_engine_transactions_and_reads(engine: sa.Engine) -> None:
    gate = _gate(engine)
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert gate.held
    assert not gate.held
    with read_only(engine).connect() as c, c.begin():
        c.exec_driver_sql("SELECT count(*) FROM t").scalar()
        assert not gate.held  # DEFERRED reads never queue behind writers


def test_driver_transactions_leave_the_gate_on_commit_and_on_error(engine: sa.Engine) -> None:
    gate = _gate(engine)
    uow = UnitOfWork(make_session_factory(engine))

    def write(d: DriverTransaction) -> None:
        assert gate.held
        d.execute("INSERT INTO t VALUES (1)")
        d.commit()

    run_driver_transaction(uow, write)
    assert not gate.held

    def fails() -> None:
        with uow.driver_transaction() as d:
            assert gate.held
            d.execute("INSERT INTO t VALUES (2)")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fails()
    assert not gate.held
    with uow.driver_transaction(read_only=True) as d:
        assert not gate.held
        assert d.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # the error's insert was rolled back


def test_a_failed_begin_leaves_the_gate(engine: sa.Engine, tmp_path: Path) -> None:
    gate = _gate(engine)
    other = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")  # another process's writer, in effect
    try:
        with other.begin() as c:
            c.exec_driver_sql("INSERT INTO t VALUES (1)")  # holds SQLite's write lock meanwhile
            with pytest.raises(sa.exc.OperationalError, match="locked"), engine.begin() as mine:
                mine.exec_driver_sql("INSERT INTO t VALUES (2)")
            assert not gate.held
    finally:
        other.dispose()


def test_the_gate_counts_its_transactions_and_their_time_holding_it(engine: sa.Engine) -> None:
    gate = _gate(engine)
    before = gate.figures()
    uow = UnitOfWork(make_session_factory(engine))
    holding: list[float] = []

    def write(d: DriverTransaction) -> None:
        started = time.perf_counter()  # the gate is already held: the count covers at least this
        d.execute("INSERT INTO t VALUES (1)")
        d.commit()
        holding.append(time.perf_counter() - started)

    run_driver_transaction(uow, write)
    with uow.driver_transaction(read_only=True) as d:
        d.execute("SELECT count(*) FROM t").fetchone()  # a read: not counted
    after = gate.figures()
    assert after.transactions - before.transactions == 1
    assert after.held_s - before.held_s >= holding[0]
    assert after.waited_s > before.waited_s  # the turn was asked for and given: timed, however short
    assert after.timeouts == before.timeouts == 0


def test_a_writer_that_stops_queueing_is_counted(engine: sa.Engine) -> None:
    gate = _gate(engine)
    assert gate.enter()
    try:
        gave_up: list[bool] = []
        other = threading.Thread(target=lambda: gave_up.append(gate.enter()))
        other.start()
        other.join(timeout=60)  # its own bound (the busy timeout, 2 s) ends the wait
        assert gave_up == [False]
        assert gate.figures().timeouts == 1
    finally:
        gate.leave()
