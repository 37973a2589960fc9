"""The device kit on its own: faults, the server lifecycle and the control channel."""

from __future__ import annotations

import socket

import pytest

from device_kit.control import ControlClient, ControlError
from device_kit.faults import FaultError, FaultSet, FaultSpec
from device_kit.server import SimulatorServer

SPECS = (FaultSpec("slow", "slow", {"delay_s": 0.5, "times": 1}), FaultSpec("offline", "off"))


class EchoSimulator(SimulatorServer):
    """The smallest device: echoes what it gets, unless offline. Shows what a device writes itself."""

    name = "echo-sim"

    def serve_connection(self, conn: socket.socket) -> None:
        while data := conn.recv(1024):
            if not self.faults_set.active("offline"):
                conn.sendall(data)


def test_faults_take_typed_parameters_with_defaults() -> None:
    faults = FaultSet(SPECS)
    faults.inject("slow", delay_s="2.5")
    assert faults.param("slow", "delay_s") == 2.5
    assert faults.param("slow", "times") == 1
    assert faults.snapshot() == {"slow": {"delay_s": 2.5, "times": 1}}
    faults.clear("slow")
    assert not faults.active("slow")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("jam", {}, "unknown fault 'jam'; known: slow, offline"),
        ("slow", {"speed": 1}, "no parameter 'speed'; known: delay_s, times"),
        ("slow", {"times": "x"}, "'times' must be int"),
        ("slow", {"times": 1.5}, "'times' must be int"),
        ("slow", {"delay_s": -1}, "must not be negative"),
    ],
)
def test_bad_faults_are_refused_with_the_known_ones(name: str, params: dict[str, object], message: str) -> None:
    faults = FaultSet(SPECS)
    with pytest.raises(FaultError, match=message):
        faults.inject(name, **params)  # type: ignore[arg-type]
    assert faults.snapshot() == {}


def test_the_context_manager_is_exactly_start_then_stop() -> None:
    sim = EchoSimulator(FaultSet(SPECS))
    assert not sim.running
    with sim as entered:
        assert entered is sim
        assert sim.running
        host, port = sim.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    assert not sim.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=1)


def test_starting_twice_is_an_error_and_stopping_twice_is_not() -> None:
    sim = EchoSimulator(FaultSet(SPECS)).start()
    with pytest.raises(RuntimeError, match="already running"):
        sim.start()
    sim.stop()
    sim.stop()


def test_the_control_channel_switches_faults_from_another_process() -> None:
    with EchoSimulator(FaultSet(SPECS), control_port=0) as sim:
        assert sim.control_address is not None
        client = ControlClient(*sim.control_address)
        assert set(client.faults()) == {"slow", "offline"}
        assert client.inject("slow", delay_s=1)["active"] == {"slow": {"delay_s": 1.0, "times": 1}}
        assert sim.faults_set.active("slow")
        with pytest.raises(ControlError, match="unknown fault 'jam'"):
            client.inject("jam")
        with pytest.raises(ControlError, match="unknown op 'explode'"):
            client.request("explode")
        assert client.clear()["active"] == {}
    with pytest.raises(ControlError, match="does not answer"):
        client.status()
