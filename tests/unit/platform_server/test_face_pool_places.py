"""The face pool's places: a pair of side-by-side calls takes two places together or none."""

from __future__ import annotations

from platform_server.face.pool import _Slots


def test_a_pair_takes_two_places_or_none() -> None:
    slots = _Slots(3)
    assert slots.take(admitted=False, places=2)
    assert slots.free == 1
    assert not slots.take(admitted=False, places=2)  # one place left: the pair does not start half
    assert slots.free == 1
    assert slots.take(admitted=False)
    assert slots.free == 0
    slots.give_back(2)
    slots.give_back()
    assert slots.free == 3
