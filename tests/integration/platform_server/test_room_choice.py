"""Rooms on SQLite and PostgreSQL: `rooms.occupied_by` follows check-ins and annulments (kiosk and desk),
the lowest free room is found by walking the free-room index instead of every room, a room wrongly
marked occupied is still given once no other is free, and the migration fills the column.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic import command

from platform_server.db.engine import alembic_config, upgrade
from platform_server.services import check_in, room_choice, staff
from tests.unit.platform_server.support import Seeded, check_in_expert, seed

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def seeded(db_url: str) -> Iterator[Seeded]:
    s = seed(db_url, experts=4, rooms=4, bands=6)
    yield s
    s.uow.engine.dispose()


def complete(s: Seeded, n: int) -> check_in.CompleteResult:
    result = check_in_expert(s, n)
    assert result.check_in is not None, result.refusal
    return result


def rooms(s: Seeded) -> dict[str, int | None]:
    """Room number -> the check-in id in occupied_by."""
    with s.uow.engine.connect() as c:
        return dict(c.exec_driver_sql("SELECT number, occupied_by FROM rooms").all())


def active_check_in_id(s: Seeded, public_id: str) -> int:
    with s.uow.engine.connect() as c:
        return int(c.execute(sa.text("SELECT id FROM check_ins WHERE public_id = :p"), {"p": public_id}).scalar_one())


def test_check_ins_and_annulments_keep_occupied_by(seeded: Seeded) -> None:
    s = seeded
    first, second = complete(s, 0).check_in, complete(s, 1).check_in
    assert first is not None
    assert second is not None
    held = rooms(s)
    assert held[first.room_number] == active_check_in_id(s, first.check_in_id)
    assert held[second.room_number] == active_check_in_id(s, second.check_in_id)
    assert sum(v is not None for v in held.values()) == 2
    annulled = check_in.annul_check_in(
        s.new_uow(),
        s.ctx,
        check_in.AnnulCommand(
            request_id=uuid.uuid4().hex, kiosk_id="K1", check_in_id=first.check_in_id, reason="not_taken"
        ),
    )
    assert annulled.refusal is None
    staff.annul_by_staff(s.new_uow(), s.ctx, second.check_in_id, "expert left", actor="person:desk")
    assert all(v is None for v in rooms(s).values())
    # The room the kiosk's annulment freed is the lowest again: the next expert gets it.
    third = complete(s, 2).check_in
    assert third is not None
    assert third.room_number == first.room_number


def test_a_room_wrongly_marked_occupied_is_still_given_when_no_other_is_free(seeded: Seeded) -> None:
    s = seeded
    with s.uow.engine.begin() as c:
        c.exec_driver_sql("UPDATE rooms SET occupied_by = 999999")  # every room, none really held
    given = {complete(s, n).check_in.room_number for n in range(4)}  # type: ignore[union-attr]
    assert given == set(rooms(s))


def _plan(s: Seeded) -> str:
    params = {"batch_id": 1, "invitation_id": 1}
    with s.uow.engine.connect() as c:
        if c.dialect.name == "postgresql":
            c.exec_driver_sql("SET enable_seqscan = off")  # a four-room table would be read whole anyway
            sql = "EXPLAIN " + room_choice.POOL_SQL + room_choice.SKIP_LOCKED
            return "\n".join(r[0] for r in c.execute(sa.text(sql), params))
        sql = "EXPLAIN QUERY PLAN " + room_choice.POOL_SQL
        return "\n".join(str(r[-1]) for r in c.execute(sa.text(sql), params))


def test_the_lowest_free_room_is_read_from_the_free_room_index_in_order(seeded: Seeded) -> None:
    plan = _plan(seeded)
    assert "ix_rooms_free" in plan, plan
    # In the index's order: no sort of the batch's rooms before the first one is taken.
    assert "TEMP B-TREE" not in plan, plan
    assert "Sort" not in plan, plan


def test_the_migration_fills_occupied_by_from_the_active_check_ins(seeded: Seeded) -> None:
    s = seeded
    done = complete(s, 0).check_in
    assert done is not None
    engine = s.uow.engine
    command.downgrade(alembic_config(engine), "0080")
    with engine.connect() as c:
        columns = {col["name"] for col in sa.inspect(c).get_columns("rooms")}
    assert "occupied_by" not in columns
    upgrade(engine)
    assert rooms(s)[done.room_number] == active_check_in_id(s, done.check_in_id)
