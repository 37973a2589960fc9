"""The data key's fingerprint in the database, and the audit chain key sealed under the data key.

At every start (serve and each CLI command) the configured data key must be the one the database was
written with: a different key is refused with one line, instead of invited experts silently coming
back as NOT_INVITED. The audit chain key is random, stored only encrypted under the data key, so a key
rotation re-seals it and the chain itself never changes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import sqlalchemy as sa

from personal_data.crypto import DecryptionError, decrypt, encrypt, purpose_key
from platform_server.db.models import Expert, PiiPage, PlatformKeys, ReferencePhoto
from platform_server.errors import ConfigError
from platform_server.services import audit_chain
from platform_server.services.context import utc_now
from platform_server.services.spreadsheets import PII_PAGE_AAD

if TYPE_CHECKING:
    from personal_data.crypto import DataKey

AUDIT_KEY_AAD = b"audit chain key"


def fingerprint(key: DataKey) -> str:
    """A short public name of a data key (32 hex): equal for the same key, useless to recover it."""
    return purpose_key(key, "data key fingerprint")[:16].hex()


class KeyRotationPendingError(ConfigError):
    """A rotation was interrupted: only `keys rotate` may open the database until it is finished."""


def _refuse_foreign_key(connection: sa.Connection, key: DataKey) -> None:
    """A database written before fingerprints existed: the key must open one of its sealed values."""
    sample = connection.execute(sa.select(PiiPage.sealed).limit(1)).scalar()
    if sample is not None:
        blob, aad = sample, PII_PAGE_AAD
    else:
        row = connection.execute(
            sa.select(Expert.pii_encrypted, Expert.id_hash).where(Expert.pii_encrypted.is_not(None)).limit(1)
        ).first()
        if row is not None and row[0] is not None:
            blob, aad = row[0], str(row[1]).encode()
        else:
            photo = connection.execute(sa.select(ReferencePhoto.image_encrypted).limit(1)).scalar()
            if photo is None:
                return
            blob, aad = photo, b"reference-photo"
    try:
        decrypt(key, blob, aad)
    except DecryptionError as err:
        raise ConfigError(
            "the configured data key does not open this database's personal data: "
            "start with the key it was written with"
        ) from err


def open_keys(engine: sa.Engine, key: DataKey, *, rotating: bool = False) -> bytes:
    """Check the data key against the database (storing its fingerprint on first use); bind the audit key.

    Raises:
        ConfigError: a different key, or a rotation left unfinished (unless `rotating`).

    """
    for attempt in range(4):
        # Every start reads (no write lock on SQLite); only the very first one writes.
        writing = attempt > 0
        begin = "IMMEDIATE" if writing else "DEFERRED"
        try:
            with engine.connect().execution_options(sqlite_begin=begin) as connection, connection.begin():
                row = connection.execute(
                    sa.select(
                        PlatformKeys.fingerprint, PlatformKeys.audit_key_encrypted, PlatformKeys.rotating_to
                    ).where(PlatformKeys.id == 1)
                ).first()
                if row is None:
                    if not writing:
                        continue
                    _refuse_foreign_key(connection, key)
                    audit_key = os.urandom(audit_chain.AUDIT_KEY_BYTES)
                    connection.execute(
                        sa.insert(PlatformKeys).values(
                            id=1,
                            fingerprint=fingerprint(key),
                            audit_key_encrypted=encrypt(key, audit_key, AUDIT_KEY_AAD),
                            created_at=utc_now(),
                        )
                    )
                    audit_chain.start_chain(connection, audit_key)
                else:
                    audit_key = _audit_key(row, key, rotating=rotating)
        except sa.exc.IntegrityError:
            continue  # another process stored the keys first: read theirs
        audit_chain.bind_key(engine, audit_key)
        return audit_key
    raise ConfigError("could not store the data key fingerprint (another process keeps racing for it)")


def _audit_key(row: sa.Row[str, bytes, str | None], key: DataKey, *, rotating: bool) -> bytes:
    mine = fingerprint(key)
    if row.rotating_to and not rotating:
        raise KeyRotationPendingError(
            f"a data key rotation (to key {row.rotating_to}) was interrupted: "
            "finish it with `platform-server keys rotate` and the same new key before anything else"
        )
    if row.fingerprint != mine and not (rotating and row.rotating_to == mine):
        raise ConfigError(
            f"wrong data key: this database was written with key {row.fingerprint}, the configured key is {mine}"
        )
    # During a finished-but-unswitched rotation the stored fingerprint is the new key's; both are handled above.
    try:
        return decrypt(key, row.audit_key_encrypted, AUDIT_KEY_AAD)
    except DecryptionError as err:
        raise ConfigError("the audit key does not open with the data key: platform_keys was altered") from err
