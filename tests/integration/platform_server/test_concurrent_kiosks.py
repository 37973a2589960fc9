"""Eight kiosks completing check-ins of one batch at once: no room or band twice, every call answered."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, organiser_pb2

from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import start, stop

KIOSKS = 8
PER_KIOSK = 6


@pytest.mark.parametrize("rooms", [KIOSKS * PER_KIOSK, KIOSKS * PER_KIOSK - 10])
def test_eight_kiosks_at_once(db_url: str, rooms: int) -> None:
    experts = KIOSKS * PER_KIOSK
    running = start(db_url, rooms=rooms, bands=experts, experts=experts)
    s = running.seeded
    start_line = threading.Barrier(KIOSKS)
    answers: list[kiosk_pb2.CompleteCheckInResponse] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def kiosk(k: int) -> None:
        kiosk_id = f"K{k + 1}"
        try:
            start_line.wait(timeout=30)
            for j in range(PER_KIOSK):
                n = k * PER_KIOSK + j
                verified = running.kiosk.IdentifyExpert(identify_request(kiosk_id, s.batch_code, s.ids[n]), timeout=60)
                assert verified.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED, verified.refusal
                done = running.kiosk.CompleteCheckIn(
                    complete_request(kiosk_id, verified.identification_token, s.bands[n][0]), timeout=60
                )
                with lock:
                    answers.append(done)
        except BaseException as err:  # collected and re-raised in the test thread
            with lock:
                failures.append(err)

    threads = [threading.Thread(target=kiosk, args=(k,)) for k in range(KIOSKS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        assert len(answers) == experts  # every request answered
        completed = [a for a in answers if a.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED]
        refused = [a for a in answers if a.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_REFUSED]
        assert len(completed) == min(rooms, experts)
        assert all(a.refusal.reason == common_pb2.REFUSAL_REASON_NO_ROOM_LEFT for a in refused)
        room_counts = Counter(a.check_in.room_number for a in completed)
        band_counts = Counter(a.check_in.band_uid for a in completed)
        assert max(room_counts.values()) == 1, room_counts.most_common(3)
        assert max(band_counts.values()) == 1, band_counts.most_common(3)
        # The database agrees: one active check-in per room and band, and bound bands match.
        with running.platform.engine.connect() as c:
            active = c.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT room_id), count(DISTINCT wristband_id) "
                    "FROM check_ins WHERE annulled_at IS NULL"
                )
            ).one()
            bound = c.execute(sa.text("SELECT count(*) FROM wristbands WHERE state = 'bound'")).scalar_one()
        assert tuple(active) == (len(completed),) * 3
        assert bound == len(completed)
        stats = running.organiser.GetBatchStatistics(
            organiser_pb2.GetBatchStatisticsRequest(code=s.batch_code), metadata=running.auth
        )
        assert stats.arrived == len(completed)
        assert stats.rooms_left == rooms - len(completed)
    finally:
        stop(running)
