"""On SQLite an identify and a beat's figures commit without fsyncing the WAL; everything else waits for the disk.

The platform's connections are made by a sqlite3.Connection class of the test's (`factory`, through
SQLAlchemy's do_connect event): when a statement writes an audit entry or a beat's figures, the
connection first asks SQLite, in that same transaction, for its safety level (`PRAGMA synchronous`:
1 NORMAL, the WAL appended and not fsynced at COMMIT; 2 FULL, fsynced). So the tests see what SQLite
will do at that transaction's COMMIT, not what the code meant to ask for.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa

from platform_server.db.engine import make_engine, make_session_factory
from platform_server.db.unit_of_work import UnitOfWork, run_driver_transaction
from platform_server.services import identify, imports, keyring, kiosks
from tests.unit.platform_server.support import (
    TEST_KEY,
    FakeFaceVerifier,
    Seeded,
    check_in_expert,
    face_image,
    identify_command,
    seed,
)

if TYPE_CHECKING:
    from pathlib import Path

NORMAL, FULL = 1, 2
WATCHED = ("INSERT INTO audit_log", "UPDATE kiosks SET last_heartbeat_at")


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    """A watched write: its statement's start and the safety level its transaction commits with."""

    statement: str
    synchronous: int


def _level(connection: sqlite3.Connection) -> int:
    row = sqlite3.Connection.execute(connection, "PRAGMA synchronous").fetchone()  # the plain method: not watched
    return int(row[0])


def _watched(s: Seeded) -> tuple[Seeded, list[Write]]:
    """The seed on a fresh engine whose connections note every watched write; the list they note in."""
    seen: list[Write] = []

    def note(connection: sqlite3.Connection, sql: str) -> None:
        seen.extend(Write(statement, _level(connection)) for statement in WATCHED if statement in sql)

    class WatchingCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> Self:
            note(self.connection, sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> Self:
            note(self.connection, sql)
            return super().executemany(sql, parameters)

    class Watching(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            note(self, sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
            note(self, sql)
            return super().executemany(sql, parameters)

        def cursor(self, factory: Any = WatchingCursor) -> Any:
            return super().cursor(factory)

    engine = make_engine(s.url)

    @sa.event.listens_for(engine, "do_connect")
    def watch(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["factory"] = Watching

    keyring.open_keys(engine, TEST_KEY)
    s.uow.engine.dispose()
    return dataclasses.replace(s, uow=UnitOfWork(make_session_factory(engine))), seen


def _level_of_next_writer(s: Seeded) -> int:
    """The safety level of the next write transaction on this process's writer connection."""
    return int(run_driver_transaction(s.new_uow(), lambda d: d.execute("PRAGMA synchronous").fetchone()[0]))


def test_an_id_only_identify_commits_unflushed_and_the_completion_waits(tmp_path: Path) -> None:
    s, seen = _watched(seed(f"sqlite:///{tmp_path / 'u.db'}", experts=3, rooms=3, bands=3))
    try:
        result = identify.identify(s.new_uow(), s.ctx, identify_command(s, 0))
        assert result.verified, result.refusal
        assert seen == [Write("INSERT INTO audit_log", NORMAL)]
        # The level is the transaction's own: the connection's next write waits for the disk again.
        assert _level_of_next_writer(s) == FULL
        seen.clear()
        check_in_expert(s, 1)  # an identify, then the completion with its token
        identify_write, *completion_writes = seen
        assert identify_write.synchronous == NORMAL
        assert completion_writes, "the completion wrote no audit entry"
        assert {w.synchronous for w in completion_writes} == {FULL}
    finally:
        s.uow.engine.dispose()


def test_a_matching_face_commits_unflushed_and_a_mismatch_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    s = seed(url, experts=2, rooms=2, bands=2, allow_id_only=False, verifier=FakeFaceVerifier())
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / f"{s.ids[0]}.jpg").write_bytes(face_image("a"))
    imports.import_photos(s.new_uow(), s.ctx, s.batch_code, photos)
    s, seen = _watched(s)
    try:
        # A mismatch counts against the expert's tries: that must survive a power cut.
        refused = identify.identify(s.new_uow(), s.ctx, identify_command(s, 0, (face_image("someone else"),)))
        assert not refused.verified
        assert seen, "the refused identify wrote no audit entry"
        assert {w.synchronous for w in seen} == {FULL}
        seen.clear()
        matched = identify.identify(s.new_uow(), s.ctx, identify_command(s, 0, (face_image("a"),)))
        assert matched.verified, matched.refusal
        assert seen, "the identify wrote no audit entry"
        assert {w.synchronous for w in seen} == {NORMAL}
    finally:
        s.uow.engine.dispose()


def test_an_operator_can_have_identifies_wait_for_the_disk(tmp_path: Path) -> None:
    s, seen = _watched(seed(f"sqlite:///{tmp_path / 'w.db'}", experts=2, rooms=2, bands=2))
    s = dataclasses.replace(s, ctx=dataclasses.replace(s.ctx, identify_synchronous_commit=True))
    try:
        assert identify.identify(s.new_uow(), s.ctx, identify_command(s, 1)).verified
        assert seen == [Write("INSERT INTO audit_log", FULL)]
    finally:
        s.uow.engine.dispose()


def test_a_beats_figures_commit_unflushed_and_a_change_of_health_waits(tmp_path: Path) -> None:
    s, seen = _watched(seed(f"sqlite:///{tmp_path / 'b.db'}", experts=1, rooms=1, bands=1))
    try:
        devices = (kiosks.DeviceHealth("camera", "ok"),)
        kiosks.heartbeat(s.new_uow(), s.ctx, kiosks.HeartbeatCommand("K1", devices, 50, 0, False, "1.0"))
        assert seen, "the first beat (a change of health) wrote no audit entry"
        assert {w.synchronous for w in seen} == {FULL}
        seen.clear()
        kiosks.heartbeat(s.new_uow(), s.ctx, kiosks.HeartbeatCommand("K1", devices, 49, 0, False, "1.0"))
        assert seen == [Write("UPDATE kiosks SET last_heartbeat_at", NORMAL)]
        assert _level_of_next_writer(s) == FULL
    finally:
        s.uow.engine.dispose()
