"""`checkin-kiosk devices ...` and `sim id-card` as processes: JSON out, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from band_reader.simulator import MifareBand
from bank_card_reader.simulator import UnionPayDebitCard
from id_card_reader.simulator import SimulatorControl

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pcsc import PcscDaemon, VirtualCardSlot


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from checkin.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[str, SimulatorControl]]:
    """`checkin-kiosk sim id-card` as a process on free ports, with its control channel."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from checkin.cli import main; main()",
            "sim",
            "id-card",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        host, port = info["control"].rsplit(":", 1)
        control = SimulatorControl(host, int(port))
        yield info["url"], control
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_read_id_against_the_simulator_process(sim_process: tuple[str, SimulatorControl]) -> None:
    url, _control = sim_process
    result = run("devices", "read-id", "--port", url, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] is True
    assert out["card"]["id_number"] == "1101**********0314"
    assert out["card"]["name"] == "张**"
    assert "110108196205140314" not in result.stdout + result.stderr
    text = run("devices", "read-id", "--port", url)
    assert "1101**********0314" in text.stdout


@pytest.mark.parametrize(
    ("fault", "code", "key"),
    [
        ("bad_checksum", 0, None),
        ("garbage_bytes", 0, None),
        ("slow_reader:0.2", 0, None),
        ("removed_mid_read", 4, "id_card_removed"),
        ("sam_self_test_failure", 4, "reader_fault"),
        ("no_card", 4, "no_id_card"),
        ("bad_checksum@always", 5, "reader_protocol_error"),
    ],
)
def test_read_id_under_each_fault(
    sim_process: tuple[str, SimulatorControl], fault: str, code: int, key: str | None
) -> None:
    url, control = sim_process
    control.inject_spec(fault)
    result = run("devices", "read-id", "--port", url, "--json", "--timeout", "1")
    out = json.loads(result.stdout)
    assert result.returncode == code, result.stdout
    assert out["ok"] is (code == 0)
    if key:
        assert out["error"] == key
    assert "Traceback" not in result.stderr


def test_read_id_unreachable_port_is_one_line() -> None:
    assert_one_line_failure(run("devices", "read-id", "--port", "socket://127.0.0.1:1"), 3)


@pytest.mark.pcsc
def test_pcsc_diagnostics_against_virtual_cards(
    pcsc_daemon: PcscDaemon, band_slot: VirtualCardSlot, bank_slot: VirtualCardSlot
) -> None:
    band_slot.insert(MifareBand("04A22B1A5C3F80"), wait=True)
    bank_slot.insert(UnionPayDebitCard("6212345678901232"), wait=True)
    env = pcsc_daemon.env
    band = run("devices", "read-band", "--reader", pcsc_daemon.reader_names[0], "--json", env=env)
    assert json.loads(band.stdout)["uid"] == "04A22B1A5C3F80", band.stderr
    bank = run("devices", "read-bank-card", "--reader", pcsc_daemon.reader_names[1], "--json", env=env)
    out = json.loads(bank.stdout)
    assert out["pan"] == "621234******1232", bank.stderr
    assert "6212345678901232" not in bank.stdout + bank.stderr
    listing = json.loads(run("devices", "list", "--json", env=env).stdout)
    assert [r["name"] for r in listing["pcsc_readers"]] == pcsc_daemon.reader_names
    assert all(r["card_present"] for r in listing["pcsc_readers"])


def test_pcsc_diagnostics_without_pcscd(tmp_path: Path) -> None:
    env = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "nobody-here.comm")}
    assert_one_line_failure(run("devices", "read-band", env=env), 3)
    assert_one_line_failure(run("devices", "read-bank-card", "--timeout", "0.5", env=env), 3)
    assert_one_line_failure(run("devices", "list", env=env), 3)
