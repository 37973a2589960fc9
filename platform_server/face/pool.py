"""Face verification in worker processes: every core verifies, and overload gets a clear answer.

dlib holds the GIL for 70-130 ms per face, so threads in one process verify one face at a time.
`ProcessFaceVerifier` is a `FaceVerifier` that runs each call in one of N processes, each holding its
own verifier built once by a picklable factory (bootstrap passes the dlib one). Calls beyond the busy
workers wait in a bounded queue; one more is refused at once with `OverloadedError` (RESOURCE_EXHAUSTED
with a retry-after: a turn in a line of refused callers, so they come back one after another), so a
burst never builds a backlog whose answers arrive after the kiosk gave up. Half the queue is kept for
calls sent again after a busy answer, so those that came back are served before newer ones.

It wraps the verifier interface (face/api.py) generically: each call names the method and its
arguments, so the verifier behind it may grow methods without this module knowing their meaning.
The platform's liveness check (face/liveness_check.py: detection, landmarks and three descriptors
per Identify, plus the compared capture's, which the comparison computes anyway) runs in the same
workers (`PooledLivenessChecker`), under the same slots, so the serving process does no dlib work
at all and never holds the GIL for it; an Identify splits the check and the comparison over two
workers (`check_liveness_and_verify`), whose two places the identify takes (`admission`) before it
reads the expert's reference from the database, so an identify refused under load reads no more.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from platform_server import log_masking
from platform_server.errors import OverloadedError, TransientError
from platform_server.face.api import FaceImageError, FaceImageProblem
from platform_server.face.liveness_decision import decide

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnProcess

    from platform_server.face.api import (
        ChallengeFrame,
        FaceVerdict,
        FaceVerifier,
        LivenessChecker,
        LivenessEvidence,
        LivenessVerdict,
    )
    from platform_server.face.liveness_decision import EndsPart, MotionPart

log = logging.getLogger(__name__)

# Advice in the overload answer before any call has been timed; afterwards a turn in the line of
# refused callers (`retry_after_s`), so refused kiosks do not come back (with their images) long
# before a place can be free, nor all at once. The line is never longer than MAX_RETRY_AFTER_S, well
# inside the kiosk's patience for busy answers ([platform] busy_wait_s, 60 s).
RETRY_AFTER_S = 0.5
MIN_RETRY_AFTER_S = 0.2
MAX_RETRY_AFTER_S = 15.0
# How long the verification that follows a passed liveness check may wait for a slot: it was admitted
# with the check, and refusing it would make the kiosk send everything again and the check run twice.
ADMITTED_WAIT_S = 20.0

# How long a stopping pool waits for the calls in flight before it stops its workers anyway.
CLOSE_WAIT_S = 30.0
# How long after a failed start a dead worker's replacement is started again.
RESTART_DELAY_S = 5.0

# The worker process's own objects, built once by _init_worker: "verifier", and "liveness" when asked.
_targets: dict[str, Any] = {}


def _init_worker(
    factory: Callable[[], FaceVerifier | None],
    log_level: str | None,
    log_file: str | None,
    liveness_factory: Callable[[], LivenessChecker | None] | None = None,
) -> None:
    """Log like the server (its stderr and file, masked), then build this process's verifier (and checker) once."""
    if log_level is not None:
        log_masking.configure_logging(log_level, log_file)
    _targets["verifier"] = factory()
    if liveness_factory is not None:
        _targets["liveness"] = liveness_factory()


def worker_verifier() -> object:
    """In a face worker, its verifier (built before its liveness checker, which may share it); else None."""
    return _targets.get("verifier")


def _call(method: str, args: tuple[Any, ...], target: str = "verifier") -> tuple[str, Any]:
    """Run one method of a worker object; an image problem comes back as data, not as an exception.

    FaceImageError carries two constructor arguments, which exceptions do not survive pickling with.
    """
    try:
        return "ok", getattr(_targets[target], method)(*args)
    except FaceImageError as err:
        return "image", (err.problem.value, str(err))


def _compare_and_ends(
    reference_encoding: bytes, captures: tuple[bytes, ...], last: ChallengeFrame | None
) -> tuple[tuple[str, Any], EndsPart]:
    """The comparison, then the liveness check's ends part with the compared capture's descriptor (one task).

    The comparison's result comes back as `_call`'s does; its descriptor of the capture it encoded
    first is handed to the ends part, so that capture is described once for both.
    """
    compared = None
    try:
        verdict, compared = _targets["verifier"].verify_and_describe(reference_encoding, captures)
        result: tuple[str, Any] = ("ok", verdict)
    except FaceImageError as err:
        result = ("image", (err.problem.value, str(err)))
    return result, _targets["liveness"].ends_part(last, captures, compared)


def _worker_main(
    connection: Connection,
    factory: Callable[[], FaceVerifier | None],
    log_level: str | None,
    log_file: str | None,
    liveness_factory: Callable[[], LivenessChecker | None] | None,
) -> None:
    """A face worker: build its objects once, say so, then run each task the pipe brings until told to stop.

    A task is (function, args) and its answer ("ok", result) or ("raised", exception). The serving
    process stops its workers itself (`None`, or its end of the pipe closing when it dies), so Ctrl-C
    in a terminal, which reaches the whole process group, does not kill a worker under a call.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _init_worker(factory, log_level, log_file, liveness_factory)
    except BaseException as err:
        connection.send(("failed", f"{type(err).__name__}: {err}"))
        raise
    connection.send(("ready", os.getpid()))
    while True:
        try:
            task = connection.recv()
        except EOFError:
            return  # the serving process is gone
        if task is None:
            return
        function, args = task
        try:
            answer: tuple[str, Any] = ("ok", function(*args))
        except Exception as err:  # any failure goes back to the caller, as a call's would
            answer = ("raised", err)
        try:
            connection.send(answer)
        except Exception as err:  # an answer that does not pickle: its words do
            connection.send(("raised", RuntimeError(f"{type(err).__name__}: {err}")))


class _WorkerGoneError(Exception):
    """The worker process ended (killed, crashed): its pipe closed under a task."""


class _Worker:
    """One worker process and this process's end of its pipe: a task is sent and its answer read on it."""

    def __init__(self, initargs: tuple[Any, ...]) -> None:
        """Start the process (spawn: the server has gRPC threads, which a fork would copy in an unknown state)."""
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process: SpawnProcess = context.Process(
            target=_worker_main, args=(child, *initargs), name="face-worker", daemon=True
        )
        self.process.start()
        child.close()  # only the worker holds that end now: its death reads as EOF here

    def wait_ready(self) -> None:
        """Wait for its objects to be built (the face models load in seconds); RuntimeError if it could not."""
        try:
            kind, value = self.connection.recv()
        except (EOFError, OSError) as err:
            raise RuntimeError(f"a face worker ended while starting (exit code {self.process.exitcode})") from err
        if kind != "ready":
            raise RuntimeError(f"a face worker could not start: {value}")

    def send(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Hand it a task; _WorkerGoneError if the process has ended."""
        try:
            self.connection.send((function, args))
        except (EOFError, OSError) as err:
            raise _WorkerGoneError from err

    def answer(self) -> tuple[str, Any]:
        """The answer to the task sent; _WorkerGoneError if the process ended before giving it."""
        try:
            answer: tuple[str, Any] = self.connection.recv()
        except (EOFError, OSError) as err:
            raise _WorkerGoneError from err
        return answer

    def stop(self, timeout: float) -> None:
        """Ask it to end, then make sure it has."""
        with contextlib.suppress(OSError, EOFError):
            self.connection.send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.connection.close()


@dataclass(eq=False)
class _Waiter:
    """A call waiting for `count` idle workers; they are handed to it under the line's lock."""

    count: int
    handed: threading.Event = field(default_factory=threading.Event)
    workers: list[_Worker] = field(default_factory=list)


class _IdleWorkers:
    """The idle workers and the line of places waiting for them, first come first served.

    A call's tasks join the line together, one place each (`join`), so a call holding some of its
    workers waits only for calls that came before it; each waiter is woken alone, when a worker is
    handed to it. `take` (several workers for one place) is for stopping the pool.
    """

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._line: collections.deque[_Waiter] = collections.deque()
        self._lock = threading.Lock()

    def take(self, count: int, timeout: float | None = None) -> list[_Worker] | None:
        """`count` idle workers, waiting in line for them; None if `timeout` passed first."""
        with self._lock:
            if not self._line and len(self._idle) >= count:
                return [self._idle.pop() for _ in range(count)]
            waiter = _Waiter(count)
            self._line.append(waiter)
        if waiter.handed.wait(timeout):
            return waiter.workers
        with self._lock:
            if waiter.handed.is_set():  # handed just as the wait ended
                return waiter.workers
            self._line.remove(waiter)
            self._hand_out()  # a waiter behind it may now be served
        return None

    def join(self, count: int) -> list[_Waiter]:
        """`count` places in the line, one worker each, side by side: a call's tasks are served before any later call's.

        A call that holds some of its workers while waiting for the rest waits only for workers held
        by calls that came before it, whose places were all served and whose tasks end by themselves,
        so calls never wait on each other in a circle, and no worker stands idle while tasks wait.
        """
        with self._lock:
            waiters = [_Waiter(1) for _ in range(count)]
            self._line.extend(waiters)
            self._hand_out()
        return waiters

    def give_back(self, workers: list[_Worker]) -> None:
        """Workers idle again: to the calls in line first."""
        with self._lock:
            self._idle.extend(workers)
            self._hand_out()

    def _hand_out(self) -> None:
        while self._line and len(self._idle) >= self._line[0].count:
            waiter = self._line.popleft()
            waiter.workers = [self._idle.pop() for _ in range(waiter.count)]
            waiter.handed.set()


def _combine(motion: MotionPart, ends: EndsPart) -> LivenessVerdict:
    """The liveness verdict from the two workers' parts, logged as the in-process check logs it."""
    verdict = decide(motion, ends)
    if not verdict.passed:
        log.info("liveness refused: %s", verdict.reason)
    return verdict


class _Slots:
    """The pool's places (busy workers plus queue); calls already admitted wait for one before new calls get one.

    `kept` of the places are for calls sent again after a busy answer: a call sent the first time
    gets a place only while more than those are free.
    """

    def __init__(self, places: int, kept: int = 0) -> None:
        self._free = places
        self._kept = kept
        self._waiting = 0  # admitted calls waiting for a place
        self._changed = threading.Condition()

    def take(self, *, admitted: bool, places: int = 1, sent_again: bool = False) -> bool:
        """Take a place: at once or not at all for a new call; waiting (bounded) for an admitted one.

        `places` > 1 (new calls only): all of them at once or none, for calls that run side by side.
        `sent_again`: the caller was answered busy before, and may take the places kept for that.
        """
        with self._changed:
            if not admitted:
                if self._room(sent_again=sent_again) < places:
                    return False
                self._free -= places
                return True
            self._waiting += 1
            try:
                if not self._changed.wait_for(lambda: self._free > 0, ADMITTED_WAIT_S):
                    return False
            finally:
                self._waiting -= 1
            self._free -= 1
            return True

    @property
    def free(self) -> int:
        """Places free now."""
        return self._free

    def room(self, *, sent_again: bool = False) -> int:
        """Places a new call could take now (calls already admitted and waiting come first)."""
        with self._changed:
            return self._room(sent_again=sent_again)

    def _room(self, *, sent_again: bool) -> int:
        return self._free - self._waiting - (0 if sent_again else self._kept)

    def give_back(self, places: int = 1) -> None:
        """Free places; an admitted call waiting for one gets it first."""
        with self._changed:
            self._free += places
            self._changed.notify(places)


def worker_count(configured: int) -> int:
    """The number of processes for `[face] processes` (-1: one per core available to this process)."""
    if configured >= 1:
        return configured
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class ProcessFaceVerifier:
    """A FaceVerifier whose calls run in a pool of worker processes with a bounded queue."""

    def __init__(
        self,
        factory: Callable[[], FaceVerifier | None],
        *,
        threshold: float,
        processes: int,
        queue: int,
        max_image_bytes: int | None = None,
        log_level: str | None = None,
        log_file: str | None = None,
        liveness_factory: Callable[[], LivenessChecker | None] | None = None,
    ) -> None:
        """Start `processes` workers, each building its verifier with `factory` (picklable).

        With `log_level` the workers log as the server does (the verifier's timings reach its log).
        With `liveness_factory` (picklable) each worker builds a liveness checker too, for `check_liveness`.
        """
        self._factory = factory
        self._liveness_factory = liveness_factory
        self._log = (log_level, log_file)
        self._threshold = threshold
        self.processes = processes
        self.max_image_bytes = max_image_bytes
        self._places = processes + queue
        # Half the queue is kept for identifies sent again after a busy answer. Under overload new
        # identifies then find the queue full and join the line of refused callers (`retry_after_s`),
        # and those come back to places kept for them: the experts are served about in the order they
        # were first turned away, instead of one turned away again and again by identifies that came
        # later (measured in docs/performance.md). The workers never wait for them: a new call still
        # gets a place while more than the kept half is free.
        self.kept_for_sent_again = queue // 2
        self._slots = _Slots(self._places, self.kept_for_sent_again)
        self._mean_call_s: float | None = None  # moving average of admitted calls' time
        self._line_end = 0.0  # monotonic time the last refused caller was told to come back at
        self._lock = threading.Lock()
        # Per request thread: .next_admitted, its next call waits for a slot instead of being refused;
        # .places_taken, `admission` holds the places of its next call (2: side by side; 1: a verify).
        self._this_thread = threading.local()
        # Each worker on a pipe of its own, driven by the calling thread: a task is pickled and sent
        # by the request thread itself and its answer read there, with no executor's threads between
        # (they cost the serving process about 0.35 ms of CPU a call; bench/face_pool_calls.py).
        self._initargs = (self._factory, *self._log, self._liveness_factory)
        self._idle = _IdleWorkers()
        self._workers: set[_Worker] = set()  # every worker process started and not yet stopped
        self._closing = threading.Event()
        # Start every worker now (and wait for its models), not on the first expert's face.
        started = [_Worker(self._initargs) for _ in range(processes)]
        self._workers.update(started)
        try:
            for worker in started:
                worker.wait_ready()
        except BaseException:
            for worker in started:
                worker.stop(timeout=5.0)
            raise
        self._idle.give_back(started)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for tests and figures)."""
        return sorted(w.process.pid for w in list(self._workers) if w.process.pid is not None)

    def _run(self, tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        """The tasks side by side, each in a worker of its own (in turn on one when fewer run); results in order.

        Each worker goes back to the line as soon as its answer is read, so a worker that ends its
        half of a call first starts the next call's task while the other half still runs. Called in
        places the caller holds (`_Slots`), so the wait for workers is the queue's.

        Raises:
            TransientError: a worker process ended under a task (it is replaced; the other workers'
                answers are read first, so none goes back idle with an answer unread).

        """
        answers: list[tuple[str, Any] | None] = [None] * len(tasks)
        gone: list[_Worker] = []
        if len(tasks) > self.processes:  # fewer workers than tasks: in turn, on one
            self._in_turn(tasks, answers, gone)
        else:
            self._side_by_side(tasks, answers, gone)
        for worker in gone:
            self._replace(worker)
        if gone:
            raise TransientError("a face verification worker stopped; try again")
        results = []
        for answer in answers:
            assert answer is not None  # every task answered when no worker ended
            kind, value = answer
            if kind == "raised":
                raise value
            results.append(value)
        return results

    def _in_turn(
        self, tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]], answers: list[Any], gone: list[_Worker]
    ) -> None:
        """Every task on one worker, one after the other (a pool of fewer workers than the call's tasks)."""
        [waiter] = self._idle.join(1)
        waiter.handed.wait()
        worker = waiter.workers[0]
        try:
            for index, (function, args) in enumerate(tasks):
                worker.send(function, args)
                answers[index] = worker.answer()
        except _WorkerGoneError:
            gone.append(worker)
            return
        self._idle.give_back([worker])

    def _side_by_side(
        self, tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]], answers: list[Any], gone: list[_Worker]
    ) -> None:
        """Each task on a worker of its own; each worker back in the line as soon as its answer is read."""
        pending: dict[Any, tuple[_Worker, int]] = {}  # connection -> its worker and task
        for index, waiter in enumerate(self._idle.join(len(tasks))):
            waiter.handed.wait()
            worker = waiter.workers[0]
            try:
                worker.send(*tasks[index])
                pending[worker.connection] = (worker, index)
            except _WorkerGoneError:
                gone.append(worker)
        while pending:
            for connection in multiprocessing.connection.wait(list(pending)):
                worker, index = pending.pop(connection)
                try:
                    answers[index] = worker.answer()
                except _WorkerGoneError:
                    gone.append(worker)
                    continue
                self._idle.give_back([worker])

    def _replace(self, dead: _Worker) -> None:
        """Start a worker in place of one that ended, on a thread: calls go on meanwhile on the others."""
        log.error("a face verification worker ended (exit code %s); starting another", dead.process.exitcode)
        self._workers.discard(dead)
        dead.stop(timeout=1.0)

        def start() -> None:
            while not self._closing.is_set():
                try:
                    worker = _Worker(self._initargs)
                except OSError:
                    log.exception("a face worker could not be started; trying again in %.0f s", RESTART_DELAY_S)
                    self._closing.wait(RESTART_DELAY_S)
                    continue
                self._workers.add(worker)
                try:
                    worker.wait_ready()
                except RuntimeError:
                    self._workers.discard(worker)
                    worker.stop(timeout=1.0)
                    log.exception("trying again in %.0f s", RESTART_DELAY_S)
                    self._closing.wait(RESTART_DELAY_S)
                    continue
                self._idle.give_back([worker])
                return

        threading.Thread(target=start, name="face-worker-restart", daemon=True).start()

    @property
    def threshold(self) -> float:
        """Distance at or below which two faces are taken to be the same person."""
        return self._threshold

    def encode_reference(self, image: bytes) -> bytes:
        """Encode a reference photo in a worker."""
        result: bytes = self.call("encode_reference", image)
        return result

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        """Compare captures with a reference in a worker."""
        result: FaceVerdict = self.call("verify", reference_encoding, tuple(captures))
        return result

    def check_liveness(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        """Run the platform's liveness check in a worker (built with `liveness_factory`)."""
        if self._liveness_factory is None:
            raise RuntimeError("face workers were started without a liveness checker")
        result: LivenessVerdict = self.call_on("liveness", "check", evidence, tuple(captures))
        # The identify's verification comes next on this thread: it waits for a slot instead of being
        # refused, so a check already done is not thrown away under load.
        self._this_thread.next_admitted = result.passed
        return result

    def check_liveness_and_verify(
        self, evidence: LivenessEvidence, captures: Sequence[bytes], reference_encoding: bytes
    ) -> tuple[LivenessVerdict, FaceVerdict | FaceImageError]:
        """One identify's face work split over two workers: about half the check's time, not the sum.

        One worker measures every challenge frame, judges the asked action and describes the first and
        the peak frame (`motion_part`: it gets the evidence only); the other compares the captures with
        the reference and describes the last challenge frame (`_compare_and_ends`: it gets the reference,
        the captures and the last frame). The comparison's descriptor of the capture it encoded first is
        the capture the liveness check compares the challenge's face with, so no capture is described
        twice; this process combines the parts (liveness_check.decide), with the same limits and
        reasons as `DlibLivenessChecker.check`, which takes the same compared capture.

        Two places are taken together or not at all (OverloadedError), so under load neither half runs
        without the other (after `admission` on this thread: the two it took). The comparison's image
        problem comes back as a value: it matters only if the check passed (a face not shown live is
        not compared, whatever its pictures).

        Raises:
            OverloadedError: fewer than two places free (nothing was started).
            TransientError: a worker process died during the calls (the pool is rebuilt).

        """
        if self._liveness_factory is None:
            raise RuntimeError("face workers were started without a liveness checker")
        self._this_thread.next_admitted = False
        if getattr(self._this_thread, "places_taken", 0) == 2:
            self._this_thread.places_taken = 0  # this call runs in the places `admission` took
        elif not self._slots.take(admitted=False, places=2):
            raise OverloadedError("人脸比对繁忙 / face verification is busy", self.retry_after_s(2))
        try:
            started = time.monotonic()
            last = evidence.frames[-1] if evidence.frames else None
            (_, motion), ((kind, value), ends) = self._run(
                [
                    (_call, ("motion_part", (evidence,), "liveness")),
                    (_compare_and_ends, (reference_encoding, tuple(captures), last)),
                ]
            )
            took = time.monotonic() - started
            mean = self._mean_call_s
            self._mean_call_s = took if mean is None else 0.9 * mean + 0.1 * took
        finally:
            self._slots.give_back(2)
        verdict = _combine(motion, ends)
        if kind == "image":
            problem, message = value
            return verdict, FaceImageError(FaceImageProblem(problem), message)
        return verdict, value

    @contextlib.contextmanager
    def admission(self, places: int = 2, *, sent_again: bool = False) -> Iterator[None]:
        """The places of this thread's next face call, taken now or refused now.

        Two for a `check_liveness_and_verify` (the check and the comparison side by side), one for a
        `verify` (a platform that leaves the liveness check to the kiosk, `[face] liveness = kiosk`).
        `sent_again`: the kiosk sends the call again after a busy answer; it may take the places kept
        for that (`kept_for_sent_again`).
        An identify takes them before it reads the expert's reference from the database, so one refused
        here has cost the database one read and no write (on a cluster, the database every replica
        shares; under load most are refused by `check_room` before any read). Places
        the block does not use (the identify ended before its face work) are given back when it ends.

        Raises:
            OverloadedError: fewer than `places` places free (nothing was taken).

        """
        if not self._slots.take(admitted=False, places=places, sent_again=sent_again):
            raise OverloadedError("人脸比对繁忙 / face verification is busy", self.retry_after_s(places))
        self._this_thread.places_taken = places
        try:
            yield
        finally:
            left = getattr(self._this_thread, "places_taken", 0)
            if left:  # not used by a call: give them back
                self._this_thread.places_taken = 0
                self._slots.give_back(left)

    def check_room(self, places: int = 2, *, sent_again: bool = False) -> None:
        """Refuse now, before anything else is done for the call, when `places` could not be taken.

        A hint, not a reservation (another call may take the places first; `admission` decides):
        an identify asks before it touches the database, so under load most refused identifies cost
        the database nothing at all.

        Raises:
            OverloadedError: fewer than `places` places free for a new call.

        """
        if self._slots.room(sent_again=sent_again) < places:
            raise OverloadedError("人脸比对繁忙 / face verification is busy", self.retry_after_s(places))

    def call(self, method: str, *args: Any) -> Any:
        """Run `method(*args)` on a worker's verifier; see `call_on`."""
        return self.call_on("verifier", method, *args)

    def call_on(self, target: str, method: str, *args: Any) -> Any:
        """Run `method(*args)` on a worker's `target` object; OverloadedError when every slot is taken.

        Raises:
            OverloadedError: all workers busy and the queue full (nothing was started).
            TransientError: a worker process died during the call (the pool is rebuilt).
            FaceImageError: the verifier refused an image.

        """
        admitted = getattr(self._this_thread, "next_admitted", False) and target == "verifier"
        self._this_thread.next_admitted = False
        if target == "verifier" and getattr(self._this_thread, "places_taken", 0) == 1:
            self._this_thread.places_taken = 0  # this call runs in the place `admission` took
        elif not self._slots.take(admitted=admitted):
            raise OverloadedError("人脸比对繁忙 / face verification is busy", self.retry_after_s())
        try:
            started = time.monotonic()
            [(kind, value)] = self._run([(_call, (method, args, target))])
            took = time.monotonic() - started
            mean = self._mean_call_s
            self._mean_call_s = took if mean is None else 0.9 * mean + 0.1 * took
        finally:
            self._slots.give_back()
        if kind == "image":
            problem, message = value
            raise FaceImageError(FaceImageProblem(problem), message)
        return value

    @property
    def free_places(self) -> int:
        """Calls that could start or queue now without a refusal (for tests and figures)."""
        return self._slots.free

    def retry_after_s(self, places: int = 1) -> float:
        """Seconds a refused caller should wait: its turn in a line of refused callers, about `places` apart.

        A call's mean time includes its wait in the queue; with the queue full (the only time a call is
        refused) that is the time the calls admitted now need to drain, and a place frees up about every
        mean ÷ places. Callers refused one after another are told to come back about that far apart,
        each after the one before, so their resends arrive about as fast as places free up instead of
        together after the same wait, when all but a few would be refused again (each resend is a
        capture received again; measured in docs/performance.md). The line restarts once its end has
        passed, and is never longer than MAX_RETRY_AFTER_S.
        """
        mean = self._mean_call_s
        if mean is None:
            return RETRY_AFTER_S
        now = time.monotonic()
        with self._lock:
            # The first when the queue is half drained, so it keeps a few calls for the workers when a
            # caller comes back late (kiosks stretch the wait at random, by up to a quarter); then one
            # place apart. New calls keep the workers fed too (they may take the places not kept for
            # the callers sent back), so the turns need not come closer than places free up, which
            # only had callers refused again (three quarters of a place apart, measured against this
            # in docs/performance.md: a fifth to a quarter more resends, no more faces a second).
            drained = now + max(MIN_RETRY_AFTER_S, mean / 2)
            turn = max(self._line_end + places * mean / self._places, drained)
            self._line_end = min(turn, now + MAX_RETRY_AFTER_S)
            return round(self._line_end - now, 2)

    def close(self) -> None:
        """Stop the workers: calls in progress finish first (for up to CLOSE_WAIT_S), then each is told to end."""
        self._closing.set()
        idle = self._idle.take(self.processes, timeout=CLOSE_WAIT_S) or []
        if len(idle) < self.processes:
            log.warning("face workers: calls still running after %.0f s; stopping the workers anyway", CLOSE_WAIT_S)
        for worker in list(self._workers):
            worker.stop(timeout=10.0 if worker in idle else 1.0)
        self._workers.clear()


class PooledLivenessChecker:
    """A LivenessChecker whose checks run in the face workers (one pool task per check)."""

    def __init__(self, pool: ProcessFaceVerifier) -> None:
        """Check in `pool`'s workers (started with a `liveness_factory`)."""
        self._pool = pool

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        """Decide in a worker; OverloadedError or TransientError as for a verification."""
        return self._pool.check_liveness(evidence, captures)

    def check_and_verify(
        self, evidence: LivenessEvidence, captures: Sequence[bytes], reference_encoding: bytes
    ) -> tuple[LivenessVerdict, FaceVerdict | FaceImageError]:
        """The check and the comparison at once, in two workers (see ProcessFaceVerifier)."""
        return self._pool.check_liveness_and_verify(evidence, captures, reference_encoding)

    def admission(self, *, sent_again: bool = False) -> contextlib.AbstractContextManager[None]:
        """The places of this thread's next `check_and_verify`, taken now or refused now (see ProcessFaceVerifier)."""
        return self._pool.admission(places=2, sent_again=sent_again)

    def check_room(self, *, sent_again: bool = False) -> None:
        """OverloadedError now when the two places of a `check_and_verify` could not be taken (a hint)."""
        self._pool.check_room(places=2, sent_again=sent_again)
