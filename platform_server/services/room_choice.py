"""Which room a completion gets, and keeping `rooms.occupied_by` with check-ins and annulments.

The rule (services.check_in): the invitation's pre-assigned room if it is free, else the lowest free
room of the batch's pool (by number length, then number) not pre-assigned to someone else. "Free"
means no active check-in holds it; that stays the rule, checked in every query below. The column
`occupied_by` only lets the database find candidates in order without looking at every room: the
index `ix_rooms_free` lists the rooms whose column is empty, in assignment order, so the lowest free
room is its first entry. Should the column ever be wrong (set on a room that is free), the search
falls back to looking at every room, so no free room is lost, only found more slowly.

The SQL runs through `run(sql, params)` (a driver transaction's execute, or a unit of work's), the
way services.audit_chain writes: one text for both completion paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from platform_server.db.unit_of_work import UnitOfWork

_SELECT = "SELECT r.id, r.number, h.name, h.address FROM rooms r JOIN hotels h ON h.id = r.hotel_id"
_NO_ACTIVE_CHECK_IN = "NOT EXISTS (SELECT 1 FROM check_ins c WHERE c.room_id = r.id AND c.annulled_at IS NULL)"
_NOT_RESERVED_FOR_OTHER = "NOT EXISTS (SELECT 1 FROM invitations o WHERE o.room_id = r.id AND o.id != :invitation_id)"
PREASSIGNED_SQL = (
    f"{_SELECT} WHERE r.id = :room_id AND r.batch_id = :batch_id"
    f" AND {_NO_ACTIVE_CHECK_IN} AND {_NOT_RESERVED_FOR_OTHER}"
)
# The index's order and condition, word for word, so both databases walk ix_rooms_free and stop early.
POOL_SQL = (
    f"{_SELECT} WHERE r.batch_id = :batch_id AND r.occupied_by IS NULL"
    f" AND {_NO_ACTIVE_CHECK_IN} AND {_NOT_RESERVED_FOR_OTHER}"
    " ORDER BY length(r.number), r.number LIMIT 1"
)
EVERY_ROOM_SQL = (
    f"{_SELECT} WHERE r.batch_id = :batch_id AND {_NO_ACTIVE_CHECK_IN} AND {_NOT_RESERVED_FOR_OTHER}"
    " ORDER BY length(r.number), r.number LIMIT 1"
)
# PostgreSQL: skip rooms another kiosk is assigning right now instead of queueing behind it.
SKIP_LOCKED = " FOR UPDATE OF r SKIP LOCKED"
OCCUPY_SQL = "UPDATE rooms SET occupied_by = :check_in_id WHERE id = :room_id"
VACATE_SQL = "UPDATE rooms SET occupied_by = NULL WHERE id = :room_id AND occupied_by = :check_in_id"


def free_room(
    run: Callable[[str, Mapping[str, Any]], Any],
    *,
    postgres: bool,
    batch_id: int,
    invitation_id: int,
    preassigned: int | None,
) -> tuple[int, str, Any, Any] | None:
    """(room id, number, hotel name, hotel address) of the room the rule gives, or None: none is left."""
    lock = SKIP_LOCKED if postgres else ""
    params = {"batch_id": batch_id, "invitation_id": invitation_id, "room_id": preassigned or -1}
    queries = ([PREASSIGNED_SQL] if preassigned else []) + [POOL_SQL, EVERY_ROOM_SQL]
    for sql in queries:
        row = run(sql + lock, params).fetchone()
        if row is not None:
            return int(row[0]), str(row[1]), row[2], row[3]
    return None


def occupy(run: Callable[[str, Mapping[str, Any]], Any], room_id: int, check_in_id: int) -> None:
    """Mark the room held by the new active check-in (same transaction as its insert)."""
    run(OCCUPY_SQL, {"room_id": room_id, "check_in_id": check_in_id})


def vacate(run: Callable[[str, Mapping[str, Any]], Any], room_id: int, check_in_id: int) -> None:
    """The annulled check-in no longer holds its room (same transaction as the annulment)."""
    run(VACATE_SQL, {"room_id": room_id, "check_in_id": check_in_id})


def through(u: UnitOfWork) -> Callable[[str, Mapping[str, Any]], Any]:
    """`run` for the functions above inside a unit of work's transaction."""
    return lambda sql, params: u.execute(sa.text(sql), params)
