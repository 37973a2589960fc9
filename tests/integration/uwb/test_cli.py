"""The technician CLI against the simulator: in-process for commands, as a process for `uwb sim`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from tests.support.waiting import wait_until
from uwb import cli, payload
from uwb.models import BandCleared, RoomAssignment

if TYPE_CHECKING:
    from uwb.simulator import GatewaySimulator

runner = CliRunner()
UWB = Path(sys.executable).with_name("uwb")


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_send_read_clear_and_status(sim: GatewaySimulator) -> None:
    code, out, _ = run("--port", sim.url, "send", "204C", "--batch", "ZB2024-0318", "--hotel", "HX01", "--room", "1208")
    assert code == 0
    assert out.startswith("已写入 / written: tag 204C batch=ZB2024-0318 hotel=HX01 room=1208")
    assert payload.decode(sim.tag(0x204C).held) == RoomAssignment(0x204C, "ZB2024-0318", "HX01", "1208")
    assert run("--port", sim.url, "read", "204C")[1] == "tag 204C: batch=ZB2024-0318 hotel=HX01 room=1208\n"
    assert run("--port", sim.url, "clear", "204c")[0] == 0
    assert payload.decode(sim.tag(0x204C).held) == BandCleared(0x204C)
    code, out, _ = run("--port", sim.url, "status")
    assert code == 0
    assert "node_id: DECA000000001A2B" in out
    assert "tags_heard: 3" in out


@pytest.mark.parametrize(
    ("args", "fault", "exit_code", "reason"),
    [
        (
            ("send", "0F07", "--batch", "B", "--hotel", "H", "--room", "1"),
            "range",
            4,
            "手环不在范围内 / band out of range",
        ),
        (("send", "204C", "--batch", "B", "--hotel", "H", "--room", "12345678901"), None, 2, "content does not fit"),
        (("send", "20G", "--batch", "B", "--hotel", "H", "--room", "1"), None, 2, "invalid tag id"),
        (("status",), "offline", 3, "网关无应答 / gateway does not answer"),
        (("send", "204C", "--batch", "B", "--hotel", "H", "--room", "1"), "offline", 3, "gateway does not answer"),
    ],
)
def test_failures_are_one_line_with_a_specific_exit_code(
    sim: GatewaySimulator, args: tuple[str, ...], fault: str | None, exit_code: int, reason: str
) -> None:
    sim.delivery_window_s = 0.2
    if fault == "range":
        sim.set_tag(0x0F07, in_range=False)
    if fault == "offline":
        sim.set_offline(True)
    # A silent gateway must time out quickly; where it answers, a descheduled thread must not look
    # like silence (one try each).
    timeout = "0.1" if fault == "offline" else "5"
    code, out, err = run("--port", sim.url, "--timeout", timeout, "--retries", "1", *args)
    assert code == exit_code
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("错误 / error: ")
    assert reason in err


def test_no_port_and_unreachable_port() -> None:
    code, _, err = run("status")
    assert (code, err) == (2, "错误 / error: 未指定网关 / no gateway given: use --port URL or set UWB_PORT\n")
    code, _, err = run("--port", "socket://127.0.0.1:1", "status")
    assert code == 3
    assert "Cannot open UWB gateway" in err


def test_simulator_process_with_dump_and_control_channel(tmp_path: Path) -> None:
    dump = tmp_path / "bands.json"
    proc = subprocess.Popen(
        [
            str(UWB),
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--tags",
            "204C,0F07",
            "--dump",
            str(dump),
            "--latency",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-2]
        control = proc.stdout.readline().split()[-1]
        assert url.startswith("socket://127.0.0.1:")
        assert run("--port", url, "send", "204C", "--batch", "ZB1", "--hotel", "HX01", "--room", "1208")[0] == 0
        wait_until(lambda: dump.exists() and '"room": "1208"' in dump.read_text(encoding="utf-8"), what="dump file")
        assert json.loads(dump.read_text(encoding="utf-8"))["tags"]["204C"]["content"] == {
            "kind": "assign",
            "batch": "ZB1",
            "hotel": "HX01",
            "room": "1208",
        }
        code, out, _ = run("sim-ctl", "--control", control, "out_of_range", "tag=0F07")
        assert code == 0
        assert json.loads(out)["active"] == {"out_of_range": {"tag": "0F07"}}
        code, _, err = run(
            "--port", url, "send", "0F07", "--batch", "ZB1", "--hotel", "HX01", "--room", "1", "--ack-timeout", "10"
        )
        assert code == 4, err
        assert run("sim-ctl", "--control", control, "offline")[0] == 0
        assert run("--port", url, "--timeout", "0.1", "--retries", "1", "status")[0] == 3
        code, _, err = run("sim-ctl", "--control", control, "out_of_range", "tag=XYZ")
        assert code == 2
        assert "4 hex digits" in err
        code, _, err = run("sim-ctl", "--control", control, "gremlins")
        assert code == 2
        assert "unknown fault 'gremlins'" in err
        code, out, _ = run("sim-ctl", "--control", control, "clear")
        assert (code, json.loads(out)["active"]) == (0, {})
        assert run("--port", url, "--timeout", "5", "--retries", "1", "status")[0] == 0  # answered: generous
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
