"""The scenario runner's metrics client reads the platform's real /metrics (health port), not its log."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from platform_server.health_http import HealthEndpoint
from platform_server.rpc_metrics import RpcMetrics
from sim_world.metrics_client import FaceTimes, MetricsError, PlatformMetrics, Totals, parse

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def served() -> Iterator[tuple[RpcMetrics, PlatformMetrics]]:
    metrics = RpcMetrics()
    health = HealthEndpoint("127.0.0.1:0", metrics=metrics.render)
    yield metrics, PlatformMetrics(f"http://127.0.0.1:{health.port}/metrics")
    health.close()


def test_face_times_between_two_scrapes_are_what_the_platform_observed(
    served: tuple[RpcMetrics, PlatformMetrics],
) -> None:
    metrics, client = served
    metrics.face_checks_seconds.observe(0.5)  # an earlier check-in
    metrics.face_descriptors_seconds.observe(1.5)
    before = FaceTimes.of(client.scrape())
    assert before.checks == Totals(0.5, 1)
    metrics.face_checks_seconds.observe(0.02)
    metrics.face_checks_seconds.observe(0.03)
    metrics.face_descriptors_seconds.observe(0.125)
    metrics.face_descriptors_seconds.observe(0.25)
    spent = FaceTimes.of(client.scrape()).since(before)
    assert spent is not None
    assert spent[0] == pytest.approx(0.05)
    assert spent[1] == pytest.approx(0.375)


def test_no_verification_between_two_scrapes_gives_none(served: tuple[RpcMetrics, PlatformMetrics]) -> None:
    metrics, client = served
    metrics.rpc_seconds.labels("/probe", "OK").observe(0.01)
    before = FaceTimes.of(client.scrape())
    assert before.checks == Totals(0.0, 0.0)
    metrics.rpc_seconds.labels("/probe", "OK").observe(0.01)
    assert FaceTimes.of(client.scrape()).since(before) is None


def test_label_sets_of_one_sample_name_are_added_up() -> None:
    snapshot = parse(
        "# TYPE x_seconds histogram\n"
        'x_seconds_sum{outcome="a"} 1.5\n'
        'x_seconds_count{outcome="a"} 2\n'
        'x_seconds_sum{outcome="b"} 0.5\n'
        'x_seconds_count{outcome="b"} 1\n'
    )
    assert snapshot.totals("x_seconds") == Totals(2.0, 3.0)
    assert snapshot.totals("absent_seconds") == Totals()


def test_an_unreachable_endpoint_or_other_text_is_a_metrics_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(MetricsError, match=str(port)):
            PlatformMetrics(f"http://127.0.0.1:{port}/metrics", timeout_s=5).scrape()
    with pytest.raises(MetricsError, match="not Prometheus text"):
        parse("<html>a proxy's error page</html>\n")


def test_one_methods_call_times_are_read_by_bucket_with_every_status_code_added(
    served: tuple[RpcMetrics, PlatformMetrics],
) -> None:
    metrics, client = served
    metrics.rpc_seconds.labels("/x", "OK").observe(0.003)
    metrics.rpc_seconds.labels("/x", "OK").observe(0.02)
    metrics.rpc_seconds.labels("/x", "UNAVAILABLE").observe(0.03)
    metrics.rpc_seconds.labels("/other", "OK").observe(0.001)
    buckets = client.rpc_buckets("/x")
    assert (buckets[0.0025], buckets[0.005], buckets[0.025], buckets[0.05]) == (0, 1, 2, 3)
    assert buckets[float("inf")] == 3
    assert client.rpc_buckets("/absent") == {}
