"""Server CPU per check-in (ID-only, or with a face), against the server CPU of an Echo call in the same run.

Starts the platform as `platform-server serve` over a fresh SQLite file (seeded as bench/load_suite.py
seeds it), then drives it from a few client threads in this process: Echo calls, then identifies, then
the completions of those identifications. The platform process's own CPU time (user + system, from
/proc) over each phase, divided by the calls made, is the figure: client work is not in it.

    .venv/bin/python bench/checkin_cpu.py                          # this checkout
    .venv/bin/python bench/checkin_cpu.py --baseline-root /tmp/main  # and another checkout, same run
    .venv/bin/python bench/checkin_cpu.py --faces --threads 1      # identifies with the kiosk's capture

With --faces every identify carries the kiosk's capture of a face batch's expert (the liveness left to
the kiosk, two face workers): the serving process's part of a face check-in (the capture's way in, the
hand-over to a worker and the answer), not the workers' own CPU. Then, in every run, heartbeats that
change the kiosk's band stock (one UPDATE each), as the kiosks' beats do under load.

Printed per checkout: ms of server CPU per Echo, per IdentifyExpert, per CompleteCheckIn, per
check-in and per heartbeat, and `echo_calls_per_check_in` (a check-in's CPU in Echo calls: a
check-in is two calls, so a server bound by its own CPU reaches at most 2 / that of the Echo bound).
The completions' figure includes the UWB worker writing their bands (it runs in the platform process
meanwhile). With
--baseline-root, `ratio_check_in_cpu_vs_baseline` (below 1: cheaper than the baseline).
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from bench.load_suite import FaceSettings, Seed, SqliteTarget, seed  # noqa: E402
from personal_data.crypto import DataKey  # noqa: E402
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: E402
from uwb.simulator import GatewaySimulator  # noqa: E402

IDLE_WINDOW_S = 3.0


def spread(threads: int, items: list[Any], work: Any) -> None:
    """Run work(item) for every item over `threads` threads; the first failure is raised (no figure from it)."""
    chunks = [items[t::threads] for t in range(threads)]
    failures: list[BaseException] = []

    def run(chunk: list[Any]) -> None:
        try:
            for item in chunk:
                work(item)
        except BaseException as err:  # raised again in the caller's thread
            failures.append(err)

    runners = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for r in runners:
        r.start()
    for r in runners:
        r.join()
    if failures:
        raise failures[0]


class KioskCalls:
    """A few kiosks' calls against one platform, each checking its answer (a refused call stops the run)."""

    def __init__(self, channel: grpc.Channel, s: Seed, kiosks: int, *, faces: bool) -> None:
        self.stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        self.s, self.kiosks, self.faces = s, kiosks, faces
        self.tokens: dict[int, str] = {}

    def identify(self, n: int) -> None:
        """IdentifyExpert for expert n, with the kiosk's capture when the run has faces."""
        s = self.s
        request = identify_request(self.kiosk(n), s.batch_code, s.ids[n], [s.captures[n]] if self.faces else None)
        if self.faces:  # the kiosk's liveness flag and challenge; its frames left out (the platform trusts the flag)
            request.liveness.CopyFrom(kiosk_pb2.LivenessEvidence(challenge=s.liveness[n][0], challenge_id=f"c{n}"))
        answer = self.stub.IdentifyExpert(request)
        assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED, answer.refusal
        self.tokens[n] = answer.identification_token

    def complete(self, n: int) -> None:
        """CompleteCheckIn for expert n's identification."""
        request = complete_request(self.kiosk(n), self.tokens[n], self.s.band_uids[n])
        answer = self.stub.CompleteCheckIn(request)
        assert answer.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED, answer.refusal

    def beat(self, n: int) -> None:
        """A Heartbeat with a band stock of its own: one UPDATE, as the beats under load are."""
        request = kiosk_pb2.HeartbeatRequest(kiosk_id=self.kiosk(n), band_stock=100_000 - n, software_version="bench")
        answer = self.stub.Heartbeat(request)
        assert answer.HasField("context"), answer

    def kiosk(self, n: int) -> str:
        """The kiosk that serves expert (or beat) n."""
        return f"K{n % self.kiosks + 1}"


def measure(  # noqa: PLR0917
    root: Path | None, checkins: int, echoes: int, threads: int, kiosks: int, faces: bool = False
) -> dict[str, float]:
    """One platform (this checkout's code, or `root`'s on PYTHONPATH), its CPU per call of each phase."""
    tmp = Path(tempfile.mkdtemp(prefix="checkin-cpu-"))
    key = DataKey.generate_text()
    sim = GatewaySimulator(tags=(), delivery_window_s=2.0, retry_interval_s=0.01).start()
    if root is not None:
        os.environ["PYTHONPATH"] = f"{root}:{root / 'proto' / 'gen'}"  # the server runs the baseline's code
    try:
        face = FaceSettings(processes=2, liveness="kiosk") if faces else FaceSettings()
        target = SqliteTarget(tmp, key, sim.url, face)
        s = seed(target.url, key, experts=checkins + 50, kiosks=kiosks, faces=faces)
        for tag in s.band_tags:
            sim.add_tag(tag)
        target.start()
    finally:
        os.environ.pop("PYTHONPATH", None)
    assert target.proc is not None
    pid = target.proc.pid
    channel = grpc.insecure_channel(target.address)
    calls = KioskCalls(channel, s, kiosks, faces=faces)
    echo = diagnostics_pb2_grpc.DiagnosticsServiceStub(channel)
    request = diagnostics_pb2.EchoRequest(message="x" * 32)
    figures: dict[str, float] = {}
    try:
        warm = list(range(checkins, checkins + 50))  # connections, caches, first imports
        spread(threads, [0] * 200, lambda _x: echo.Echo(request))
        spread(threads, warm, calls.identify)
        spread(threads, warm, calls.complete)
        spread(threads, list(range(kiosks)), calls.beat)  # each kiosk's first beat is a change of health
        # The process's CPU with no call in flight (its gRPC and pool threads, the lease): a face identify
        # waits ~0.1 s for its worker, and with one caller that idle share lands on the identify's figure.
        cpu, wall = process_cpu_s(pid), time.perf_counter()
        time.sleep(IDLE_WINDOW_S)  # a measuring window, not a wait for an event
        figures["idle_cpu_share"] = (process_cpu_s(pid) - cpu) / (time.perf_counter() - wall)
        for name, items, work in (
            ("echo", [0] * echoes, lambda _x: echo.Echo(request)),
            ("identify", list(range(checkins)), calls.identify),
            ("complete", list(range(checkins)), calls.complete),
            ("beat", list(range(kiosks, kiosks + checkins)), calls.beat),
        ):
            cpu, wall = process_cpu_s(pid), time.perf_counter()
            spread(threads, items, work)
            figures[f"{name}_ms"] = (process_cpu_s(pid) - cpu) / len(items) * 1000
            figures[f"{name}_wall_s"] = time.perf_counter() - wall
    finally:
        channel.close()
        target.stop()
        sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the run's database and log
    figures["identify_wall_ms"] = figures["identify_wall_s"] / checkins * threads * 1000
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
    parser.add_argument("--faces", action="store_true", help="identifies carry the kiosk's face capture")
    args = parser.parse_args()
    runs = [("this", None)] + ([("baseline", args.baseline_root.resolve())] if args.baseline_root else [])
    results = {
        name: measure(root, args.checkins, args.echoes, args.threads, args.kiosks, args.faces) for name, root in runs
    }
    kind = "with the kiosk's face capture" if args.faces else "ID-only"
    print(f"server CPU per call, ms (SQLite, {args.threads} client threads, {args.checkins} check-ins, {kind})")
    for name, f in results.items():
        print(
            f"{name:8s} echo={f['echo_ms']:.3f} identify={f['identify_ms']:.3f} complete={f['complete_ms']:.3f}"
            f" check_in={f['check_in_ms']:.3f} beat={f['beat_ms']:.3f}"
            f" echo_calls_per_check_in={f['echo_calls_per_check_in']:.1f}"
        )
        print(
            f"{'':8s} idle_cpu_share={f['idle_cpu_share']:.4f} identify_wall_ms={f['identify_wall_ms']:.1f}"
            f" (of which idle CPU {f['idle_cpu_share'] * f['identify_wall_ms'] / args.threads:.3f} ms an identify)"
        )
    if "baseline" in results:
        ratio = results["this"]["check_in_ms"] / results["baseline"]["check_in_ms"]
        print(f"ratio_check_in_cpu_vs_baseline={ratio:.2f}")
    print(f"echo_calls_per_check_in={results['this']['echo_calls_per_check_in']:.1f}")


if __name__ == "__main__":
    main()
