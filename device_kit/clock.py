"""The simulators' clock: wall time in use, a hand-driven clock in tests.

A simulator that takes time (an arm's motion, a radio retry, a slow printer line, a slow reader
reply) reads and waits through a `Clock` given to its constructor, `SystemClock` by default. A test
gives it a `ManualClock` instead and moves time on itself: it waits until the simulator is waiting
on the clock (`wait_for_sleepers`), checks what must not have happened yet, then `advance`s. No test
then waits out a simulated delay on the wall clock, and none depends on how loaded the machine is.
"""

from __future__ import annotations

import threading
import time
from typing import Final, Protocol

#: How often (real seconds) a ManualClock sleep with a stop event looks at that event: an Event
#: cannot wake another condition, and only a simulator's stop() sets it.
STOP_CHECK_S: Final = 0.05


class Clock(Protocol):
    """Monotonic seconds, and the two ways a simulator lets time pass."""

    def monotonic(self) -> float:
        """Seconds on this clock; only differences mean anything."""
        ...

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """Let `seconds` pass; return True at once if `stop` is (or becomes) set, else False."""
        ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """`condition.wait` with a timeout in this clock's seconds (None: until notified).

        The caller holds the condition's lock and checks its state again afterwards: this returns
        when notified, or at the latest when `timeout` has passed on this clock.
        """
        ...


class SystemClock:
    """The wall clock (time.monotonic): what simulators use outside tests."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """time.sleep, or Event.wait when there is a stop event."""
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """condition.wait(timeout)."""
        condition.wait(None if timeout is None else max(0.0, timeout))


class ManualClock:
    """A clock that moves only when a test calls advance(); thread-safe.

    `sleepers` counts the threads waiting for a time this clock has not reached yet, so a test knows
    when the simulator has reached its delay (`wait_for_sleepers`) before it moves time on; a thread
    whose time has come no longer counts, even before it has woken.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # time moved, or a sleeper came or went
        self._deadlines: list[float] = []  # of the threads waiting on this clock
        self._conditions: dict[threading.Condition, int] = {}  # simulator conditions waited on with a timeout

    @property
    def sleepers(self) -> int:
        """Threads now waiting for a time this clock has not reached (sleep, or wait with a timeout)."""
        with self._lock:
            return self._not_due()

    def _not_due(self) -> int:
        return sum(1 for deadline in self._deadlines if deadline > self._now)

    def monotonic(self) -> float:
        """The time the test has advanced this clock to."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds` and wake every thread waiting on this clock to look again."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; advance({seconds}) is negative")
        with self._lock:
            self._now += seconds
            self._changed.notify_all()
            conditions = list(self._conditions)
        for condition in conditions:
            with condition:
                condition.notify_all()

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block (real time) until at least `count` threads wait on this clock; TimeoutError after `timeout` s."""
        with self._lock:
            if not self._changed.wait_for(lambda: self._not_due() >= count, timeout):
                raise TimeoutError(f"{self._not_due()} thread(s) waiting on the clock after {timeout} s, not {count}")

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """Return when the clock has been advanced `seconds` past now, or at once when `stop` is set."""
        with self._lock:
            deadline = self._now + seconds
            self._deadlines.append(deadline)
            self._changed.notify_all()
            try:
                while self._now < deadline:
                    if stop is not None and stop.is_set():
                        return True
                    self._changed.wait(STOP_CHECK_S if stop is not None else None)
            finally:
                self._deadlines.remove(deadline)
                self._changed.notify_all()
        return stop is not None and stop.is_set()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (its lock held) until notified or until advance() passes `timeout`."""
        if timeout is None:
            condition.wait()
            return
        # Registered before the condition's lock is released by wait(): an advance() after this
        # point needs that lock to notify, so it cannot slip in between and be missed.
        with self._lock:
            deadline = self._now + timeout
            if self._now >= deadline:
                return
            self._deadlines.append(deadline)
            self._conditions[condition] = self._conditions.get(condition, 0) + 1
            self._changed.notify_all()
        try:
            condition.wait()
        finally:
            with self._lock:
                self._deadlines.remove(deadline)
                left = self._conditions[condition] - 1
                if left:
                    self._conditions[condition] = left
                else:
                    del self._conditions[condition]
                self._changed.notify_all()
