"""What a face worker call costs the serving process: the pool's own pipes against an executor's, in one run.

A verification is handed to a face worker process and its answer read back (platform_server/face/pool.py).
The pool now sends each task on the worker's own pipe from the calling thread; the baseline, in the same
run and on workers built the same way, is `concurrent.futures.ProcessPoolExecutor` (the pool before),
whose manager and feeder threads carry every task and answer. The verifier answers at once, so the
figure is the hand-over alone: this process's CPU (user + system) and the wall time per call, with a
capture of the size a kiosk sends (83 KB), from 1 and from 4 calling threads, over 2 workers.

    .venv/bin/python bench/face_pool_calls.py

Printed per layout and callers: µs of this process's CPU and of wall time per call (best of three
rounds), and `ratio_cpu_pool_vs_executor` (below 1: the pool costs the serving process less).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from platform_server.face import pool as face_pool  # noqa: E402
from tests.integration.replicas.slow_verifier import SlowVerifier  # noqa: E402

CALLS, ROUNDS, WORKERS = 1500, 3, 2
CAPTURE = b"personAA" + os.urandom(83_000)


def cpu_s() -> float:
    """This process's CPU time, every thread."""
    times = os.times()
    return times.user + times.system


def timed(call: Any, threads: int) -> tuple[float, float]:
    """Best of ROUNDS rounds of CALLS calls spread over `threads`: (CPU µs, wall µs) a call."""
    best = (float("inf"), float("inf"))
    for _ in range(ROUNDS):
        cpu, wall = cpu_s(), time.perf_counter()
        workers = [threading.Thread(target=lambda: [call() for _ in range(CALLS // threads)]) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        made = CALLS // threads * threads
        best = min(best, ((cpu_s() - cpu) / made * 1e6, (time.perf_counter() - wall) / made * 1e6))
    return best


def main() -> None:
    """Both layouts, alternating by callers; then the ratio of the CPU over every caller count."""
    factory = functools.partial(SlowVerifier, 0.0)
    pool = face_pool.ProcessFaceVerifier(factory, threshold=0.5, processes=WORKERS, queue=8)
    executor = ProcessPoolExecutor(
        WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=face_pool._init_worker,  # noqa: SLF001 - the same workers, under the old layout
        initargs=(factory, None, None, None),
    )
    args = (b"personAA", (CAPTURE,))

    def by_pool() -> None:
        assert pool.verify(*args).matched

    def by_executor() -> None:
        kind, verdict = executor.submit(face_pool._call, "verify", args).result()  # noqa: SLF001
        assert kind == "ok"
        assert verdict.matched

    try:
        by_executor()  # start the executor's workers before timing
        totals = {"pool": 0.0, "executor": 0.0}
        print(f"face worker calls, 83 KB capture, {WORKERS} workers, µs a call (best of {ROUNDS} rounds of {CALLS})")
        for threads in (1, 4):
            for name, call in (("pool", by_pool), ("executor", by_executor)):
                cpu, wall = timed(call, threads)
                totals[name] += cpu
                print(f"{name:9s} callers={threads} cpu={cpu:7.1f} wall={wall:7.1f}")
        print(f"ratio_cpu_pool_vs_executor={totals['pool'] / totals['executor']:.2f}")
    finally:
        pool.close()
        executor.shutdown()


if __name__ == "__main__":
    main()
