"""A seeded platform on a real gRPC server (free port) over SQLite or a private PostgreSQL schema.

Shared by the platform, kiosk and console tests: start()/stop(), Running, and the database fixtures
(db_url, pg_schema_url), which an area's conftest.py re-exports to use them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import diagnostics_pb2_grpc, kiosk_pb2_grpc, organiser_pb2_grpc

from platform_server.bootstrap import Platform
from platform_server.config import DatabaseSection, PlatformConfig, SecuritySection
from platform_server.db.engine import make_session_factory
from platform_server.db.models import AccountToken
from platform_server.server import create_server
from platform_server.services import accounts
from tests.unit.platform_server.support import Clock, FakeFaceVerifier, Seeded, seed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards (parallel-safe)."""
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@dataclass
class Running:
    """A seeded platform served on a real port, with stubs."""

    seeded: Seeded
    platform: Platform
    server: grpc.Server
    port: int
    channel: grpc.Channel
    kiosk: kiosk_pb2_grpc.KioskServiceStub
    organiser: organiser_pb2_grpc.OrganiserServiceStub
    diagnostics: diagnostics_pb2_grpc.DiagnosticsServiceStub
    verifier: FakeFaceVerifier
    clock: Clock
    admin_token: str = ""

    @property
    def auth(self) -> list[tuple[str, str]]:
        """Call metadata of the seeded admin person."""
        return [("authorization", f"Bearer {self.admin_token}")]

    def person(self, username: str, role: accounts.Role) -> list[tuple[str, str]]:
        """Add a person with `role` and return their call metadata."""
        return [("authorization", f"Bearer {person_token(self.seeded, username, role)}")]


def add_person_with_token(seeded: Seeded, username: str, role: accounts.Role, token: str) -> None:
    """An account whose token is a value the test knows in advance (stored hashed, as issued ones are)."""
    at = seeded.ctx.clock()
    person = accounts.add_account(seeded.new_uow(), username=username, role=role, actor="os:test", at=at)
    with seeded.uow.engine.begin() as c:
        c.execute(
            sa.insert(AccountToken).values(
                account_id=person.account_id, token_hash=accounts.token_hash(token), label="test", created_at=at
            )
        )


def person_token(seeded: Seeded, username: str, role: accounts.Role) -> str:
    """An account with a fresh API token (what `platform-server accounts add` and `token` make)."""
    at = seeded.ctx.clock()
    accounts.add_account(seeded.new_uow(), username=username, role=role, actor="os:test", at=at)
    return accounts.issue_token(seeded.new_uow(), username, actor="os:test", at=at)


def start(db: str, *, rooms: int = 5, bands: int = 10, experts: int = 5, allow_id_only: bool = True) -> Running:
    """Seed the database and serve it on 127.0.0.1:0."""
    clock = Clock()
    verifier = FakeFaceVerifier()
    seeded = seed(
        db,
        rooms=rooms,
        bands=bands,
        experts=experts,
        clock=clock,
        verifier=verifier,
        allow_id_only=allow_id_only,
        kiosk_ids=[f"K{i}" for i in range(1, 9)],
        pool_size=12,
    )
    config = PlatformConfig(database=DatabaseSection(url=db), security=SecuritySection(insecure_kiosks=True))
    engine = seeded.uow._session_factory.kw["bind"]
    platform = Platform(config, engine, make_session_factory(engine), seeded.ctx)
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return Running(
        seeded,
        platform,
        server,
        port,
        channel,
        kiosk_pb2_grpc.KioskServiceStub(channel),
        organiser_pb2_grpc.OrganiserServiceStub(channel),
        diagnostics_pb2_grpc.DiagnosticsServiceStub(channel),
        verifier,
        clock,
        person_token(seeded, "admin", accounts.Role.ADMIN),
    )


def stop(running: Running) -> None:
    """Close the channel, stop the server and dispose of the engine."""
    running.channel.close()
    running.platform.stopping.set()
    running.server.stop(None).wait()
    running.platform.engine.dispose()
