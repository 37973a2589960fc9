"""After a full run, neither the database files nor the logs hold a full ID or card number."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from expertcheckin.v1 import kiosk_pb2

from platform_server.log_masking import configure_logging
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.support.platform import start, stop
from tests.unit.platform_server.support import luhn_pan

if TYPE_CHECKING:
    from pathlib import Path


def test_database_and_logs_never_hold_full_numbers(tmp_path: Path) -> None:
    log_file = tmp_path / "platform.log"
    configure_logging("DEBUG", str(log_file))
    db_file = tmp_path / "platform.db"
    running = start(f"sqlite:///{db_file}", experts=4)
    s = running.seeded
    pans = [luhn_pan(n=1000 + i) for i in range(3)]
    try:
        for i in range(3):
            token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[i])).identification_token
            done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[i][0], pan=pans[i]))
            assert done.check_in.room_number
        running.kiosk.AnnulCheckIn(
            kiosk_pb2.AnnulCheckInRequest(
                request_id=rid(),
                kiosk_id="K1",
                check_in_id=done.check_in.check_in_id,
                reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
                detail=f"staff typed {pans[0]} by mistake",
            )
        )
        # A log call that (wrongly) formats the numbers: the filter must still mask them.
        logging.getLogger("platform_server.test").warning("leak attempt %s %s", s.ids[0], pans[1])
        running.kiosk.ReportKioskEvent(
            kiosk_pb2.ReportKioskEventRequest(
                request_id=rid(), kiosk_id="K1", event="cancelled", detail=f"id {s.ids[3]}"
            )
        )
    finally:
        stop(running)
        for handler in logging.getLogger().handlers:
            handler.flush()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("platform.db")] + [log_file]
    assert log_file.stat().st_size > 0
    blob = b"".join(p.read_bytes() for p in files)
    assert b"leak attempt" in blob
    for secret in [*s.ids, *pans]:
        assert secret.encode() not in blob, f"{secret[:4]}... found at rest"
    logging.getLogger().handlers.clear()
