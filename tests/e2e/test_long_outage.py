"""Issue 10's must-show: the platform is down longer than the identification lifetime while a band is dispensed.

`checkin-kiosk run-scenario scenarios/long-outage.toml` as a real subprocess (the kiosk's real flow and
drivers, the device simulators, a real `platform-server` SIGKILLed at the reader and restarted 12 s
later, with a 5 s identification lifetime). After it returns: the check-in exists, the room is on the
band (read from the UWB gateway simulator's tag), the kiosk's queue is empty, and no case was needed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from contextlib import closing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KIOSK = Path(sys.executable).with_name("checkin-kiosk")
SCENARIO = REPO / "scenarios" / "long-outage.toml"

pytestmark = [pytest.mark.slow, pytest.mark.pcsc, pytest.mark.xdist_group("whole-system"), pytest.mark.timeout(300)]


def test_a_band_dispensed_in_an_outage_longer_than_the_lifetime_gets_its_check_in_and_room(tmp_path: Path) -> None:
    world = tomllib.loads(SCENARIO.read_text(encoding="utf-8"))
    ttl = world["world"]["identification_ttl_s"]
    downtime = world["checkins"][0]["faults"][0]["restart_after_s"]
    assert downtime > ttl  # the outage outlasts the lifetime, as the scenario claims
    env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    done = subprocess.run(
        [str(KIOSK), "run-scenario", str(SCENARIO), "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO,
        env=env,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"exit {done.returncode}: {done.stderr[-2000:]}"
    line = lines[0]
    if line.get("skipped"):
        pytest.skip(line["skipped"])
    assert line["ok"], json.dumps(line, ensure_ascii=False, indent=1)
    assert done.returncode == 0, done.stderr[-2000:]
    # The kiosk's queue settled (the runner waits for depth 0 and reports a problem otherwise).
    assert "problems" not in line or not line["problems"]
    assert line["outcome"] == "room_pending"
    assert line["room"]
    assert line["band_holds"] == {"batch": "OUTAGE-2026-01", "hotel": "GJFD", "room": line["room"]}

    with closing(sqlite3.connect(f"file:{tmp_path / 'platform.db'}?mode=ro", uri=True)) as db:
        check_ins = db.execute("SELECT annulled_at, needs_staff FROM check_ins").fetchall()
        completed = db.execute(
            "SELECT detail FROM audit_log WHERE action = 'complete_check_in' AND outcome = 'completed'"
        ).fetchall()
        open_cases = db.execute("SELECT count(*) FROM needs_staff_cases").fetchone()[0]
    assert check_ins == [(None, 0)]
    # The audit detail is masked text, not JSON: the masking stars long digit runs, such as the digits of
    # face_distance's float, which json.loads then refuses; so late_s is read with a pattern.
    detail = completed[0][0]
    assert '"dispense": "handed_out"' in detail
    late = re.search(r'"late_s": ([0-9.]+)', detail)
    assert late is not None
    assert float(late[1]) > 0  # honoured although the token had expired: the platform signed it
    assert open_cases == 0
    with closing(sqlite3.connect(tmp_path / "kiosk-queue.sqlite3")) as queue:
        assert queue.execute("SELECT count(*) FROM pending_check_ins").fetchone()[0] == 0
