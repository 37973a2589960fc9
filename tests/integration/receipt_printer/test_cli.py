"""The technician CLI against the simulator: status, test page, raw file, sim-ctl, and the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from device_kit import cli as kit
from receipt_printer import cli

if TYPE_CHECKING:
    from receipt_printer.simulator import PrinterSimulator

runner = CliRunner()
PRINTER = Path(sys.executable).with_name("receipt-printer")


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_status_of_a_ready_printer(sim: PrinterSimulator) -> None:
    assert run("--port", sim.url, "status") == (0, "状态 / status: 就绪 / ready\n", "")


def test_test_page_prints_a_slip(sim: PrinterSimulator) -> None:
    code, out, _ = run("--port", sim.url, "test-page")
    assert code == 0
    assert out.startswith("已打印 / printed: ")
    assert sim.wait_for_slips(1, timeout=10)[0].lines[0] == "打印测试 / Test page"


def test_print_raw_sends_a_file_of_escpos(sim: PrinterSimulator, tmp_path: Path) -> None:
    raw = tmp_path / "slip.bin"
    raw.write_bytes(b"\x1b@\x1c&" + "原始数据".encode("gb18030") + b"\x1c.\n\x1dV\x01")
    assert run("--port", sim.url, "print-raw", str(raw))[0] == 0
    assert sim.wait_for_slips(1, timeout=10)[0].lines == ["原始数据"]


@pytest.mark.parametrize(
    ("fault", "command", "exit_code", "reason"),
    [
        ("paper_out", "test-page", kit.EXIT_NEEDS_PERSON, "缺纸 / paper out"),
        ("cover_open", "test-page", kit.EXIT_NEEDS_PERSON, "纸仓盖打开 / cover open"),
        ("offline", "status", kit.EXIT_UNREACHABLE, "打印机无应答 / printer does not answer"),
    ],
)
def test_faults_give_the_kit_exit_codes(
    sim: PrinterSimulator, fault: str, command: str, exit_code: int, reason: str
) -> None:
    sim.inject(fault)
    code, _, err = run("--port", sim.url, "--timeout", "0.3", command)
    assert code == exit_code
    assert err.startswith(f"错误 / error: {reason}")


def test_status_exits_4_when_the_printer_cannot_print(sim: PrinterSimulator) -> None:
    sim.inject("paper_out")
    code, out, _ = run("--port", sim.url, "status")
    assert (code, out) == (kit.EXIT_NEEDS_PERSON, "状态 / status: 缺纸 / paper out\n")


def test_verbose_logs_the_slip_on_stderr(sim: PrinterSimulator) -> None:
    done = subprocess.run(
        [str(PRINTER), "--port", sim.url, "-v", "test-page"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0
    assert "receipt_printer.driver INFO slip printed: " in done.stderr


def test_bad_input_exits_2() -> None:
    assert run("status")[0] == kit.EXIT_INPUT
    assert run("--port", "socket://127.0.0.1:1", "print-raw", "/nonexistent")[0] == kit.EXIT_INPUT
    assert run("--port", "socket://127.0.0.1:1", "status")[0] == kit.EXIT_UNREACHABLE


def test_sim_ctl_switches_faults_on_a_running_simulator(sim: PrinterSimulator) -> None:
    assert sim.control_address is not None
    control = "{}:{}".format(*sim.control_address)
    code, out, _ = run("sim-ctl", "--control", control, "faults")
    assert code == 0
    assert "paper_out: " in out
    assert "[after_lines=0]" in out
    code, out, _ = run("sim-ctl", "--control", control, "paper_out", "after_lines=4")
    assert code == 0
    assert json.loads(out)["active"] == {"paper_out": {"after_lines": 4}}
    code, _, err = run("sim-ctl", "--control", control, "paper_out", "after_lines=many")
    assert code == kit.EXIT_INPUT
    assert "must be int" in err
    code, out, _ = run("sim-ctl", "--control", control, "clear")
    assert json.loads(out)["active"] == {}
    assert sim.faults_set.snapshot() == {}


def test_the_simulator_runs_as_a_process_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(PRINTER), "sim", "--listen", "127.0.0.1:0", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("打印机模拟器 / printer simulator: socket://127.0.0.1:")
        url = line.split(": ", 1)[1].strip()
        assert run("--port", url, "test-page")[0] == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    assert (tmp_path / "slip-0001.png").is_file()
