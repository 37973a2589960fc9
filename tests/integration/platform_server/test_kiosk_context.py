"""The kiosk's context (its batch for the home screen), read on a driver connection, as every heartbeat carries it.

On SQLite and PostgreSQL (each driver's timestamps and booleans), against the batch as the organiser's
services read it through the ORM.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from platform_server.services import batches, kiosks
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def seeded(db_url: str) -> Iterator[Seeded]:
    s = seed(db_url, clock=Clock(), kiosk_ids=("K1",))
    kiosks.register_kiosk(s.new_uow(), s.ctx, "K-free", name="未指定批次")
    yield s
    s.uow.engine.dispose()


def _context(s: Seeded, kiosk_id: str) -> batches.BatchView | None:
    """The kiosk's context as GetKioskContext reads it, checked against what a beat's answer carries."""
    batch, now = kiosks.kiosk_context(s.new_uow(), s.ctx, kiosk_id)
    assert now == s.ctx.clock()
    # A beat reads the same context with its stored beat, in its one read transaction.
    beat = kiosks.heartbeat(s.new_uow(), s.ctx, kiosks.HeartbeatCommand(kiosk_id, (), 100, 0, False, "1.0"))
    assert beat.batch == batch
    assert beat.registered == (kiosk_id != "K-nobody")
    return batch


def _second_batch(s: Seeded, code: str) -> batches.BatchView:
    """Another open batch at another hotel, its evaluation starting on a fraction of a second."""
    start = s.ctx.clock() + dt.timedelta(days=1, microseconds=250)
    spec = batches.BatchSpec(code, "2025年第二批评标", hotel_code="HTL2", hotel_name="友谊宾馆", evaluation_start=start)
    return batches.create_batch(s.new_uow(), s.ctx, spec)


def test_a_kiosk_is_told_its_own_batch_as_the_organiser_sees_it(seeded: Seeded) -> None:
    s = seeded
    expected = batches.get_batch(s.new_uow(), s.batch_code)
    assert _context(s, "K1") == expected
    # A kiosk with no batch of its own serves the only open one.
    assert _context(s, "K-free") == expected
    assert _context(s, "K-nobody") is None


def test_two_open_batches_leave_a_kiosk_without_one_of_its_own_with_none(seeded: Seeded) -> None:
    s = seeded
    second = _second_batch(s, "B2025-2")
    assert _context(s, "K-free") is None
    assert _context(s, "K1") == batches.get_batch(s.new_uow(), s.batch_code)
    batches.close_batch(s.new_uow(), s.ctx, s.batch_code)
    # Its own batch closed: K1 has none (it does not move to another); the free kiosk has the one left,
    # its times to the microsecond and its flags as stored.
    assert _context(s, "K1") is None
    free = _context(s, "K-free")
    assert free == second
    assert free is not None
    assert free.evaluation_start.microsecond == 250
    assert free.evaluation_start.tzinfo is dt.UTC
    assert free.allow_id_only is False
