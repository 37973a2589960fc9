"""The real driver against the simulator over socket://, fault by fault."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from device_kit.clock import ManualClock
from tests.support.waiting import wait_until
from uwb import payload, protocol
from uwb.driver import UwbGateway
from uwb.errors import (
    DeliveryLostError,
    DeliverySupersededError,
    DeliveryTimeoutError,
    GatewayBusyError,
    GatewayOfflineError,
    TagNackError,
    TagNoAckError,
    TagOutOfRangeError,
)
from uwb.models import BandCleared, DownlinkState, RoomAssignment
from uwb.simulator import GatewaySimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


A = RoomAssignment(0x204C, "ZB2024-0318", "HX01", "1208")


def test_status_and_node_id(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    status = gateway.status()
    assert status.node_id == sim.node_id
    assert status.radio_up
    assert status.tags_heard == 3


def test_send_waits_for_the_ack_and_the_tag_holds_exactly_the_payload(
    sim: GatewaySimulator, gateway: UwbGateway
) -> None:
    data = payload.encode(A)
    receipt = gateway.send_to_tag(0x204C, data)
    assert receipt.held_check == protocol.held_check(data)
    assert sim.tag(0x204C).held == data
    assert payload.decode(gateway.read_tag(0x204C)) == A
    assert gateway.read_tag(0x0F07) == b""


def test_clear_overwrites_an_assignment(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    gateway.send_to_tag(0x204C, payload.encode(A))
    gateway.send_to_tag(0x204C, payload.encode(BandCleared(0x204C)))
    assert payload.decode(sim.tag(0x204C).held) == BandCleared(0x204C)


def test_out_of_range_tag() -> None:
    """Refused only when the delivery window (3 s on the gateway's clock, moved by hand) closes."""
    clock = ManualClock()
    with (
        GatewaySimulator(tags=(0x0F07,), delivery_window_s=3.0, retry_interval_s=0.5, clock=clock) as sim,
        UwbGateway.open(sim.url, timeout=2.0, retries=2, poll_interval=0.01, ack_timeout=10.0) as gateway,
    ):
        sim.inject("out_of_range", tag="0F07")
        errors: list[TagOutOfRangeError] = []

        def send() -> None:
            try:
                gateway.send_to_tag(0x0F07, payload.encode(BandCleared(0x0F07)))
            except TagOutOfRangeError as err:
                errors.append(err)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        wait_until(lambda: sim.counters().downlinks_queued == 1, what="the downlink to be queued")
        clock.advance(2.9)
        clock.wait_for_sleepers(1)  # the gateway has looked at the clock and tries again at 3.4 s
        assert thread.is_alive()
        clock.advance(1.0)
        thread.join(10)
        assert len(errors) == 1
        assert errors[0].tag_id == 0x0F07
        assert sim.tag(0x0F07).held == b""
        sim.clear("out_of_range")
        gateway.send_to_tag(0x0F07, payload.encode(BandCleared(0x0F07)))
        assert sim.tag(0x0F07).held != b""


def test_tag_faults_name_a_known_tag(sim: GatewaySimulator) -> None:
    with pytest.raises(KeyError, match="No simulated tag 0999"):
        sim.inject("slow_tag", tag="0999")
    with pytest.raises(ValueError, match="hex"):
        sim.inject("drop_acks", tag="")
    assert sim.faults_set.snapshot() == {}


def test_slow_tag_times_out_at_the_host_but_the_gateway_keeps_trying() -> None:
    """The tag wakes on the gateway's clock, moved by hand: it cannot answer before the host gives up."""
    clock = ManualClock()
    with (
        GatewaySimulator(tags=(0x204C,), retry_interval_s=0.01, clock=clock) as sim,
        UwbGateway.open(sim.url, timeout=2.0, retries=2, poll_interval=0.01) as gateway,
    ):
        sim.inject("slow_tag", tag="204C", latency_s=0.3)
        data = payload.encode(A)
        with pytest.raises(DeliveryTimeoutError, match="QUEUED"):
            gateway.send_to_tag(0x204C, data, ack_timeout=0.05)
        assert sim.tag(0x204C).held == b""
        clock.advance(0.3)
        wait_until(lambda: sim.tag(0x204C).held == data, what="slow tag to receive")


def test_a_few_lost_acks_are_absorbed_by_gateway_retransmission(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.inject("drop_acks", tag="204C", count=2)
    gateway.send_to_tag(0x204C, payload.encode(A))
    assert sim.counters().acks_dropped == 2
    assert len(sim.tag(0x204C).history) == 1  # retransmissions of the same bytes are not new writes


def test_acks_lost_for_the_whole_window(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.set_tag(0x204C, drop_acks=1000)
    data = payload.encode(A)
    with pytest.raises(TagNoAckError):
        gateway.send_to_tag(0x204C, data)
    assert sim.tag(0x204C).held == data  # the band has it; only the proof is missing


def test_gateway_offline_then_back(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.set_offline(True)
    generous = gateway.timeout
    gateway.timeout = 0.15  # the silent gateway must time out: short for this part only
    started = time.monotonic()
    with pytest.raises(GatewayOfflineError, match="did not answer"):
        gateway.send_to_tag(0x204C, payload.encode(A))
    assert time.monotonic() - started < 5.0  # bounded: retries x timeout (0.3 s), not forever
    gateway.timeout = generous  # the same driver, back to a timeout the answered path cannot miss
    sim.set_offline(False)
    gateway.send_to_tag(0x204C, payload.encode(A))
    assert payload.decode(sim.tag(0x204C).held) == A


def test_link_lost_is_reported_without_waiting_for_timeouts(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.stop()
    wait_until(gateway._receiver.lost.is_set, what="link loss to be noticed")
    with pytest.raises(GatewayOfflineError, match="lost"):
        gateway.status()


def test_overwrite_supersedes_an_undelivered_older_downlink(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    # The old downlink waits for a tag that wakes late (5 s), so it is still undelivered however long
    # the test is descheduled; the tag is awake again for the new one.
    sim.set_tag(0x204C, latency_s=5.0)
    old = payload.encode(RoomAssignment(0x204C, "ZB1", "HX01", "0101"))
    new = payload.encode(RoomAssignment(0x204C, "ZB1", "HX01", "0202"))
    old_id = gateway.start_downlink(0x204C, old)
    sim.set_tag(0x204C, latency_s=0.0)
    gateway.send_to_tag(0x204C, new)
    assert gateway.downlink_status(old_id).state == DownlinkState.SUPERSEDED
    assert sim.tag(0x204C).history == [new]


def test_without_overwrite_a_pending_downlink_makes_the_gateway_busy(
    sim: GatewaySimulator, gateway: UwbGateway
) -> None:
    sim.set_tag(0x204C, latency_s=5.0)
    gateway.start_downlink(0x204C, payload.encode(A))
    with pytest.raises(GatewayBusyError, match="2 tries"):
        gateway.start_downlink(0x204C, payload.encode(A), overwrite=False)


def test_tag_refuses_a_payload_for_another_tag(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    gateway.send_to_tag(0x204C, payload.encode(A))
    with pytest.raises(TagNackError, match="refused"):
        gateway.send_to_tag(0x204C, payload.encode(RoomAssignment(0x0F07, "ZB1", "HX01", "0999")))
    assert payload.decode(sim.tag(0x204C).held) == A


def test_gateway_restart_loses_the_pending_downlink(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.set_tag(0x204C, latency_s=5.0)
    msg_id = gateway.start_downlink(0x204C, payload.encode(A))
    sim.inject("restart")
    assert sim.faults_set.snapshot() == {}  # a reboot happens once
    assert gateway.downlink_status(msg_id).state == DownlinkState.UNKNOWN


def test_send_reports_a_downlink_lost_by_a_gateway_restart(sim: GatewaySimulator, gateway: UwbGateway) -> None:
    sim.set_tag(0x204C, latency_s=5.0)

    def restart_once_queued() -> None:
        wait_until(lambda: sim.in_flight() == 1, what="downlink queued")
        sim.restart()

    thread = threading.Thread(target=restart_once_queued)
    thread.start()
    with pytest.raises(DeliveryLostError, match="unknown to the gateway"):
        gateway.send_to_tag(0x204C, payload.encode(A), ack_timeout=30.0)
    thread.join()


def test_superseded_while_waiting(sim: GatewaySimulator) -> None:
    # The first downlink waits for a tag that wakes late (5 s), so the second always finds it undelivered.
    sim.set_tag(0x204C, latency_s=5.0)
    # Generous link timeouts: the test is about supersession, and a 0.2 s write timeout expired once
    # on a loaded CI machine (GatewayOfflineError instead of DeliverySupersededError).
    first = UwbGateway.open(sim.url, timeout=2.0, poll_interval=0.01, ack_timeout=30.0)
    second = UwbGateway.open(sim.url, timeout=2.0, poll_interval=0.01, ack_timeout=30.0)
    try:
        errors: list[Exception] = []

        def send_old() -> None:
            try:
                first.send_to_tag(0x204C, payload.encode(RoomAssignment(0x204C, "ZB1", "HX01", "0101")))
            except Exception as err:
                errors.append(err)

        thread = threading.Thread(target=send_old)
        thread.start()
        wait_until(lambda: sim.in_flight() == 1, what="first downlink queued")
        sim.set_tag(0x204C, latency_s=0.0)
        second.send_to_tag(0x204C, payload.encode(A))
        thread.join(30)
        assert len(errors) == 1
        assert isinstance(errors[0], DeliverySupersededError)
        assert payload.decode(sim.tag(0x204C).held) == A
    finally:
        first.close()
        second.close()


# ---------------------------------------------------------------- a scripted peer for wire-level faults


class ScriptedGateway:
    """A TCP peer that answers each request frame with bytes computed by a script (for wire faults)."""

    def __init__(self, script: Callable[[int, protocol.Envelope], bytes]) -> None:
        self.script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.requests: list[protocol.Envelope] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        decoder = protocol.EnvelopeDecoder()
        with conn:
            while chunk := conn.recv(4096):
                for frame in decoder.feed(chunk):
                    self.requests.append(frame)
                    conn.sendall(self.script(len(self.requests), frame))

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedGateway]]:
    peers: list[ScriptedGateway] = []
    yield peers
    for peer in peers:
        peer.close()


NODE_ID_OK = protocol.response(
    protocol.ReturnValue.OK, protocol.Tlv(protocol.TlvType.NODE_ID, (7).to_bytes(8, "little"))
)


def test_a_late_answer_to_an_earlier_request_is_never_taken_for_the_current_one(
    scripted: list[ScriptedGateway],
) -> None:
    stale = protocol.response(
        protocol.ReturnValue.OK, protocol.Tlv(protocol.TlvType.NODE_ID, (666).to_bytes(8, "little"))
    )

    def script(n: int, frame: protocol.Envelope) -> bytes:
        if n == 1:
            return b""  # first request: silence
        # Second request: the stale answer to the first arrives first, then the real one.
        return protocol.encode_envelope((frame.seq - 1) & 0xFF, stale) + protocol.encode_envelope(frame.seq, NODE_ID_OK)

    peer = ScriptedGateway(script)
    scripted.append(peer)
    with UwbGateway.open(peer.url, timeout=0.1, retries=1) as gw:
        with pytest.raises(GatewayOfflineError):
            gw.node_id()  # the silent first request must time out: short timeout for it only
        gw.timeout = 2.0  # the answered second request must not
        assert gw.node_id() == 7


def test_silence_is_retried_with_the_same_sequence_number(scripted: list[ScriptedGateway]) -> None:
    peer = ScriptedGateway(lambda n, frame: b"" if n < 3 else protocol.encode_envelope(frame.seq, NODE_ID_OK))
    scripted.append(peer)
    # Two silences must time out and the third answer must arrive within the same per-try timeout:
    # 0.5 s leaves room for a descheduled thread at a cost of 1 s of silence.
    with UwbGateway.open(peer.url, timeout=0.5, retries=3) as gw:
        assert gw.node_id() == 7
    assert len({f.seq for f in peer.requests}) == 1
    assert len(peer.requests) == 3


def test_noise_and_a_false_sync_before_the_answer(scripted: list[ScriptedGateway]) -> None:
    peer = ScriptedGateway(lambda n, frame: b"\x00\xff\x55\x40" + protocol.encode_envelope(frame.seq, NODE_ID_OK))
    scripted.append(peer)
    # The false sync holds the answer until the link goes quiet for `timeout`; the driver then finds
    # it in the bytes it dropped. That timeout is meant to fire, so it stays short.
    with UwbGateway.open(peer.url, timeout=0.1, retries=3) as gw:
        assert gw.node_id() == 7


def test_an_ack_for_other_data_is_not_a_delivery(scripted: list[ScriptedGateway]) -> None:
    data = payload.encode(A)

    def script(n: int, frame: protocol.Envelope) -> bytes:
        if frame.body[0] == protocol.TlvType.DL_DATA_WRITE:
            body = protocol.response(protocol.ReturnValue.OK, protocol.Tlv(protocol.TlvType.DL_HANDLE, b"\x05\x00"))
        else:
            wrong = protocol.held_check(data) ^ 1
            value = (
                (5).to_bytes(2, "little") + (0x204C).to_bytes(2, "little") + bytes([2]) + wrong.to_bytes(4, "little")
            )
            body = protocol.response(protocol.ReturnValue.OK, protocol.Tlv(protocol.TlvType.DL_STATUS, value))
        return protocol.encode_envelope(frame.seq, body)

    peer = ScriptedGateway(script)
    scripted.append(peer)
    with UwbGateway.open(peer.url, timeout=2.0) as gw, pytest.raises(TagNackError, match="acknowledged data"):
        gw.send_to_tag(0x204C, data)


def test_unopenable_port_is_gateway_offline() -> None:
    with pytest.raises(GatewayOfflineError, match="Cannot open"):
        UwbGateway.open("/dev/does-not-exist-uwb")


@pytest.mark.parametrize("option", [{"timeout": 0}, {"retries": 0}, {"ack_timeout": -1}])
def test_bad_options_are_refused(option: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        UwbGateway.open("loop://", **option)
