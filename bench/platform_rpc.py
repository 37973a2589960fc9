"""Latency of IdentifyExpert (ID-only, no face) and CompleteCheckIn beside a trivial Echo, same server.

Runs a real gRPC server on a free port over a fresh SQLite file (or --db URL), with 1 and 8 concurrent
clients. Each client alternates an Echo and an IdentifyExpert call, so both are measured under the same
machine load (this machine is shared; timing them in separate phases let the baseline drift by 40 %).
Prints p50/p99 per RPC and concurrency, and last `ratio_identify_p50_vs_echo=<x>` (1 client).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable  # noqa: TC003  (used at run time by the annotations' consumers)
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from expertcheckin.v1 import diagnostics_pb2  # noqa: E402

from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: E402
from tests.support.platform import start, stop  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run(clients: int, per_client: int, *calls: Callable[[int, int], object]) -> list[list[float]]:
    """Each client makes `per_client` rounds of every call in turn; the seconds of each call, per call."""
    times: list[list[list[float]]] = [[[] for _ in calls] for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(per_client):
            for slot, call in enumerate(calls):
                t = time.perf_counter()
                call(k, i)
                times[k][slot].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [[x for per_worker in times for x in per_worker[slot]] for slot in range(len(calls))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--calls", type=int, default=1000, help="echo+identify rounds (1 client; 8 clients: twice)")
    args = parser.parse_args()
    checkins = 8 * 40 + 40
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        schema = ""
        if url.startswith("postgresql"):
            # A private schema, dropped afterwards, so the benchmark never touches anyone's tables.
            schema = "bench_" + uuid.uuid4().hex[:8]
            admin = sa.create_engine(url)
            with admin.begin() as c:
                c.exec_driver_sql(f"CREATE SCHEMA {schema}")
            url = f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"
        r = start(url, rooms=checkins, bands=checkins, experts=checkins)
        s = r.seeded
        try:
            echo = diagnostics_pb2.EchoRequest(message="x" * 32)
            for _ in range(200):  # warm-up: connections, caches, JIT-less code paths
                r.diagnostics.Echo(echo)
                r.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
            results: dict[tuple[str, int], list[float]] = {}
            for clients in (1, 8):
                echoes, identifies = run(
                    clients,
                    args.calls // clients * (1 if clients == 1 else 2),
                    lambda _k, _i: r.diagnostics.Echo(echo),
                    lambda k, i: r.kiosk.IdentifyExpert(
                        identify_request(f"K{k + 1}", s.batch_code, s.ids[(k * 131 + i) % len(s.ids)])
                    ),
                )
                results[("echo", clients)] = echoes
                results[("identify", clients)] = identifies
            offset = {1: 0, 8: 40}
            for clients in (1, 8):
                per = 40 // clients if clients == 1 else 40

                complete_times: dict[int, list[float]] = {1: [], 8: []}

                def complete(
                    k: int,
                    i: int,
                    clients: int = clients,
                    per: int = per,
                    times: dict[int, list[float]] = complete_times,
                ) -> None:
                    n = offset[clients] + k * per + i
                    kiosk = f"K{k + 1}"
                    token = r.kiosk.IdentifyExpert(identify_request(kiosk, s.batch_code, s.ids[n])).identification_token
                    t = time.perf_counter()
                    answer = r.kiosk.CompleteCheckIn(complete_request(kiosk, token, s.bands[n][0]))
                    times[clients].append(time.perf_counter() - t)
                    assert answer.check_in.room_number, answer.refusal

                run(clients, per, complete)
                results[("complete", clients)] = complete_times[clients]
        finally:
            stop(r)
            if schema:
                with admin.begin() as c:
                    c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    backend = url.split(":", 1)[0]
    print(f"platform RPC latency ({backend}), ms")
    for (name, clients), values in results.items():
        print(
            f"{name:9s} clients={clients} n={len(values):4d} p50={pct(values, 0.5):7.3f} p99={pct(values, 0.99):7.3f}"
            f" mean={statistics.fmean(values) * 1000:7.3f}"
        )
    for clients in (1, 8):
        ratio = pct(results[("identify", clients)], 0.5) / pct(results[("echo", clients)], 0.5)
        print(f"ratio_identify_p50_vs_echo_clients{clients}={ratio:.2f}")
    print(f"ratio_identify_p50_vs_echo={pct(results[('identify', 1)], 0.5) / pct(results[('echo', 1)], 0.5):.2f}")


if __name__ == "__main__":
    main()
