"""What every service needs besides the unit of work: keys, rules, the face verifier, a clock, the bell."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from personal_data.crypto import DataKey
    from platform_server.config import RulesSection
    from platform_server.face.api import FaceVerifier, LivenessChecker


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class EventBell:
    """Wakes event streams in this process when a transaction that added events has committed.

    Other replicas' events are found by the streams' periodic poll; this only makes local ones instant.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        """A counter that changes on every ring."""
        with self._condition:
            return self._generation

    def ring(self) -> None:
        """Wake every waiter."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen_generation: int, timeout: float) -> int:
        """Wait until rung after `seen_generation`, or timeout; return the current generation."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen_generation, timeout=timeout)
            return self._generation


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Dependencies of the services, built once by bootstrap (tests build their own with fakes)."""

    data_key: DataKey
    rules: RulesSection
    face_verifier: FaceVerifier | None
    clock: Callable[[], dt.datetime] = utc_now
    bell: EventBell = field(default_factory=EventBell)
    # Checks the kiosk's liveness challenge frames; None trusts the kiosk's flag (tests with fakes only:
    # bootstrap builds one whenever it builds the dlib verifier).
    liveness_checker: LivenessChecker | None = None
    # False: an identify commits without waiting for PostgreSQL's disk ([database] identify_synchronous_commit).
    identify_synchronous_commit: bool = False
