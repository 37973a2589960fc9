"""The audit hash chain on SQLite and PostgreSQL: an untouched log verifies; edits, deletions,
insertions and truncation (done the way an attacker holding the database would: triggers off) are
found and named; concurrent writers still make one valid chain; rows from before the chain are adopted.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.engine import make_engine, make_session_factory, upgrade
from platform_server.db.unit_of_work import UnitOfWork, run_transaction
from platform_server.services import audit, audit_chain, keyring
from tests.unit.platform_server.support import TEST_KEY, seed

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.platform_server.support import Seeded

T0 = dt.datetime(2025, 6, 1, 1, 0, tzinfo=dt.UTC)


def write(s: Seeded, count: int, actor: str = "person:alice") -> None:
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

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
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
