"""The data key's fingerprint: stored at the first start, a different key refused; a database from
before fingerprints accepts only the key that opens its sealed data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from personal_data.crypto import DataKey
from platform_server.errors import ConfigError
from platform_server.services import keyring
from tests.unit.platform_server.support import TEST_KEY, seed

if TYPE_CHECKING:
    from pathlib import Path

OTHER = DataKey.from_text("another key, not the one the database was written with")


def test_a_different_key_is_refused_naming_both_fingerprints(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'k.db'}", experts=3)
    with pytest.raises(ConfigError) as info:
        keyring.open_keys(s.uow.engine, OTHER)
    assert str(info.value) == (
        f"wrong data key: this database was written with key {keyring.fingerprint(TEST_KEY)}, "
        f"the configured key is {keyring.fingerprint(OTHER)}"
    )
    assert "\n" not in str(info.value)
    assert keyring.open_keys(s.uow.engine, TEST_KEY)  # the right key still opens it


def test_a_database_from_before_fingerprints_takes_only_its_own_key(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'k.db'}", experts=3)
    with s.uow.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM platform_keys")  # as written before migration 0020
    with pytest.raises(ConfigError, match="does not open this database's personal data"):
        keyring.open_keys(s.uow.engine, OTHER)
    keyring.open_keys(s.uow.engine, TEST_KEY)
    with s.uow.engine.connect() as c:
        stored = c.exec_driver_sql("SELECT fingerprint FROM platform_keys").scalar_one()
    assert stored == keyring.fingerprint(TEST_KEY)


def test_fingerprints_differ_by_key_and_reveal_nothing_of_it() -> None:
    assert keyring.fingerprint(TEST_KEY) == keyring.fingerprint(TEST_KEY)
    assert keyring.fingerprint(TEST_KEY) != keyring.fingerprint(OTHER)
    assert len(keyring.fingerprint(TEST_KEY)) == 32
    assert keyring.fingerprint(TEST_KEY) not in (TEST_KEY.encryption_key.hex() + TEST_KEY.lookup_key.hex())
