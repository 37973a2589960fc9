"""The Alembic migrations produce exactly the models' schema, and the audit log refuses changes."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.schema import CreateIndex

from platform_server.db.engine import (
    alembic_config,
    database_revision,
    is_up_to_date,
    make_engine,
    script_head,
    upgrade,
)
from platform_server.db.models import Base

if TYPE_CHECKING:
    from pathlib import Path


def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite's reflection cannot read expression indexes, so Alembic skips them: compared below.
        warnings.filterwarnings("ignore", r".*expression-based index '?ix_rooms_free'?", sa.exc.SAWarning)
        warnings.filterwarnings("ignore", r".*expression-based index '?ix_rooms_free'?", UserWarning)
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        migrated = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_rooms_free'").scalar()
    assert diff == []
    rooms = sa.Table("rooms", Base.metadata)  # the model's table, as declared
    index = next(i for i in rooms.indexes if i.name == "ix_rooms_free")
    assert migrated == str(CreateIndex(index).compile(dialect=engine.dialect)).strip()


def test_audit_log_is_append_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail) "
            "VALUES ('2025-01-01 00:00:00', 'a', 'b', 'c', '')"
        )
    for statement in ("UPDATE audit_log SET outcome = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"), engine.begin() as c:
            c.exec_driver_sql(statement)
    # A row from before the chain may be given its place once (seq and mac), nothing else.
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE audit_log SET seq = 1, mac = 'm'")
    with pytest.raises(sa.exc.IntegrityError, match="append-only"), engine.begin() as c:
        c.exec_driver_sql("UPDATE audit_log SET mac = 'other'")


def test_the_fast_head_check_agrees_with_alembic(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    assert script_head() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    assert database_revision(engine) is None
    assert not is_up_to_date(engine)
    upgrade(engine, "0002")
    assert database_revision(engine) == "0002"
    assert not is_up_to_date(engine)
    upgrade(engine)  # not at the head: Alembic runs the rest
    assert database_revision(engine) == script_head()
    assert is_up_to_date(engine)
    engine.dispose()


def _columns(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as c:
        return [row[1] for row in c.exec_driver_sql(f"PRAGMA table_info({table})")]


def test_reference_encodings_are_stored_before_the_photos_and_kept_through_the_rebuild(tmp_path: Path) -> None:
    """0110 rebuilds both reference tables on SQLite, the encoding first; rows, keys and indexes stay."""
    from alembic import command  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine, "0100")
    before = _columns(engine, "reference_photos")
    assert before.index("image_encrypted") < before.index("encoding_encrypted")
    photo, encoding = b"\xff\xd8" + bytes(range(256)) * 800, b"\x01" * 1040  # a 200 KB photo spills over pages
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO experts (id, id_hash, id_masked, name, organisation, specialty, created_at)"
            " VALUES (7, 'h', '1101**********1234', '张三', 'org', '', '2026-12-07')"
        )
        for table, extra in (("reference_photos", ""), ("extra_reference_photos", ", 2")):
            position = ", position" if extra else ""
            c.exec_driver_sql(
                f"INSERT INTO {table} (id, expert_id{position}, image_encrypted, encoding_encrypted, image_sha256,"
                f" updated_at) VALUES (3, 7{extra}, ?, ?, 's', '2026-12-07')",
                (photo, encoding),
            )
    upgrade(engine)
    for table in ("reference_photos", "extra_reference_photos"):
        columns = _columns(engine, table)
        assert columns.index("encoding_encrypted") < columns.index("image_encrypted"), columns
        with engine.connect() as c:
            row = c.exec_driver_sql(f"SELECT id, expert_id, image_encrypted, encoding_encrypted FROM {table}").one()
        assert tuple(row) == (3, 7, photo, encoding)
    with engine.connect() as c:  # the unique keys survive the rebuild
        indexes = {row[1] for row in c.exec_driver_sql("PRAGMA index_list(extra_reference_photos)")}
    assert "ix_extra_reference_photos_expert_id" in indexes
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO reference_photos (expert_id, image_encrypted, encoding_encrypted, image_sha256, updated_at)"
            " VALUES (7, x'00', x'00', 's', '2026-12-07')"
        )
    command.downgrade(alembic_config(engine), "0100")
    columns = _columns(engine, "reference_photos")
    assert columns.index("image_encrypted") < columns.index("encoding_encrypted")
    engine.dispose()
