"""The Prometheus endpoint: kiosks online, check-ins, refusals by reason, open alerts, band writes waiting.

Figures are read from the database at each scrape (a custom collector), so every replica answers the
same and nothing is counted in process memory that a restart or a second replica would lose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from platform_server.db.models import Alert, Batch, CheckIn, CheckInEvent, Kiosk
from platform_server.services import step_timings, uwb

if TYPE_CHECKING:
    from collections.abc import Iterator

    from platform_server.bootstrap import Platform
    from platform_server.console.app import ConsoleSettings


class _DatabaseCollector(Collector):
    def __init__(self, platform: Platform, settings: ConsoleSettings) -> None:
        self.platform = platform
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        now = self.platform.ctx.clock()
        uow = self.platform.new_uow()
        with uow:
            beats = uow.execute(sa.select(Kiosk.last_heartbeat_at)).scalars().all()
            check_ins = uow.execute(
                sa.select(Batch.code, sa.func.count())
                .join(CheckIn, CheckIn.batch_id == Batch.id)
                .where(CheckIn.annulled_at.is_(None))
                .group_by(Batch.code)
            ).all()
            refusals = uow.execute(
                sa.select(Batch.code, CheckInEvent.refusal_reason, sa.func.count())
                .join(CheckInEvent, CheckInEvent.batch_id == Batch.id)
                .where(CheckInEvent.kind == "REFUSED")
                .group_by(Batch.code, CheckInEvent.refusal_reason)
            ).all()
            open_alerts = uow.execute(
                sa.select(Alert.rule, sa.func.count()).where(Alert.open_key.is_not(None)).group_by(Alert.rule)
            ).all()
            band_writes = uwb.waiting(uow)
        limit = self.settings.alert_settings.offline_after_s
        online = sum(1 for b in beats if b is not None and (now - b).total_seconds() <= limit)
        kiosks = GaugeMetricFamily("checkin_kiosks", "Registered kiosks by state", labels=["state"])
        kiosks.add_metric(["online"], online)
        kiosks.add_metric(["offline"], len(beats) - online)
        yield kiosks
        done = GaugeMetricFamily("checkin_check_ins", "Active (not annulled) check-ins", labels=["batch"])
        for code, count in check_ins:
            done.add_metric([code], count)
        yield done
        refused = GaugeMetricFamily("checkin_refusals", "Refused check-ins by reason", labels=["batch", "reason"])
        for code, reason, count in refusals:
            refused.add_metric([code, reason or ""], count)
        yield refused
        alert_family = GaugeMetricFamily("checkin_alerts_open", "Open alerts by rule", labels=["rule"])
        for rule, count in open_alerts:
            alert_family.add_metric([rule], count)
        yield alert_family
        yield GaugeMetricFamily(
            "checkin_uwb_pending",
            "Room writes to bands not yet acknowledged by the band (the UWB outbox)",
            band_writes.count,
        )
        yield GaugeMetricFamily(
            "checkin_uwb_oldest_pending_seconds",
            "Age of the oldest room write not yet acknowledged (0 when none): above 10 s a band is late",
            band_writes.oldest_age_s(now),
        )
        yield _step_histogram(step_timings.recent_durations(self.platform.new_uow()))


STEP_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def _step_histogram(durations: dict[str, list[float]]) -> Metric:
    """Time on each kiosk screen as the expert saw it (the `verifying` screen is the face check's round trip).

    A gauge histogram over the newest step reports, not a counter: the figures come from the database.
    """
    family = GaugeHistogramMetricFamily(
        "checkin_kiosk_step_seconds", "Seconds spent on each kiosk screen (newest step reports)", labels=["step"]
    )
    for step, values in sorted(durations.items()):
        buckets = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in STEP_BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([step], buckets, gsum_value=sum(values))
    return family


class ConsoleMetrics:
    """A private registry holding the database collector."""

    def __init__(self, platform: Platform, settings: ConsoleSettings) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_DatabaseCollector(platform, settings))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
