"""Fakes around the arm's dispenser: a band reader that sees what the simulator's arm holds, and a platform."""

from __future__ import annotations

import threading

from robot_arm.models import BindDecision


class FakeBandReader:
    """Stands in for the PC/SC wristband reader: the simulator's reader-station hooks put the band on it.

    `read_uid(timeout)` waits (on a condition, with a deadline) for a band, like the real reader's
    read_uid; `fail_next` makes the next read fail as a damaged band would.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._uid: str | None = None
        self.fail_next = 0
        self.reads: list[str] = []

    def band_arrived(self, uid: str) -> None:
        with self._cond:
            self._uid = uid
            self._cond.notify_all()

    def band_left(self) -> None:
        with self._cond:
            self._uid = None

    @property
    def present(self) -> str | None:
        with self._cond:
            return self._uid

    def read_uid(self, timeout: float) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: self._uid is not None, timeout):
                raise TimeoutError(f"no band on the reader within {timeout} s")
            if self.fail_next:
                self.fail_next -= 1
                raise OSError("card unresponsive (6300)")
            assert self._uid is not None
            self.reads.append(self._uid)
            return self._uid


class FakePlatform:
    """Binds each UID at most once, like the platform's unique constraint; can refuse or fail on demand."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}
        self.bind_calls: list[str] = []
        self.annulled: set[str] = set()
        self.refuse_next: str | None = None
        self.fail_next: Exception | None = None
        self.fail_after_binding = False

    def bind(self, uid: str) -> BindDecision:
        self.bind_calls.append(uid)
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            if self.fail_after_binding:
                # The worst case: the platform committed, then the answer was lost.
                self.bound[uid] = f"ci-{len(self.bound) + 1}"
            raise err
        if self.refuse_next is not None:
            reason, self.refuse_next = self.refuse_next, None
            return BindDecision.refused(reason)
        if uid in self.bound:
            return BindDecision.refused("BAND_NOT_AVAILABLE")
        self.bound[uid] = f"ci-{len(self.bound) + 1}"
        return BindDecision.accepted(self.bound[uid])

    def annul(self, uid: str) -> None:
        if uid in self.bound:
            self.annulled.add(uid)
