"""The server's /metrics on its health port: RPC latency per method and code, face and liveness latency."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import grpc
import pytest
from expertcheckin.v1 import kiosk_pb2_grpc

from platform_server import rpc_metrics
from platform_server.face.api import LivenessVerdict
from platform_server.health_http import HealthEndpoint
from platform_server.rpc_metrics import RpcMetrics
from platform_server.server import _health_endpoint, create_server
from platform_server.services import roster
from tests.integration.platform_server.rpc_helpers import identify_request
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import FAKE_CHECKS_S, FAKE_DESCRIPTORS_S, face_image

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from platform_server.face.api import LivenessEvidence

KIOSK = "/expertcheckin.v1.KioskService/IdentifyExpert"


class PassingLiveness:
    """A liveness checker that passes every challenge (the real one needs real video frames)."""

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        return LivenessVerdict(passed=bool(captures), reason="passed" if captures else "no_evidence", measures={})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Running, kiosk_pb2_grpc.KioskServiceStub, HealthEndpoint, RpcMetrics]]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    metrics = RpcMetrics()
    p = running.platform
    ctx = dataclasses.replace(p.ctx, liveness_checker=PassingLiveness())
    platform = dataclasses.replace(p, ctx=ctx)  # the same database, with a liveness checker
    server, port = create_server(p.config, platform, listen="127.0.0.1:0", metrics=metrics)
    health = HealthEndpoint("127.0.0.1:0", metrics=metrics.render)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield running, kiosk_pb2_grpc.KioskServiceStub(channel), health, metrics
    channel.close()
    health.close()
    server.stop(None).wait()
    stop(running)


def scrape(health: HealthEndpoint) -> dict[str, float]:
    """Every sample of the scrape by its name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/metrics", timeout=30) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return parse(answer.read())


def test_calls_face_and_liveness_checks_move_the_histograms(
    served: tuple[Running, kiosk_pb2_grpc.KioskServiceStub, HealthEndpoint, RpcMetrics],
) -> None:
    running, kiosk, health, _metrics = served
    s = running.seeded
    with s.uow as uow:
        ids = roster.expert_ids_by_hash(uow, roster.hashes_of(s.ctx.data_key, [s.ids[3]]))
        alice = face_image("alice")
        roster.write_reference_photo(
            uow, s.ctx, next(iter(ids.values())), alice, running.verifier.encode_reference(alice)
        )
        uow.commit()
    before = scrape(health)
    ok_key = f'platform_rpc_duration_seconds_count{{code="OK",method="{KIOSK}"}}'
    assert before.get(ok_key, 0.0) == 0.0
    for face in ("alice", "alice", "bob"):
        kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image(face)]))
    with pytest.raises(grpc.RpcError) as refused:  # a kiosk id past the limits: INVALID_ARGUMENT before the servicer
        kiosk.IdentifyExpert(identify_request("K" * 500, s.batch_code, s.ids[3]))
    code = refused.value.code()
    after = scrape(health)
    assert after[ok_key] == 3
    assert after[f'platform_rpc_duration_seconds_count{{code="{code.name}",method="{KIOSK}"}}'] == 1
    assert after[f'platform_rpc_duration_seconds_bucket{{code="OK",le="+Inf",method="{KIOSK}"}}'] == 3
    assert after[f'platform_rpc_duration_seconds_sum{{code="OK",method="{KIOSK}"}}'] > 0
    assert after['platform_face_verification_duration_seconds_count{outcome="matched"}'] == 2
    assert after['platform_face_verification_duration_seconds_count{outcome="not_matched"}'] == 1
    assert after['platform_liveness_check_duration_seconds_count{outcome="passed"}'] == 3
    # The verifier's own split of each verification (one capture each), as it reported it.
    assert after["platform_face_checks_seconds_count"] == 3
    assert after["platform_face_checks_seconds_sum"] == pytest.approx(3 * FAKE_CHECKS_S)
    assert after["platform_face_descriptors_seconds_count"] == 3
    assert after["platform_face_descriptors_seconds_sum"] == pytest.approx(3 * FAKE_DESCRIPTORS_S)
    with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/health", timeout=30) as answer:
        assert answer.status == 200  # the health check itself is unchanged


def test_serves_health_port_carries_the_process_metrics() -> None:
    """`serve` builds its health endpoint with the process's metrics, which create_server times by default."""
    health = _health_endpoint("127.0.0.1:0")
    assert health is not None
    try:
        rpc_metrics.DEFAULT.rpc_seconds.labels("/probe", "OK").observe(0.01)
        samples = scrape(health)
        assert samples['platform_rpc_duration_seconds_count{code="OK",method="/probe"}'] >= 1
        with pytest.raises(urllib.error.HTTPError) as draining:  # not serving yet: /health says 503
            urllib.request.urlopen(f"http://127.0.0.1:{health.port}/health", timeout=30)
        assert draining.value.code == 503
    finally:
        health.close()


def test_the_sqlite_write_lock_counters_move_with_each_write(
    served: tuple[Running, kiosk_pb2_grpc.KioskServiceStub, HealthEndpoint, RpcMetrics],
) -> None:
    """Each identify writes one transaction; its time holding the write lock is counted (the busy share)."""
    running, kiosk, health, _metrics = served
    s = running.seeded
    before = scrape(health)
    for n in range(3):
        answer = kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[n]))
        assert answer.identification_token
    after = scrape(health)
    moved = {name: after[name] - before[name] for name in after if name.startswith("platform_sqlite_write")}
    # Each identify writes once (its answer and audit entry); nothing else writes meanwhile.
    assert moved["platform_sqlite_write_transactions_total"] == 3
    assert moved["platform_sqlite_write_lock_held_seconds_total"] > 0
    assert moved["platform_sqlite_write_lock_wait_seconds_total"] > 0  # each writer's turn is timed
    assert after["platform_sqlite_write_lock_timeouts_total"] == 0


def test_no_write_lock_counters_without_a_sqlite_gate() -> None:
    """PostgreSQL has no write gate: the scrape then names none of its counters."""
    metrics = RpcMetrics()
    metrics.watch_write_gate(None)
    assert b"platform_sqlite_write" not in metrics.render()[0]


def test_the_process_and_its_childrens_cpu_time_are_counted() -> None:
    """`process_cpu_seconds_total` is this process's; the children's counter holds a live child's CPU time."""
    metrics = RpcMetrics()
    burn = (
        "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
        "print(1, flush=True)\nsys.stdin.read()"
    )
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        child.stdout.readline()  # it has spent its 0.3 s of CPU and waits, alive
        during = parse(metrics.render()[0])
        child.stdin.close()
    after = parse(metrics.render()[0])
    children = "platform_child_processes_cpu_seconds_total"
    assert during["process_cpu_seconds_total"] > 0
    assert during[children] >= 0.25
    # Once it has ended its time leaves the sum (the other children of this process are not this test's).
    assert after[children] <= during[children] - 0.25
    assert rpc_metrics.children_cpu_seconds(2**22 + 1) is None  # above the kernel's largest pid: no such process


def parse(text: bytes) -> dict[str, float]:
    """The samples of a rendered scrape by name (with labels)."""
    samples = {}
    for line in text.decode().splitlines():
        match = re.match(r"^(\S+?(?:\{.*\})?) (\S+)$", line)
        if match and not line.startswith("#"):
            samples[match[1]] = float(match[2])
    return samples
