"""Server CPU per ID-only check-in, against the server CPU of an Echo call measured in the same run.

Starts the platform as `platform-server serve` over a fresh SQLite file (seeded as bench/load_suite.py
seeds it), then drives it from a few client threads in this process: Echo calls, then identifies, then
the completions of those identifications. The platform process's own CPU time (user + system, from
/proc) over each phase, divided by the calls made, is the figure: client work is not in it.

    .venv/bin/python bench/checkin_cpu.py                          # this checkout
    .venv/bin/python bench/checkin_cpu.py --baseline-root /tmp/main  # and another checkout, same run

Printed per checkout: ms of server CPU per Echo, per IdentifyExpert, per CompleteCheckIn and per
check-in, and `echo_calls_per_check_in` (a check-in's CPU in Echo calls: a check-in is two calls, so a
server bound by its own CPU reaches at most 2 / that of the Echo bound). The completions' figure
includes the UWB worker writing their bands (it runs in the platform process meanwhile). With
--baseline-root, `ratio_check_in_cpu_vs_baseline` (below 1: cheaper than the baseline).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

import grpc  # noqa: E402
from expertcheckin.v1 import diagnostics_pb2, diagnostics_pb2_grpc, kiosk_pb2, kiosk_pb2_grpc  # noqa: E402

from bench.cpu_by_process import process_cpu_s  # noqa: E402
from bench.load_suite import FaceSettings, SqliteTarget, seed  # noqa: E402
from personal_data.crypto import DataKey  # noqa: E402
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: E402
from uwb.simulator import GatewaySimulator  # noqa: E402


def spread(threads: int, items: list[Any], work: Any) -> None:
    """Run work(item) for every item over `threads` threads."""
    chunks = [items[t::threads] for t in range(threads)]
    runners = [threading.Thread(target=lambda c=c: [work(x) for x in c]) for c in chunks]
    for r in runners:
        r.start()
    for r in runners:
        r.join()


def measure(root: Path | None, checkins: int, echoes: int, threads: int, kiosks: int) -> dict[str, float]:
    """One platform (this checkout's code, or `root`'s on PYTHONPATH), its CPU per call of each phase."""
    tmp = Path(tempfile.mkdtemp(prefix="checkin-cpu-"))
    key = DataKey.generate_text()
    sim = GatewaySimulator(tags=(), delivery_window_s=2.0, retry_interval_s=0.01).start()
    if root is not None:
        os.environ["PYTHONPATH"] = f"{root}:{root / 'proto' / 'gen'}"  # the server runs the baseline's code
    try:
        target = SqliteTarget(tmp, key, sim.url, FaceSettings())
        s = seed(target.url, key, experts=checkins + 50, kiosks=kiosks, faces=False)
        for tag in s.band_tags:
            sim.add_tag(tag)
        target.start()
    finally:
        os.environ.pop("PYTHONPATH", None)
    assert target.proc is not None
    pid = target.proc.pid
    channel = grpc.insecure_channel(target.address)
    kiosk = kiosk_pb2_grpc.KioskServiceStub(channel)
    echo = diagnostics_pb2_grpc.DiagnosticsServiceStub(channel)
    request = diagnostics_pb2.EchoRequest(message="x" * 32)
    tokens: dict[int, str] = {}
    figures: dict[str, float] = {}
    try:

        def identify(n: int) -> None:
            answer = kiosk.IdentifyExpert(identify_request(f"K{n % kiosks + 1}", s.batch_code, s.ids[n]))
            assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED, answer.refusal
            tokens[n] = answer.identification_token

        def complete(n: int) -> None:
            answer = kiosk.CompleteCheckIn(complete_request(f"K{n % kiosks + 1}", tokens[n], s.band_uids[n]))
            assert answer.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED, answer.refusal

        warm = list(range(checkins, checkins + 50))  # connections, caches, first imports
        spread(threads, [0] * 200, lambda _x: echo.Echo(request))
        spread(threads, warm, identify)
        spread(threads, warm, complete)
        for name, items, work in (
            ("echo", [0] * echoes, lambda _x: echo.Echo(request)),
            ("identify", list(range(checkins)), identify),
            ("complete", list(range(checkins)), complete),
        ):
            cpu, wall = process_cpu_s(pid), time.perf_counter()
            spread(threads, items, work)
            figures[f"{name}_ms"] = (process_cpu_s(pid) - cpu) / len(items) * 1000
            figures[f"{name}_wall_s"] = time.perf_counter() - wall
    finally:
        channel.close()
        target.stop()
        sim.stop()
    figures["check_in_ms"] = figures["identify_ms"] + figures["complete_ms"]
    figures["echo_calls_per_check_in"] = figures["check_in_ms"] / figures["echo_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkins", type=int, default=600)
    parser.add_argument("--echoes", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8, help="client threads (concurrent calls)")
    parser.add_argument("--kiosks", type=int, default=8)
    parser.add_argument("--baseline-root", type=Path, help="another checkout (e.g. main) measured in the same run")
    args = parser.parse_args()
    runs = [("this", None)] + ([("baseline", args.baseline_root.resolve())] if args.baseline_root else [])
    results = {name: measure(root, args.checkins, args.echoes, args.threads, args.kiosks) for name, root in runs}
    print(f"server CPU per call, ms (SQLite, {args.threads} client threads, {args.checkins} check-ins)")
    for name, f in results.items():
        print(
            f"{name:8s} echo={f['echo_ms']:.3f} identify={f['identify_ms']:.3f} complete={f['complete_ms']:.3f}"
            f" check_in={f['check_in_ms']:.3f} echo_calls_per_check_in={f['echo_calls_per_check_in']:.1f}"
        )
    if "baseline" in results:
        ratio = results["this"]["check_in_ms"] / results["baseline"]["check_in_ms"]
        print(f"ratio_check_in_cpu_vs_baseline={ratio:.2f}")
    print(f"echo_calls_per_check_in={results['this']['echo_calls_per_check_in']:.1f}")


if __name__ == "__main__":
    main()
