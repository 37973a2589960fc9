"""The audit hash chain on SQLite and PostgreSQL: an untouched log verifies; edits, deletions,
insertions and truncation (done the way an attacker holding the database would: triggers off) are
found and named; concurrent writers still make one valid chain; rows from before the chain are adopted.
On PostgreSQL writers seal their entries and the chainer places them: a writer never waits for the tip,
and a row sealed without the key stays out of the chain.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.audit_chainer import AuditChainer
from platform_server.db.engine import make_engine, make_session_factory, upgrade
from platform_server.db.unit_of_work import UnitOfWork, run_transaction
from platform_server.services import audit, audit_chain, keyring
from tests.unit.platform_server.support import TEST_KEY, seed

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.platform_server.support import Seeded

T0 = dt.datetime(2025, 6, 1, 1, 0, tzinfo=dt.UTC)


def write(s: Seeded, count: int, actor: str = "person:alice", *, place: bool = True) -> None:
    """`count` entries in one transaction; placed in the chain at once unless `place` is False."""
    uow = s.new_uow()
    with uow:
        for i in range(count):
            audit.record(
                uow,
                at=T0 + dt.timedelta(seconds=i),
                actor=actor,
                action="test",
                outcome="ok",
                batch_code=s.batch_code,
                id_masked="1101**********1234",
                detail={"i": i, "名": "张三"},
            )
        uow.commit()
    if place:
        audit_chain.chain_all_pending(s.uow.engine, audit_chain.key_for(s.uow.engine))


def tamper(engine: sa.Engine, *statements: str) -> None:
    """Change audit_log as someone holding the database could: with the append-only triggers off."""
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
            for statement in statements:
                c.exec_driver_sql(statement)
            c.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")
        else:
            c.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            c.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
            for statement in statements:
                c.exec_driver_sql(statement)


def verify(s: Seeded) -> audit_chain.VerifyReport:
    engine = s.uow.engine
    return audit_chain.verify(engine, audit_chain.key_for(engine))


def row_at(s: Seeded, seq: int) -> int:
    with s.uow.engine.connect() as c:
        return int(c.exec_driver_sql(f"SELECT id FROM audit_log WHERE seq = {seq}").scalar_one())


def test_an_untouched_log_verifies(db_url: str) -> None:
    s = seed(db_url)
    write(s, 30)
    report = verify(s)
    assert report.ok, report.findings
    assert report.entries == report.tip_seq >= 30


def test_an_edited_row_is_named(db_url: str) -> None:
    s = seed(db_url)
    write(s, 20)
    victim = row_at(s, 10)
    tamper(s.uow.engine, f"UPDATE audit_log SET actor = 'person:mallory' WHERE id = {victim}")
    report = verify(s)
    assert [f.kind for f in report.findings] == ["edited"]
    assert f"id {victim} (seq 10," in report.findings[0].message


def test_a_deleted_row_is_named(db_url: str) -> None:
    s = seed(db_url)
    write(s, 20)
    before, victim = row_at(s, 11), row_at(s, 12)
    tamper(s.uow.engine, f"DELETE FROM audit_log WHERE id = {victim}")
    report = verify(s)
    assert [f.kind for f in report.findings] == ["deleted"]
    assert "seq 12..12 are missing" in report.findings[0].message
    assert f"after id {before} (seq 11," in report.findings[0].message


def test_a_truncated_table_is_found(db_url: str) -> None:
    s = seed(db_url)
    write(s, 20)
    statement = "TRUNCATE audit_log" if s.uow.engine.dialect.name == "postgresql" else "DELETE FROM audit_log"
    tamper(s.uow.engine, statement)
    report = verify(s)
    assert [f.kind for f in report.findings] == ["truncated"]
    assert "(the log is empty)" in report.findings[0].message


def test_a_cut_off_tail_is_found_even_with_the_tip_set_back(db_url: str) -> None:
    s = seed(db_url)
    write(s, 20)
    with s.uow.engine.connect() as c:
        tip = int(c.exec_driver_sql("SELECT seq FROM audit_chain").scalar_one())
        mac = c.exec_driver_sql(f"SELECT mac FROM audit_log WHERE seq = {tip - 3}").scalar_one()
    tamper(s.uow.engine, f"DELETE FROM audit_log WHERE seq > {tip - 3}")
    report = verify(s)
    assert [f.kind for f in report.findings] == ["truncated"]
    assert f"seq {tip - 2}..{tip} are missing at the end" in report.findings[0].message
    # Setting the tip back to the new last entry (its mac is in the log) does not pass either.
    with s.uow.engine.begin() as c:
        c.exec_driver_sql(f"UPDATE audit_chain SET seq = {tip - 3}, mac = '{mac}'")
    assert [f.kind for f in verify(s).findings] == ["tip"]


def test_inserted_rows_are_found(db_url: str) -> None:
    s = seed(db_url)
    write(s, 5)
    stamp = "2025-06-01 02:00:00"
    tamper(
        s.uow.engine,
        "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail) "
        f"VALUES ('{stamp}', 'K1', 'identify', 'verified', '')",
    )
    report = verify(s)
    assert [f.kind for f in report.findings] == ["inserted"]
    assert "without a place in the chain" in report.findings[0].message


def test_concurrent_writers_make_one_valid_chain(db_url: str) -> None:
    s = seed(db_url, kiosk_ids=["K1"], pool_size=12)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(15):

                def work(u: UnitOfWork, i: int = i) -> None:
                    audit.record(u, at=T0, actor=f"w{n}", action="race", outcome=str(i))
                    u.commit()

                run_transaction(s.new_uow(), work)
        except BaseException as err:
            errors.append(err)

    # Two chainers, as two replicas run them, placing entries while the writers write.
    chainers = [AuditChainer(s.uow.engine, interval_s=0.005).start() for _ in range(2)]
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for chainer in chainers:
        chainer.stop()
    assert not errors
    report = verify(s)
    assert report.ok, report.findings
    with s.uow.engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM audit_log WHERE action = 'race'").scalar_one() == 120


def test_rows_from_before_the_chain_are_chained_at_first_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    with engine.begin() as c:
        for i in range(3):
            c.exec_driver_sql(
                "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail) "
                f"VALUES ('2025-01-01 00:00:0{i}.000000', 'cli', 'old', 'ok', 'x')"
            )
    upgrade(engine)
    key = keyring.open_keys(engine, TEST_KEY)
    uow = UnitOfWork(make_session_factory(engine))
    with uow:
        audit.record(uow, at=T0, actor="cli", action="new", outcome="ok")
        uow.commit()
    report = audit_chain.verify(engine, key)
    assert report.ok, report.findings
    assert report.entries == 4
    # Once chained, the old rows are as fixed as the rest.
    with engine.begin() as c:
        try:
            c.exec_driver_sql("UPDATE audit_log SET detail = 'y' WHERE id = 1")
            changed = True
        except sa.exc.IntegrityError:
            changed = False
    assert not changed


@pytest.mark.postgres
def test_postgres_writers_seal_and_the_chainer_places(pg_schema_url: str) -> None:
    s = seed(pg_schema_url)  # SQLite chains as it writes: its single write lock orders writers anyway
    engine = s.uow.engine
    audit_chain.chain_all_pending(engine, audit_chain.key_for(engine))  # what seeding wrote
    write(s, 6, place=False)
    with engine.connect() as c:
        tip_before = c.exec_driver_sql("SELECT seq FROM audit_chain").scalar_one()
        sealed = c.exec_driver_sql("SELECT count(*) FROM audit_log WHERE seq IS NULL AND mac IS NOT NULL").scalar_one()
    assert sealed == 6
    assert audit_chain.chain_pending(engine, audit_chain.key_for(engine)) == 6
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT seq FROM audit_chain").scalar_one() == tip_before + 6
        assert c.exec_driver_sql("SELECT count(*) FROM audit_log WHERE seq IS NULL").scalar_one() == 0
    report = verify(s)
    assert report.ok, report.findings
    assert report.pending == 0


@pytest.mark.postgres
def test_a_postgres_writer_does_not_wait_for_the_chain_tip(pg_schema_url: str) -> None:
    """The tip held (a chainer's round, or a stuck one): kiosk steps still commit their audit entries."""
    s = seed(pg_schema_url)
    engine = s.uow.engine
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("SELECT seq FROM audit_chain WHERE id = 1 FOR UPDATE").one()
        started = time.monotonic()
        write(s, 3, place=False)  # with the tip's row lock it would wait out lock_timeout (2 s) and fail
        took = time.monotonic() - started
        # Another chainer finds the tip taken and places nothing, without waiting.
        assert audit_chain.chain_pending(engine, audit_chain.key_for(engine)) is None
        # verify and export wait their turn, bounded: a tip that stays taken is a clear error.
        with pytest.raises(TimeoutError, match="stayed taken"):
            audit_chain.chain_all_pending(engine, audit_chain.key_for(engine), timeout_s=0.3)
        holder.exec_driver_sql("ROLLBACK")
    assert took < 2.0, f"the writer waited {took:.2f} s: it took the chain tip's lock"
    report = verify(s)
    assert report.ok, report.findings


@pytest.mark.postgres
def test_a_row_sealed_without_the_key_stays_out_of_the_chain(pg_schema_url: str) -> None:
    s = seed(pg_schema_url)
    engine = s.uow.engine
    write(s, 3, place=False)
    values = audit_chain_values()
    forged_mac = audit_chain.seal(b"k" * 32, values)  # sealed as the platform seals, with another key
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail, mac) "
            f"VALUES ('2025-06-01 02:00:00', 'K1', 'identify', 'verified', '', '{forged_mac}') RETURNING id"
        )
        forged = c.exec_driver_sql("SELECT max(id) FROM audit_log").scalar_one()
    write(s, 2, place=False)
    report = verify(s)  # places the five real entries around it, refuses the forged one
    assert [f.kind for f in report.findings] == ["inserted"]
    assert f"id {forged} " in report.findings[0].message
    with engine.connect() as c:
        assert c.exec_driver_sql(f"SELECT seq FROM audit_log WHERE id = {forged}").scalar_one() is None
        assert c.exec_driver_sql("SELECT count(*) FROM audit_log WHERE seq IS NULL").scalar_one() == 1


def audit_chain_values() -> dict[str, object]:
    """The columns of the forged row above, as the platform would have sealed them."""
    return {
        "occurred_at": dt.datetime(2025, 6, 1, 2, 0, tzinfo=dt.UTC),
        "kiosk_time": None,
        "actor": "K1",
        "action": "identify",
        "outcome": "verified",
        "batch_code": None,
        "id_hash": None,
        "id_masked": None,
        "check_in_public_id": None,
        "detail": "",
    }
