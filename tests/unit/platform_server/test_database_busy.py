"""A SQLite write lock held elsewhere past every bound gives the kiosk a clear "try again", never INTERNAL.

Under a stalled machine (a profiler pausing the platform 250 times a second) three heartbeats of a
flat-out run were answered INTERNAL: a beat that changes the kiosk's health went through a Session
outside the transaction retry loop, so SQLite's "database is locked" reached the servicer as an
unexpected error. Here another connection holds the write lock (BEGIN IMMEDIATE) for the whole call,
with the waits shortened so each test takes well under a second; every kiosk write path must end as
TransientError (UNAVAILABLE), write nothing, and succeed once the lock is free.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from platform_server.db import engine as db_engine
from platform_server.db import unit_of_work
from platform_server.db.models import AuditEntry, Kiosk
from platform_server.errors import TransientError
from platform_server.grpc_api.status_mapping import maps_errors
from platform_server.services import kiosk_access, kiosks
from platform_server.services.refusals import Reason
from tests.unit.platform_server.support import Seeded, seed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def seeded_short_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    # Read when the engine is made (SQLite's busy timeout) and at each wait (the gate, the budget).
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(unit_of_work, "LOCK_WAIT_BUDGET_S", 0.3)
    return seed(f"sqlite:///{tmp_path / 'platform.db'}")


@pytest.fixture
def lock_held(seeded_short_waits: Seeded) -> Iterator[sqlite3.Connection]:
    """Another connection (another process, as the UWB worker or a CLI import would be) holds the write lock."""
    holder = sqlite3.connect(seeded_short_waits.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.close()


def _beat(kiosk_id: str, state: str) -> kiosks.HeartbeatCommand:
    return kiosks.HeartbeatCommand(
        kiosk_id=kiosk_id,
        devices=(kiosks.DeviceHealth("printer", state),),
        band_stock=10,
        pending_check_ins=0,
        out_of_service=False,
        software_version="t",
    )


def _kiosk_row(s: Seeded, kiosk_id: str) -> tuple[Any, ...]:
    with s.new_uow().read_only() as u:  # reads beside the held write lock (WAL)
        row = u.execute(
            sa.select(Kiosk.devices_json, Kiosk.last_heartbeat_at, Kiosk.refusal_streak).where(
                Kiosk.kiosk_id == kiosk_id
            )
        ).one()
        return tuple(row)


def _audit_count(s: Seeded) -> int:
    with s.new_uow().read_only() as u:  # reads beside the held write lock (WAL)
        return int(u.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one())


def test_a_health_change_beat_answers_try_again_and_writes_nothing(
    seeded_short_waits: Seeded, lock_held: sqlite3.Connection
) -> None:
    s = seeded_short_waits
    before, entries = _kiosk_row(s, "K1"), _audit_count(s)
    with pytest.raises(TransientError, match="try again"):
        kiosks.heartbeat(s.uow, s.ctx, _beat("K1", "ok"))  # its first beat: a change of health
    assert _kiosk_row(s, "K1") == before
    assert _audit_count(s) == entries
    lock_held.execute("ROLLBACK")
    assert kiosks.heartbeat(s.uow, s.ctx, _beat("K1", "ok")).registered
    assert _kiosk_row(s, "K1") != before
    assert _audit_count(s) == entries + 1  # the change of health, audited once


def test_a_kiosk_event_without_a_request_id_answers_try_again(
    seeded_short_waits: Seeded, lock_held: sqlite3.Connection
) -> None:
    s = seeded_short_waits
    entries = _audit_count(s)
    report = {"kiosk_id": "K1", "event": "paper_low", "outcome": "noted", "detail": "", "id_hint": ""}
    with pytest.raises(TransientError, match="try again"):
        kiosks.report_event(s.uow, s.ctx, kiosk_time=None, **report)
    assert _audit_count(s) == entries
    lock_held.execute("ROLLBACK")
    assert kiosks.report_event(s.uow, s.ctx, kiosk_time=None, **report)
    assert _audit_count(s) == entries + 1


def test_a_refusal_streak_reset_answers_try_again(seeded_short_waits: Seeded) -> None:
    s = seeded_short_waits
    admission = kiosk_access.admit(s.uow, s.ctx, "K1", certificates_required=False, presented_sha256=None)
    kiosk_access.note_identify(s.uow, s.ctx, "K1", admission, Reason.NOT_INVITED)  # one refusal in a row
    streak = _kiosk_row(s, "K1")[2]
    assert streak == 1
    admission = kiosk_access.admit(s.uow, s.ctx, "K1", certificates_required=False, presented_sha256=None)
    holder = sqlite3.connect(s.url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientError, match="try again"):
            kiosk_access.note_identify(s.uow, s.ctx, "K1", admission, None)  # a verified expert resets it
        assert _kiosk_row(s, "K1")[2] == streak
    finally:
        holder.close()
    kiosk_access.note_identify(s.uow, s.ctx, "K1", admission, None)
    assert _kiosk_row(s, "K1")[2] == 0


class _AbortedError(Exception):
    pass


class _RecordingContext:
    """The little of grpc.ServicerContext that maps_errors uses: what it aborted with."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.aborted = (code, details)
        raise _AbortedError


def test_a_lock_error_that_escapes_a_service_is_unavailable_not_internal() -> None:
    """The servicers' safety net: a database error a later call gets past is "try again" (UNAVAILABLE)."""
    locked = sa_exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    class Servicer:
        @maps_errors
        def Locked(self, request: object, context: Any) -> None:  # noqa: N802 (a gRPC method's name)
            raise locked

        @maps_errors
        def Broken(self, request: object, context: Any) -> None:  # noqa: N802
            raise sa_exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: kiosk"))

    for method, code, words in (
        ("Locked", grpc.StatusCode.UNAVAILABLE, "try again"),
        ("Broken", grpc.StatusCode.INTERNAL, "internal error"),
    ):
        context = _RecordingContext()
        with pytest.raises(_AbortedError):
            getattr(Servicer(), method)(object(), context)
        assert context.aborted is not None
        assert context.aborted[0] == code
        assert words in context.aborted[1]
