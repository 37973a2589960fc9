"""device_kit.clock: the manual clock moves only when told, and wakes sleepers and condition waits then."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from device_kit.clock import Clock, ManualClock, SystemClock

if TYPE_CHECKING:
    from collections.abc import Callable

JOIN_S = 10.0


def _thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_both_clocks_are_clocks() -> None:
    clocks: list[Clock] = [SystemClock(), ManualClock()]
    assert all(c.monotonic() >= 0.0 for c in clocks)


def test_a_manual_sleep_ends_only_when_the_clock_has_been_advanced_far_enough() -> None:
    clock = ManualClock(start=100.0)
    done = threading.Event()

    def sleeper() -> None:
        clock.sleep(5.0)
        done.set()

    thread = _thread(sleeper)
    clock.wait_for_sleepers(1)
    clock.advance(4.9)
    clock.wait_for_sleepers(1)  # still asleep: 4.9 of its 5 s have passed
    assert not done.is_set()
    clock.advance(0.1)
    thread.join(JOIN_S)
    assert done.is_set()
    assert clock.monotonic() == pytest.approx(105.0)
    assert clock.sleepers == 0


def test_a_manual_sleep_returns_true_when_stopped() -> None:
    clock = ManualClock()
    stop = threading.Event()
    results: list[bool] = []
    thread = _thread(lambda: results.append(clock.sleep(60.0, stop=stop)))
    clock.wait_for_sleepers(1)
    stop.set()
    thread.join(JOIN_S)
    assert results == [True]
    assert clock.monotonic() == 0.0


def test_a_condition_wait_returns_on_notify_or_when_its_timeout_has_passed_on_the_clock() -> None:
    clock = ManualClock()
    condition = threading.Condition()
    woke: list[float] = []

    def waiter() -> None:
        with condition:
            clock.wait(condition, 2.0)
            woke.append(clock.monotonic())

    thread = _thread(waiter)
    clock.wait_for_sleepers(1)
    clock.advance(2.0)
    thread.join(JOIN_S)
    assert woke == [2.0]

    thread = _thread(waiter)
    clock.wait_for_sleepers(1)
    with condition:
        condition.notify_all()  # a state change wakes it before its time, as with Condition.wait
    thread.join(JOIN_S)
    assert woke == [2.0, 2.0]


def test_the_system_clock_sleeps_and_stops() -> None:
    clock = SystemClock()
    stop = threading.Event()
    stop.set()
    assert clock.sleep(60.0, stop=stop) is True
    before = clock.monotonic()
    assert clock.sleep(0.0) is False
    assert clock.monotonic() >= before


def test_bad_use_is_refused() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1.0)
    with pytest.raises(TimeoutError, match="0 thread"):
        clock.wait_for_sleepers(1, timeout=0.01)
