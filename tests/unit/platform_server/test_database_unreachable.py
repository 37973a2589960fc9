"""A database that cannot be reached (restarting, gone) gives the kiosk gate and the heartbeat's read a
clear "try again" (TransientError: UNAVAILABLE), never an unexpected error (INTERNAL).

A PostgreSQL restart under load once answered 367 identify calls with INTERNAL: the gate's one read ran
outside the transaction retry loop. Here PostgreSQL is a closed port, so every connection is refused.
"""

from __future__ import annotations

import socket

import pytest

from device_kit import ports
from platform_server.config import RulesSection
from platform_server.db.engine import make_engine, make_session_factory
from platform_server.db.unit_of_work import UnitOfWork
from platform_server.errors import TransientError
from platform_server.services import kiosk_access, kiosks
from platform_server.services.context import ServiceContext
from tests.unit.platform_server.support import TEST_KEY


@pytest.fixture
def unreachable() -> UnitOfWork:
    port = ports.free_port()
    with socket.socket() as probe:  # nothing listens there: a connection is refused at once
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    engine = make_engine(f"postgresql+psycopg://checkin:checkin@127.0.0.1:{port}/checkin?connect_timeout=2")
    return UnitOfWork(make_session_factory(engine))


def test_the_kiosk_gate_answers_try_again_when_the_database_is_unreachable(unreachable: UnitOfWork) -> None:
    ctx = ServiceContext(data_key=TEST_KEY, rules=RulesSection(), face_verifier=None)
    with pytest.raises(TransientError, match="try again"):
        kiosk_access.admit(unreachable, ctx, "K1", certificates_required=False, presented_sha256=None)


def test_a_heartbeat_answers_try_again_when_the_database_is_unreachable(unreachable: UnitOfWork) -> None:
    ctx = ServiceContext(data_key=TEST_KEY, rules=RulesSection(), face_verifier=None)
    beat = kiosks.HeartbeatCommand(
        kiosk_id="K1", devices=(), band_stock=10, pending_check_ins=0, out_of_service=False, software_version="t"
    )
    with pytest.raises(TransientError, match="try again"):
        kiosks.heartbeat(unreachable, ctx, beat)
