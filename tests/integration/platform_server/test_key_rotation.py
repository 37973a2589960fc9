"""Key rotation on SQLite and PostgreSQL: everything readable under the new key and nothing under the
old, an interrupted rotation refused at start and then resumed, the old key refused afterwards."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from personal_data.crypto import DataKey, DecryptionError
from platform_server.db.models import Kiosk
from platform_server.errors import ConfigError
from platform_server.services import audit_chain, key_rotation, keyring
from platform_server.services.keyring import KeyRotationPendingError
from tests.unit.platform_server.rotation_support import filled, read_everything
from tests.unit.platform_server.support import TEST_KEY

NEW_KEY = DataKey.from_text(DataKey.generate_text())


class ProcessDiedError(Exception):
    """Stands for the process dying part-way."""


def experts_for(db_url: str) -> int:
    # 10 000 on SQLite (the figure); fewer on the shared PostgreSQL to keep the suite gentle.
    return 10_000 if db_url.startswith("sqlite") else 1_500


def test_rotation_moves_everything_to_the_new_key(db_url: str) -> None:
    s = filled(db_url, experts_for(db_url))
    engine = s.uow.engine
    before = read_everything(engine, TEST_KEY, s.ids)
    started = time.perf_counter()
    report = key_rotation.rotate(s.new_uow(), s.ctx, NEW_KEY, actor="os:test")
    seconds = time.perf_counter() - started
    print(
        f"\nrotated {report.experts} experts, {report.check_ins} check-ins in {seconds:.2f} s ({engine.dialect.name})"
    )
    assert report.experts == report.cards == report.check_ins == len(s.ids)
    assert read_everything(engine, NEW_KEY, s.ids) == before
    with pytest.raises(DecryptionError):
        read_everything(engine, TEST_KEY, s.ids)
    # The old key is refused at start with one line; the new one opens, and the audit chain still verifies.
    with pytest.raises(ConfigError, match="wrong data key"):
        keyring.open_keys(engine, TEST_KEY)
    key = keyring.open_keys(engine, NEW_KEY)
    assert audit_chain.verify(engine, key).ok


def test_an_interrupted_rotation_is_refused_at_start_and_resumes(db_url: str) -> None:
    s = filled(db_url, 2_000 if db_url.startswith("sqlite") else 800)
    engine = s.uow.engine
    before = read_everything(engine, TEST_KEY, s.ids)
    chunks = 0

    def die_after_three(_what: str, _n: int) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 3:
            raise ProcessDiedError

    with pytest.raises(ProcessDiedError):
        key_rotation.rotate(s.new_uow(), s.ctx, NEW_KEY, actor="os:test", on_chunk=die_after_three)
    # Half-way: neither key reads everything, and nothing but the rotation may open the database.
    with pytest.raises(KeyRotationPendingError, match="interrupted"):
        keyring.open_keys(engine, TEST_KEY)
    with pytest.raises(ConfigError, match="must be finished first"):
        key_rotation.rotate(s.new_uow(), s.ctx, DataKey.from_text(DataKey.generate_text()), actor="os:test")
    report = key_rotation.rotate(s.new_uow(), s.ctx, NEW_KEY, actor="os:test")
    assert report.resumed
    assert 0 < report.experts < len(s.ids)  # the first run's chunks were not done again
    assert read_everything(engine, NEW_KEY, s.ids) == before
    key = keyring.open_keys(engine, NEW_KEY)
    assert audit_chain.verify(engine, key).ok


def test_rotation_is_refused_while_kiosks_are_heartbeating(db_url: str) -> None:
    s = filled(db_url, 20)
    with s.uow.engine.begin() as c:
        c.execute(sa.update(Kiosk).values(last_heartbeat_at=s.ctx.clock() - dt.timedelta(seconds=30)))
    with pytest.raises(ConfigError, match=r"looks live \(kiosk K1 heartbeat 30 s ago\)"):
        key_rotation.rotate(s.new_uow(), s.ctx, NEW_KEY, actor="os:test")
    keyring.open_keys(s.uow.engine, TEST_KEY)  # nothing started: the old key still opens it
    assert key_rotation.rotate(s.new_uow(), s.ctx, NEW_KEY, actor="os:test", force=True).experts == 20
