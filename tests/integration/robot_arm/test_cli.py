"""The robot-arm CLI against the simulator: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from device_kit.control import ControlClient, ControlError
from robot_arm.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_LINK, app
from robot_arm.simulator import ArmSimulator

if TYPE_CHECKING:
    from robot_arm.simulator import SimSettings

runner = CliRunner()
# Every command here is answered (no transport faults): generous, so a loaded CI machine cannot fake a timeout.
TIMEOUTS = ["--command-timeout", "2", "--motion-timeout", "5"]


def test_status_json(sim: ArmSimulator) -> None:
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["stock"], data["homed"], data["ready"], data["alarm"], data["model"]) == (
        12,
        False,
        False,
        None,
        "WD-ARM1",
    )


def test_status_text_is_bilingual(sim: ArmSimulator) -> None:
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "status"])
    assert result.exit_code == 0
    assert "库存 / stock:          12" in result.output
    assert "急停 / e-stop:         released" in result.output


def test_home_then_self_test_passes_and_keeps_stock(sim: ArmSimulator) -> None:
    assert runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "home"]).exit_code == 0
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "self-test"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    assert len(sim.ledger().stock) == 12


def test_self_test_fails_on_gripper_fault(sim: ArmSimulator) -> None:
    sim.inject("gripper_fault")
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "self-test"])
    assert result.exit_code == EXIT_FAILED
    assert "FAIL  取手环 / pick: arm answered E40 (GRIPPER_FAULT) to PICK" in result.output
    assert "Traceback" not in result.output


def test_dispense_one_dry_run_rejects_the_band(sim: ArmSimulator) -> None:
    runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "home"])
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "dispense-one", "--pickup-timeout", "0.5"])
    assert result.exit_code == 0, result.output
    assert "outcome=rejected" in result.output
    assert "band=reject_bin" in result.output
    assert len(sim.ledger().reject_bin) == 1


def test_device_error_is_one_line_and_exit_code(sim: ArmSimulator) -> None:
    sim.press_estop()
    result = runner.invoke(app, ["--port", sim.url, *TIMEOUTS, "home"])
    assert result.exit_code == 4
    assert result.output.strip().splitlines() == [
        "错误 / error: arm error: arm answered E50 (EMERGENCY_STOP) to HOME: emergency stop"
    ]


def test_missing_port_and_unreachable_port() -> None:
    result = runner.invoke(app, ["status"], env={"ROBOT_ARM_PORT": ""})
    assert result.exit_code == EXIT_CONFIG
    assert "no arm port" in result.output
    result = runner.invoke(app, ["--port", "socket://127.0.0.1:1", "status"])
    assert result.exit_code == EXIT_LINK
    assert "Traceback" not in result.output


def test_sim_rejects_bad_options() -> None:
    for args, message in (
        (["sim", "--listen", "nowhere"], "HOST:PORT"),
        (["sim", "--fault", "gremlins", "--listen", "127.0.0.1:0"], "unknown simulator fault"),
        (["sim", "--bands", "04A1,XYZ", "--listen", "127.0.0.1:0"], "band UID"),
        (["sim", "--speed", "0", "--listen", "127.0.0.1:0"], "speed must be between"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_CONFIG, (args, result.output)
        assert message in result.output


def test_sim_process_serves_the_driver(tmp_path: Path) -> None:
    bands = tmp_path / "bands.txt"
    bands.write_text("# wristbands, top of stock first\n04A1B2C3D4E5F0\n04A1B2C3D4E5F1\n", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robot_arm",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "1000",
            "--bands-file",
            str(bands),
            "--fault",
            "jam",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the simulator says where it listens
        assert "listening on socket://127.0.0.1:" in line, line + (process.stderr.read() if process.stderr else "")
        url = line.split()[4]
        status = runner.invoke(app, ["--port", url, *TIMEOUTS, "status", "--json"])
        assert json.loads(status.output)["stock"] == 2
        home = runner.invoke(app, ["--port", url, *TIMEOUTS, "home"])
        assert home.exit_code == 4  # the --fault jam fired on the first motion
        assert "E42" in home.output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_sim_ctl_switches_faults_and_runs_scenario_actions(sim_settings: SimSettings) -> None:
    with ArmSimulator(sim_settings, control_port=0) as simulator:
        assert simulator.control_address is not None
        control = "{}:{}".format(*simulator.control_address)
        result = runner.invoke(app, ["sim-ctl", "--control", control, "faults"])
        assert result.exit_code == 0, result.output
        assert "slow_home: " in result.output
        assert "[factor=5.0]" in result.output
        result = runner.invoke(app, ["sim-ctl", "--control", control, "power_loss", "keep_band=yes"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["active"] == {"power_loss": {"keep_band": True}}
        assert simulator.pending_faults() == ["power_loss"]
        result = runner.invoke(app, ["sim-ctl", "--control", control, "gremlins"])
        assert result.exit_code == EXIT_CONFIG
        assert "unknown simulator fault 'gremlins'" in result.output
        result = runner.invoke(app, ["sim-ctl", "--control", control, "clear"])
        assert json.loads(result.output)["active"] == {}
        client = ControlClient(*simulator.control_address)
        assert client.request("estop_press")["alarm"] == 50
        assert simulator.status().estop
        client.request("estop_release")
        assert client.request("refill", bands=["04AABBCC"])["ledger"]["stock"] == 13
        with pytest.raises(ControlError, match="already in the dispenser"):
            client.request("refill", bands=["04AABBCC"])
        with pytest.raises(ControlError, match="known: inject, clear, faults, status, take"):
            client.request("explode")
