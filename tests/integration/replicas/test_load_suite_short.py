"""The short fault and load suite: real kiosks (gRPC clients) check experts in while a fault strikes,
and the platform's own records must show nothing lost, duplicated or given twice.

The full runs and their figures: bench/load_suite.py and docs/performance.md. These runs load both
cores; they share the xdist group "whole-system" with the e2e scenarios, so the two never run at the same
time (a scenario's camera and timings suffer under that load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_suite(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_suite.py"), "--echo-s", "1", "--client-processes", "1", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1, done.stdout
    row: dict[str, Any] = rows[0]
    return row


def assert_nothing_lost(row: dict[str, Any]) -> None:
    assert row["fault_log"], "the fault never struck"
    assert "fault_outlasted_load" not in row["counts"], row
    assert row["failed_seen_by_kiosk"] == 0, row
    assert row["platform_check_ins"] == row["planned"], row
    assert (row["lost"], row["duplicated"], row["rooms_twice"], row["bands_twice"]) == (0, 0, 0, 0), row
    assert row["uwb_late"] == 0, row
    # Every audit entry placed in the chain by the platform itself (PostgreSQL: its chainers), and whole.
    assert (row["audit_unplaced"], row["audit_findings"]) == (0, 0), row
    assert row["audit_entries"] >= 2 * row["planned"], row  # identify and complete of each check-in


@pytest.mark.xdist_group("whole-system")
def test_sqlite_platform_sigkilled_mid_run_loses_nothing() -> None:
    row = run_suite("--target", "sqlite", "--kiosks", "20", "--checkins", "400", "--fault", "kill-platform")
    assert_nothing_lost(row)


@pytest.mark.xdist_group("whole-system")
def test_a_kiosk_network_cut_mid_check_in_loses_nothing() -> None:
    row = run_suite("--target", "sqlite", "--kiosks", "10", "--checkins", "300", "--fault", "net-cut")
    assert_nothing_lost(row)
    assert row["counts"].get("retries_UNAVAILABLE", 0) > 0, "no call was cut"
    # The serving process's write-lock counters, read from its /metrics around the check-ins: two
    # write transactions per check-in (identify's record, the completion) and a busy share.
    assert row["write_transactions_per_check_in"] >= 2.0, row
    assert 0 < row["write_lock_busy"] <= 1.0, row
    # The share of the Echo bound taken apart from the serving process's CPU in both phases: a check-in
    # (two calls, each with its database work) costs that process more than two Echo calls.
    assert row["serving_echo_calls_per_check_in"] > 2.0, row
    assert row["serving_cpu_ms_per_echo_call"] > 0, row
    assert 0 < row["serving_cores_echo"] <= len(os.sched_getaffinity(0)) + 0.5, row
    assert 0 < row["serving_cores_check_ins"] <= len(os.sched_getaffinity(0)) + 0.5, row
    # The kiosks' own processes: the load costs the machine too.
    assert row["kiosk_cpu_ms_per_check_in"] > 0, row


@pytest.mark.xdist_group("whole-system")
def test_with_the_platform_kept_on_its_own_cpu_the_figures_count_its_cores_only() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one CPU: nothing to keep the kiosks apart on")
    row = run_suite("--target", "sqlite", "--kiosks", "10", "--checkins", "100", "--platform-cpus", str(cpus[-1]))
    assert row["serving_cpus"] == [cpus[-1]], row
    assert row["cores"] == 1, row
    assert (row["lost"], row["duplicated"], row["failed_seen_by_kiosk"]) == (0, 0, 0), row


@pytest.mark.parametrize(
    ("cpus", "says"),
    [
        ("0-4095", "--platform-cpus: CPU "),  # ... is not among this process's
        ("x", "--platform-cpus: 'x' is not a CPU number or range"),
        ("", "--platform-cpus: '' is not a CPU number or range"),
        (",".join(map(str, sorted(os.sched_getaffinity(0)))), "leaves no CPU for the kiosks"),
    ],
)
def test_platform_cpus_that_cannot_be_used_are_refused_before_anything_starts(cpus: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_suite.py"), "--platform-cpus", cpus],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert says in done.stderr, done.stderr


@pytest.mark.postgres
@pytest.mark.xdist_group("whole-system")
def test_rolling_restart_of_the_replicas_fails_no_check_in(pg_url: str) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap.sh installs it)")
    row = run_suite(
        "--target", "cluster", "--replicas", "2", "--kiosks", "20", "--mode", "pace", "--pace", "0.5",
        "--duration", "40", "--fault", "rolling-restart", "--fault-at", "0.05",
    )  # fmt: skip
    assert_nothing_lost(row)
    # Every kiosk beat beside its check-ins (every 5 s, as the kiosk does) while the replicas restarted.
    assert row["heartbeats"] >= row["kiosks"], row


@pytest.mark.postgres
@pytest.mark.xdist_group("whole-system")
def test_the_database_machine_lost_and_its_standby_promoted_loses_no_check_in(pg_url: str) -> None:
    # A private primary with a synchronous standby (scripts/cluster.sh, PG_STANDBY_PORT); a third of
    # the way in, the primary stops at once (no checkpoint, connections cut) and the standby is
    # promoted. The platform's URL names both; every count is read from the promoted server.
    row = run_suite("--target", "postgres", "--kiosks", "20", "--checkins", "400", "--fault", "failover-postgres")
    assert row["target"].endswith("synchronous standby"), row
    assert any("standby promoted" in line for line in row["fault_log"]), row
    assert_nothing_lost(row)
    # A completion commits synchronously (on the standby too): its audit entries all survive. An
    # identify does not wait, so the last few identifies' entries may go with the primary.
    by_action = row["audit_by_action"]
    assert (by_action["complete_check_in"], by_action["uwb_assign"]) == (row["planned"], row["planned"]), row
    assert by_action["identify"] <= row["planned"], row
