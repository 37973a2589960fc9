"""The kiosk's platform client and queue replayer against the real platform server (SQLite)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from expertcheckin.v1 import organiser_pb2

from checkin.flow.models import (
    Annulled,
    AnnulReason,
    AnnulRequest,
    CardSource,
    Completed,
    CompleteRequest,
    DeviceHealth,
    DeviceState,
    HeartbeatReport,
    IdCardFields,
    Identified,
    IdentifyRequest,
    KioskEvent,
    NewCard,
    RefusalCode,
    Refused,
)
from checkin.pending_queue import PendingQueue, QueueReplayer
from checkin.platform_client import PlatformClient
from personal_data import crypto
from tests.integration.kiosk.fake_platform import settings_for
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import luhn_pan, signature_png

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Running]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    yield running
    stop(running)


@pytest.fixture
def client(platform: Running) -> Iterator[PlatformClient]:
    c = PlatformClient(settings_for(platform.port), "K1")
    yield c
    c.close()


def identify(client: PlatformClient, batch: str, id_number: str) -> Identified | Refused:
    return client.identify(
        IdentifyRequest(
            request_id=f"id-{id_number}",
            batch_code=batch,
            id_card=IdCardFields(id_number=id_number, name="专家", valid_to="长期"),
            faces=(),
            face_quality=0.0,
            liveness_passed=True,
            face_attempt=1,
        )
    )


def test_context_identify_complete_and_a_replayed_retry(client: PlatformClient, platform: Running) -> None:
    seeded = platform.seeded
    context = client.get_context()
    assert context.batch is not None
    assert context.batch.code == seeded.batch_code
    who = identify(client, seeded.batch_code, seeded.ids[0])
    assert isinstance(who, Identified), who
    assert seeded.ids[0] not in who.id_number_masked
    request = CompleteRequest(
        request_id="complete-1",
        identification_token=who.identification_token,
        new_card=NewCard(pan=luhn_pan(), source=CardSource.TYPED),
        signature_png=signature_png(),
        band_uid=seeded.bands[0][0],
    )
    first = client.complete_check_in(request)
    assert isinstance(first, Completed), first
    assert first.check_in.room_number in seeded.rooms
    again = client.complete_check_in(request)
    assert isinstance(again, Completed)
    assert (again.replayed, again.check_in.check_in_id) == (True, first.check_in.check_in_id)
    annulled = client.annul_check_in(AnnulRequest("annul-1", first.check_in.check_in_id, AnnulReason.BAND_NOT_TAKEN))
    assert isinstance(annulled, Annulled)


def test_not_invited_is_a_refusal_with_its_code(client: PlatformClient, platform: Running) -> None:
    result = identify(client, platform.seeded.batch_code, "11010519491231002X")
    assert isinstance(result, Refused)
    assert result.refusal.code is RefusalCode.NOT_INVITED


def test_heartbeat_and_event_are_accepted(client: PlatformClient, platform: Running) -> None:
    now = dt.datetime.now(dt.UTC)
    ack = client.heartbeat(
        HeartbeatReport(
            devices=(DeviceHealth("arm", DeviceState.OK),),
            band_stock=40,
            pending_check_ins=0,
            out_of_service=False,
            software_version="test",
            kiosk_time=now,
        )
    )
    client.report_event(KioskEvent(request_id="ev-1", event="cancelled", outcome="home", occurred_at=now))
    # The platform stored what the kiosk reported: its organiser statistics show this kiosk's stock.
    assert not ack.stock_low  # 40 bands is above the low-stock mark
    # The answer carries the kiosk's context: the same batch GetKioskContext gives, so one call a beat.
    assert ack.context is not None
    assert ack.context.batch is not None
    assert ack.context.batch == client.get_context().batch
    assert ack.context.batch.code == platform.seeded.batch_code
    stats = platform.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=platform.seeded.batch_code), metadata=platform.auth
    )
    kiosk = next(k for k in stats.kiosks if k.kiosk_id == "K1")
    assert kiosk.band_stock == 40
    assert kiosk.last_heartbeat.seconds > 0


def test_the_queue_delivers_a_lost_completion_to_the_real_platform(
    client: PlatformClient, platform: Running, tmp_path: Path
) -> None:
    seeded = platform.seeded
    who = identify(client, seeded.batch_code, seeded.ids[1])
    assert isinstance(who, Identified)
    queue = PendingQueue(tmp_path / "queue.sqlite3", crypto.DataKey.from_text("kiosk-test-secret-kiosk-test-secret"))
    request = CompleteRequest(
        request_id="lost-1",
        identification_token=who.identification_token,
        new_card=None if who.card_on_file else NewCard(pan=luhn_pan(n=7), source=CardSource.CHIP),
        signature_png=signature_png(),
        band_uid=seeded.bands[1][0],
    )
    queue.write_ahead(request)
    queue.deliver_later("lost-1")
    stats = QueueReplayer(queue, client).replay_once()
    assert (stats.delivered, stats.refused, queue.depth()) == (1, 0, 0)
    replay = client.complete_check_in(request)
    assert isinstance(replay, Completed)
    assert replay.replayed is True
