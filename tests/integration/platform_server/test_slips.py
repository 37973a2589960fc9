"""Check-in slips on the platform: the code CompleteCheckIn returns, its look-up, and the printer's paper."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from expertcheckin.v1 import kiosk_pb2, organiser_pb2

from platform_server.db.models import AuditEntry
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import slips
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.support.platform import start, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.platform import Running

Complete = kiosk_pb2.CompleteCheckInResponse


def _check_in(running: Running, kiosk: str, n: int) -> kiosk_pb2.CompleteCheckInResponse:
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request(kiosk, s.batch_code, s.ids[n])).identification_token
    done: kiosk_pb2.CompleteCheckInResponse = running.kiosk.CompleteCheckIn(
        complete_request(kiosk, token, s.bands[n][0])
    )
    assert done.outcome == Complete.OUTCOME_COMPLETED, done.refusal
    return done


def test_complete_check_in_returns_a_slip_code_and_the_kiosks_running_number(running: Running) -> None:
    first, second, other = _check_in(running, "K1", 0), _check_in(running, "K1", 1), _check_in(running, "K2", 2)
    codes = {first.check_in.slip_code, second.check_in.slip_code, other.check_in.slip_code}
    assert len(codes) == 3
    assert all(re.fullmatch(f"[{slips.ALPHABET}]{{8}}", code) for code in codes)
    assert (first.check_in.slip_serial, second.check_in.slip_serial, other.check_in.slip_serial) == (1, 2, 1)


def test_the_code_resolves_to_the_check_in_masked_and_the_look_up_is_audited(running: Running) -> None:
    done = _check_in(running, "K1", 0)
    code = done.check_in.slip_code
    typed = f" {code[:4].lower()}-{code[4:]} "  # as a person types it from the paper
    slip = slips.look_up_slip(running.platform.new_uow(), running.platform.ctx, typed)
    assert slip.valid
    assert slip.code == code
    assert slip.check_in.check_in_id == done.check_in.check_in_id
    assert slip.check_in.id_number_masked == done.check_in.id_number_masked
    assert "*" in slip.check_in.id_number_masked
    with running.platform.new_uow() as uow:
        actions = uow.execute(
            sa.select(AuditEntry.action, AuditEntry.outcome).where(AuditEntry.action == "slip_look_up")
        )
        assert actions.all() == [("slip_look_up", "found")]


def test_an_annulled_check_ins_slip_is_shown_as_no_longer_valid(running: Running) -> None:
    done = _check_in(running, "K1", 0)
    annulled = running.kiosk.AnnulCheckIn(
        kiosk_pb2.AnnulCheckInRequest(
            request_id=rid(),
            kiosk_id="K1",
            check_in_id=done.check_in.check_in_id,
            reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
        )
    )
    assert annulled.outcome == kiosk_pb2.AnnulCheckInResponse.OUTCOME_ANNULLED
    slip = slips.look_up_slip(running.platform.new_uow(), running.platform.ctx, done.check_in.slip_code)
    assert not slip.valid


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("ABCD2345", NotFoundError, "no slip with code ABCD-2345"),
        ("ABC", InvalidRequestError, "a slip code is 8 characters"),
        ("ABCD234O", InvalidRequestError, "a slip code is 8 characters"),  # O is not in the alphabet
    ],
)
def test_unknown_and_malformed_codes_are_refused(
    running: Running, text: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        slips.look_up_slip(running.platform.new_uow(), running.platform.ctx, text)


@pytest.mark.parametrize(
    ("paper", "stored"),
    [
        (kiosk_pb2.PRINTER_PAPER_NEAR_END, "near_end"),
        (kiosk_pb2.PRINTER_PAPER_OUT, "out"),
        (kiosk_pb2.PRINTER_PAPER_OK, "ok"),
        (kiosk_pb2.PRINTER_PAPER_UNSPECIFIED, ""),
    ],
)
def test_the_heartbeat_carries_the_printers_paper_to_the_statistics(
    running: Running, paper: kiosk_pb2.PrinterPaper, stored: str
) -> None:
    running.kiosk.Heartbeat(
        kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=50, software_version="1.0", printer_paper=paper)
    )
    stats = running.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=running.seeded.batch_code), metadata=running.auth
    )
    assert next(k for k in stats.kiosks if k.kiosk_id == "K1").printer_paper == stored


PLATFORM_SERVER = Path(sys.executable).with_name("platform-server")
DATA_KEY_TEXT = "test-only data key, never used in production"  # support.TEST_KEY comes from this text


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[Running]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    yield running
    stop(running)


def cli(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """The organiser CLI as a real process on the running platform's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env["PLATFORM_DATA_KEY"] = DATA_KEY_TEXT
    db = running.platform.config.database.url
    return subprocess.run(
        [str(PLATFORM_SERVER), "--db", db, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_desk_looks_a_slip_up_and_status_shows_the_printers_paper(on_sqlite: Running) -> None:
    done = _check_in(on_sqlite, "K1", 0)
    code = done.check_in.slip_code
    shown = cli(on_sqlite, "slips", "show", f"{code[:4]}-{code[4:]}".lower())
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"凭证 / slip {code[:4]}-{code[4:]}: 有效 / valid"
    assert f"专家 expert 专家0 {done.check_in.id_number_masked}" in shown.stdout
    assert "终端 kiosk K1 No. 000001" in shown.stdout
    missing = cli(on_sqlite, "slips", "show", "ABCD2345")
    assert missing.returncode != 0
    assert "no slip with code ABCD-2345" in missing.stderr
    on_sqlite.kiosk.Heartbeat(
        kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=50, printer_paper=kiosk_pb2.PRINTER_PAPER_OUT)
    )
    status = cli(on_sqlite, "status", "--batch", on_sqlite.seeded.batch_code)
    assert status.returncode == 0, status.stderr
    k1 = next(line for line in status.stdout.splitlines() if line.strip().startswith("K1:"))
    assert k1.endswith("打印机缺纸 PAPER OUT")
