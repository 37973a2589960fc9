"""On PostgreSQL an identify commits without waiting for the disk; a face mismatch and a completion wait.

Every statement the platform sends goes through a psycopg cursor class of the test's (the connection's
`cursor_factory`): when it writes an audit entry, the cursor first asks the server, in that same
transaction, which synchronous_commit the transaction runs with. So the tests see what PostgreSQL will
do at that transaction's COMMIT, not what the code meant to ask for.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy as sa

from platform_server.db.unit_of_work import run_driver_transaction
from platform_server.services import identify, imports
from tests.unit.platform_server.support import (
    FakeFaceVerifier,
    Seeded,
    check_in_expert,
    face_image,
    identify_command,
    seed,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.postgres


@dataclasses.dataclass(frozen=True, slots=True)
class AuditWrite:
    """One audit entry written: the server process behind it and the transaction's synchronous_commit."""

    backend_pid: int
    synchronous_commit: str


def _watch_audit_writes(engine: sa.Engine) -> list[AuditWrite]:
    """A list that gets an AuditWrite for every INSERT INTO audit_log on the engine's connections from now on."""
    seen: list[AuditWrite] = []

    class Watching(psycopg.Cursor[Any]):
        def _note(self, query: Any) -> None:
            if "INSERT INTO audit_log" in str(query):
                with psycopg.Cursor(self.connection) as ask:  # the plain class: this question is not watched
                    row = ask.execute("SELECT pg_backend_pid(), current_setting('synchronous_commit')").fetchone()
                assert row is not None
                seen.append(AuditWrite(int(row[0]), str(row[1])))

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            self._note(query)
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
            self._note(query)
            super().executemany(query, params_seq, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def watch(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = Watching

    engine.dispose()  # connections open from now on are watched
    return seen


@pytest.fixture
def seeded(pg_schema_url: str) -> Iterator[Seeded]:
    s = seed(pg_schema_url, experts=3, rooms=3, bands=3)
    yield s
    s.uow.engine.dispose()


def _identify(s: Seeded, n: int, faces: tuple[bytes, ...] = (), *, verified: bool = True) -> identify.IdentifyResult:
    result = identify.identify(s.new_uow(), s.ctx, identify_command(s, n, faces))
    assert result.verified is verified, result.refusal
    return result


def _setting_now(s: Seeded) -> AuditWrite:
    """The server process and synchronous_commit of the transaction the pool hands out next."""
    row = run_driver_transaction(
        s.new_uow(), lambda d: d.execute("SELECT pg_backend_pid(), current_setting('synchronous_commit')").fetchone()
    )
    return AuditWrite(int(row[0]), str(row[1]))


def test_an_id_only_identify_commits_without_waiting_and_the_completion_waits(seeded: Seeded) -> None:
    s = seeded
    writes = _watch_audit_writes(s.uow.engine)
    _identify(s, 0)
    assert [w.synchronous_commit for w in writes] == ["off"]
    # SET LOCAL ends with its transaction: the same connection's next transaction waits again.
    assert _setting_now(s) == AuditWrite(writes[0].backend_pid, "on")
    writes.clear()
    check_in_expert(s, 1)  # an identify, then the completion with its token
    identify_write, *completion_writes = writes
    assert identify_write.synchronous_commit == "off"
    assert completion_writes, "the completion wrote no audit entry"
    assert {w.synchronous_commit for w in completion_writes} == {"on"}


def test_a_matching_face_commits_without_waiting_and_a_mismatch_waits(pg_schema_url: str, tmp_path: Path) -> None:
    s = seed(pg_schema_url, experts=2, rooms=2, bands=2, allow_id_only=False, verifier=FakeFaceVerifier())
    try:
        photos = tmp_path / "photos"
        photos.mkdir()
        (photos / f"{s.ids[0]}.jpg").write_bytes(face_image("a"))
        imports.import_photos(s.new_uow(), s.ctx, s.batch_code, photos)
        writes = _watch_audit_writes(s.uow.engine)
        # A mismatch counts against the expert's tries: that must survive a crash.
        _identify(s, 0, faces=(face_image("someone else"),), verified=False)
        assert writes, "the refused identify wrote no audit entry"
        assert {w.synchronous_commit for w in writes} == {"on"}
        writes.clear()
        _identify(s, 0, faces=(face_image("a"),))
        assert writes, "the identify wrote no audit entry"
        assert {w.synchronous_commit for w in writes} == {"off"}
    finally:
        s.uow.engine.dispose()


def test_an_operator_can_have_identifies_wait_for_the_disk(seeded: Seeded) -> None:
    s = dataclasses.replace(seeded, ctx=dataclasses.replace(seeded.ctx, identify_synchronous_commit=True))
    writes = _watch_audit_writes(s.uow.engine)
    _identify(s, 1)
    assert [w.synchronous_commit for w in writes] == ["on"]
