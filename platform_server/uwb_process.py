"""The UWB delivery worker in a process of its own, started and supervised by `platform-server serve`.

In the serving process the worker was one thread among the gRPC server's: with 200 kiosks flat out it
got too little of the GIL, and after a gateway outage most bands were written later than 10 s. Here
it has an interpreter of its own. Still exactly one driver per gateway: the child takes the same
lease (worker_lease.py: an advisory lock on PostgreSQL, a flock on SQLite), so with several replicas
one child drives the gateway and the others stand by.

The serving process starts the child (spawn: the server has threads a fork would copy half-way),
starts it again if it dies (after a pause that grows while it keeps dying), and stops it with
SIGTERM when it stops itself: the child finishes its round, releases its claims and the gateway.
The child ends by itself when the serving process is gone (even SIGKILLed), so the platform started
again gets the lease. No bell reaches the child from the RPC threads: it polls every `[uwb] poll_s`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

# lazy (lazy_imports): the child loads them after its start, the serving process never needs them here
from platform_server import bootstrap, log_masking, uwb_delivery

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Event as EventType

    from platform_server.config import PlatformConfig

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0  # before starting a child that died again
RESTART_PAUSE_MAX_S = 30.0  # a child that keeps dying at start (a wrong port) is retried this often
STEADY_S = 60.0  # a child that ran this long died of something new: restart after the short pause
PARENT_CHECK_S = 0.5


def child_main(config: PlatformConfig, parent_pid: int, go: EventType) -> None:
    """The child: the delivery worker over its own engine until SIGTERM or the serving process ends.

    It imports first and waits for `go` (the serving process has migrated and opened the keys), so a
    platform started again after a crash has its worker ready about when it serves again.
    """
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the serving process stops us
    log_masking.configure_logging(config.logging.level, config.logging.file or None)
    while not go.wait(PARENT_CHECK_S):
        if stopping.is_set() or os.getppid() != parent_pid:
            return
    # No face models here; the serving process migrated (or refused to start) before saying go.
    platform = bootstrap.build(config, face_verifier=None, liveness_checker=None, migrate=False, start_uwb_worker=False)
    worker = uwb_delivery.build_worker(platform)
    worker.start()
    log.info("UWB delivery process %d started for %s", os.getpid(), config.uwb.port)
    try:
        while not stopping.wait(PARENT_CHECK_S):
            if os.getppid() != parent_pid:
                log.warning("UWB delivery process: the serving process is gone; stopping")
                break
    finally:
        worker.stop()
        platform.close()
        log.info("UWB delivery process %d stopped", os.getpid())


class UwbWorkerProcess:
    """Supervises the child running the delivery worker: start, restart when it dies, stop."""

    def __init__(self, config: PlatformConfig) -> None:
        """The child will run with `config` (picklable: the whole configuration, overrides included)."""
        self._config = config
        self._context = multiprocessing.get_context("spawn")
        self._go = self._context.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._child: BaseProcess | None = None
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        child = self._child
        return child.pid if child is not None else None

    def go(self) -> UwbWorkerProcess:
        """Let the child open the database and drive the gateway (after migration and the keys)."""
        self._go.set()
        return self

    def start(self) -> UwbWorkerProcess:
        """Start the child (it imports, then waits for `go`) and its supervising thread."""
        with self._lock:
            self._child = self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="uwb-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _spawn(self) -> BaseProcess:
        child = self._context.Process(
            target=child_main, args=(self._config, os.getpid(), self._go), name="platform-uwb-delivery", daemon=False
        )
        child.start()
        return child

    def _supervise(self) -> None:
        pause = RESTART_PAUSE_S
        while True:
            child = self._child
            assert child is not None
            started = time.monotonic()
            child.join()
            if self._stopping.is_set():
                return
            log.error("UWB delivery process %s ended (exit code %s); starting it again", child.pid, child.exitcode)
            pause = RESTART_PAUSE_S if time.monotonic() - started >= STEADY_S else pause
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RESTART_PAUSE_MAX_S)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._child = self._spawn()
                self.restarts += 1

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the child and wait for it (SIGKILL after `timeout`); no restart afterwards."""
        with self._lock:
            self._stopping.set()
            child = self._child
        if child is not None and child.exitcode is None:
            child.terminate()
            child.join(timeout)
            if child.exitcode is None:
                log.warning("UWB delivery process %s did not stop within %.0f s: killed", child.pid, timeout)
                child.kill()
                child.join()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
