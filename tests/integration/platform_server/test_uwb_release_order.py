"""Outbox rows a worker claimed and gave back unsent keep their place in line, on SQLite and PostgreSQL.

A worker that stops mid-claim (a drain, a replica whose serving process died) or cannot reach the
gateway releases its unsent rows. Due again only from the release, they went behind every row made
while they were claimed: with a backlog of hundreds, their bands were written seconds late.
"""

from __future__ import annotations

from platform_server.services import uwb as outbox
from tests.integration.uwb.platform_support import check_in, deliveries
from tests.unit.platform_server.support import Clock, Seeded, seed


def check_ins_a_second_apart(s: Seeded, clock: Clock, experts: range) -> None:
    """Check in each of `experts` (with the band of the same number), the clock a second on after each."""
    for n in experts:
        check_in(s, n, n)
        clock.advance(1)


def test_rows_released_unsent_are_claimed_again_before_rows_made_while_they_were_claimed(db_url: str) -> None:
    clock = Clock()
    s = seed(db_url, experts=4, rooms=4, bands=4, clock=clock)
    check_ins_a_second_apart(s, clock, range(2))
    first, second = outbox.claim_due(s.new_uow(), clock(), limit=2)
    check_ins_a_second_apart(s, clock, range(2, 4))  # made while the two are claimed
    third, fourth = (int(str(row["id"])) for row in deliveries(s)[2:])

    # The worker sent the first and stopped before the second: only the second is given back.
    assert outbox.release_claims(s.new_uow(), clock(), [second.delivery_id]) == 1
    again = outbox.claim_due(s.new_uow(), clock(), limit=4)
    assert [d.delivery_id for d in again] == [second.delivery_id, third, fourth]
    assert first.delivery_id not in {d.delivery_id for d in again}  # still claimed by the worker that sent it


def test_rows_left_claimed_by_a_dead_worker_are_due_at_once_in_the_order_they_were_made(db_url: str) -> None:
    clock = Clock()
    s = seed(db_url, experts=3, rooms=3, bands=3, clock=clock)
    check_ins_a_second_apart(s, clock, range(3))
    claimed = outbox.claim_due(s.new_uow(), clock(), limit=3)
    assert outbox.claim_due(s.new_uow(), clock(), limit=3) == []  # hidden while the claims last

    # The next worker's start-up gives back every claim (its predecessor died holding them).
    clock.advance(5)
    assert outbox.release_claims(s.new_uow(), clock()) == 3
    again = outbox.claim_due(s.new_uow(), clock(), limit=3)
    assert [d.delivery_id for d in again] == [d.delivery_id for d in claimed]
