"""A small typed client for the platform's Prometheus `/metrics` (its health port): figures, not log lines.

The scenario runner reads the platform's own face-verification times around each check-in: the
`_sum` and `_count` of `platform_face_checks_seconds` and `platform_face_descriptors_seconds`
(platform_server.rpc_metrics) before and after, and the difference is what that check-in cost.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Mapping

FACE_CHECKS: Final = "platform_face_checks_seconds"
FACE_DESCRIPTORS: Final = "platform_face_descriptors_seconds"
RPC_DURATION: Final = "platform_rpc_duration_seconds"


class MetricsError(RuntimeError):
    """The platform's /metrics could not be read or parsed."""


@dataclass(frozen=True, slots=True)
class Totals:
    """A histogram's (or summary's) running totals: seconds observed and how many observations."""

    sum: float = 0.0
    count: float = 0.0

    def __sub__(self, earlier: Totals) -> Totals:
        """What was observed between `earlier` and these totals."""
        return Totals(self.sum - earlier.sum, self.count - earlier.count)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape: every sample's value by sample name (label sets of one name are added up)."""

    samples: Mapping[str, float]

    def totals(self, histogram: str) -> Totals:
        """The `_sum` and `_count` of a histogram or summary (zero when the platform has none yet)."""
        return Totals(self.samples.get(f"{histogram}_sum", 0.0), self.samples.get(f"{histogram}_count", 0.0))


def parse(text: str) -> Snapshot:
    """Parse the Prometheus text format; raise MetricsError when it is not that."""
    samples: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name] = samples.get(sample.name, 0.0) + float(sample.value)
    except ValueError as err:
        raise MetricsError(f"not Prometheus text: {err}") from err
    return Snapshot(samples)


class PlatformMetrics:
    """Reads the platform's `GET /metrics` at `url` (e.g. http://127.0.0.1:PORT/metrics)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def scrape(self) -> Snapshot:
        """One scrape; MetricsError when the endpoint does not answer 200 with Prometheus text."""
        return parse(self._text())

    def rpc_buckets(self, method: str) -> dict[float, float]:
        """One method's calls as the server timed them: upper bound in seconds -> calls at most that long.

        From the RPC duration histogram, every status code added up (+Inf: every call). MetricsError as
        for scrape().
        """
        counts: dict[float, float] = {}
        try:
            for family in text_string_to_metric_families(self._text()):
                for sample in family.samples:
                    if sample.name == f"{RPC_DURATION}_bucket" and sample.labels.get("method") == method:
                        bound = float(sample.labels["le"])
                        counts[bound] = counts.get(bound, 0.0) + float(sample.value)
        except ValueError as err:
            raise MetricsError(f"not Prometheus text: {err}") from err
        return counts

    def _text(self) -> str:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as answer:  # noqa: S310 - http URL we built
                body: bytes = answer.read()
        except OSError as err:
            raise MetricsError(f"{self.url}: {err}") from err
        return body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class FaceTimes:
    """The platform's face-verification totals at one moment: face finding, then descriptors."""

    checks: Totals
    descriptors: Totals

    @classmethod
    def of(cls, snapshot: Snapshot) -> FaceTimes:
        """The face totals of a scrape."""
        return cls(snapshot.totals(FACE_CHECKS), snapshot.totals(FACE_DESCRIPTORS))

    def since(self, earlier: FaceTimes) -> tuple[float, float] | None:
        """Seconds of face checks and of descriptors between `earlier` and now; None if nothing was verified."""
        checks, descriptors = self.checks - earlier.checks, self.descriptors - earlier.descriptors
        if checks.count <= 0 or descriptors.count <= 0:
            return None
        return checks.sum, descriptors.sum
