"""A headless home for the check-in flow: one thread that runs its callbacks and timers.

The Tk UI runs the flow on the Tk thread (after()); the scenario runner and other headless uses run
it here instead. Blocking device and platform calls go to a small thread pool and their results are
posted back, so the flow itself is only ever touched from this one thread.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
_LOG = logging.getLogger(__name__)


class _Timer:
    """A pending call_later; cancel() makes it a no-op."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FlowThread:
    """Scheduler and Worker ports backed by one dedicated thread and a job pool."""

    def __init__(self, name: str = "checkin-flow", job_threads: int = 4) -> None:
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._jobs = ThreadPoolExecutor(max_workers=job_threads, thread_name_prefix=f"{name}-job")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        self._thread.start()

    # ---- Scheduler ---------------------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Run callback on the flow thread after `delay` seconds (monotonic clock)."""
        timer = _Timer(callback)
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), timer))
        self._inbox.put(_noop)  # wake the loop so it recomputes its wait
        return timer

    def now(self) -> dt.datetime:
        """Timezone-aware wall-clock time."""
        return dt.datetime.now(dt.UTC)

    # ---- Worker ------------------------------------------------------------------------------------

    def submit(self, job: Callable[[], T], done: Callable[[T | Exception], None]) -> None:
        """Run job on the pool; post done(result or exception) back to the flow thread."""

        def run() -> None:
            try:
                result: T | Exception = job()
            except Exception as err:  # every failure is handed to the flow as a value
                result = err
            self.post(lambda: done(result))

        self._jobs.submit(run)

    def post(self, callback: Callable[[], None]) -> None:
        """Run callback on the flow thread soon; safe from any thread."""
        self._inbox.put(callback)

    # ---- running -----------------------------------------------------------------------------------

    def call_and_wait(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run fn on the flow thread and return its result (for set-up code on other threads)."""
        box: list[T] = []
        errors: list[BaseException] = []
        finished = threading.Event()

        def call() -> None:
            try:
                box.append(fn())
            except BaseException as err:  # re-raised in the caller's thread
                errors.append(err)
            finally:
                finished.set()

        self.post(call)
        if not finished.wait(timeout):
            raise TimeoutError(f"the flow thread did not run the call within {timeout} s")
        if errors:
            raise errors[0]
        return box[0]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the job pool; pending timers are dropped."""
        self._stopping = True
        self._inbox.put(None)
        self._thread.join(timeout)
        self._jobs.shutdown(wait=False, cancel_futures=True)

    def _next_due(self) -> float | None:
        with self._lock:
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            return self._timers[0][0] if self._timers else None

    def _pop_due(self) -> list[_Timer]:
        now = time.monotonic()
        due: list[_Timer] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        return [t for t in due if not t.cancelled]

    def _run(self) -> None:
        while not self._stopping:
            for timer in self._pop_due():
                self._safely(timer.callback)
            deadline = self._next_due()
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if item is None:
                break
            self._safely(item)

    @staticmethod
    def _safely(callback: Callable[[], None]) -> None:
        # One bad callback must not kill the kiosk's only flow thread.
        try:
            callback()
        except Exception:
            _LOG.exception("flow callback failed")


def _noop() -> None:
    """Wake-up marker for the loop."""
