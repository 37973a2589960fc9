"""A UWB gateway simulator with wristband tags, speaking the gateway protocol over TCP (``socket://``).

The driver reaches it exactly as it reaches a real gateway behind a serial-to-TCP bridge, so every
test runs the production code path. Tags keep the last payload they accepted. Faults are named
switches settable at runtime, in-process or through the line-based control channel
(docs/technician-uwb.md): tag out of range, slow tag, dropped acknowledgements, gateway offline,
gateway restart (queue lost).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from device_kit.clock import Clock, SystemClock
from device_kit.faults import FaultSet, FaultSpec
from device_kit.server import SimulatorServer
from uwb import payload
from uwb.errors import PayloadError, ProtocolError
from uwb.models import (
    RESERVED_TAG_IDS,
    TERMINAL_DOWNLINK_STATES,
    BandCleared,
    DownlinkState,
    StatusFlag,
    format_tag_id,
    parse_tag_id,
)
from uwb.protocol import (
    DL_FLAG_OVERWRITE,
    MAX_USER_DATA_LEN,
    EnvelopeDecoder,
    ReturnValue,
    Tlv,
    TlvType,
    encode_envelope,
    held_check,
    parse_tlvs,
    response,
)

if TYPE_CHECKING:
    import socket

_log = logging.getLogger("uwb.sim")
_wire = logging.getLogger("uwb.sim.wire")

DEFAULT_NODE_ID = 0xDECA_0000_0000_1A2B
#: Finished downlinks remembered for status queries; older ids answer UNKNOWN, as after a restart.
_HISTORY = 1024
#: Inter-byte silence after which a partial request frame is abandoned.
_QUIET_RESET_S = 0.05


FAULTS: Final = (
    FaultSpec("offline", "网关离线 / gateway offline: it reads and ignores every frame and delivers nothing"),
    FaultSpec("restart", "网关重启 / gateway reboot: its downlink queue and history are lost (once)"),
    FaultSpec("out_of_range", "手环不在范围内 / a tag out of range", {"tag": ""}),
    FaultSpec("slow_tag", "手环唤醒慢 / a tag wakes late", {"tag": "", "latency_s": 2.0}),
    FaultSpec(
        "drop_acks", "手环确认丢失 / a tag's acknowledgements are lost (it keeps the data)", {"tag": "", "count": 1}
    ),
)
_TAG_FAULTS: Final = ("out_of_range", "slow_tag", "drop_acks")


@dataclass
class SimTag:
    """A wristband tag: what it holds and its fault switches."""

    tag_id: int
    in_range: bool = True
    #: Seconds between a downlink being queued and the tag's next wake-up (a slow tag has a large value).
    latency_s: float = 0.0
    #: Acknowledgements still to be lost on the way back; the tag keeps the data regardless.
    drop_acks: int = 0
    held: bytes = b""
    #: Every payload the tag accepted, oldest first, so tests can prove nothing foreign was ever written.
    history: list[bytes] = field(default_factory=list)
    nacks: int = 0
    #: Downlinks the gateway accepted for this tag (re-sends included).
    downlinks: int = 0


@dataclass
class _Downlink:
    msg_id: int
    tag_id: int
    data: bytes
    state: DownlinkState
    next_try_at: float
    deadline: float
    held_crc: int = 0


@dataclass(frozen=True, slots=True)
class SimCounters:
    """What the simulated gateway has done since it started."""

    frames_in: int
    frames_answered: int
    downlinks_queued: int
    acked: int
    acks_dropped: int
    nacked: int
    superseded: int


class GatewaySimulator(SimulatorServer):
    """In-process UWB gateway on a TCP port; ``start()`` it and open ``sim.url`` with the driver."""

    name = "uwb-sim"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tags: tuple[int, ...] = (),
        node_id: int = DEFAULT_NODE_ID,
        delivery_window_s: float = 3.0,
        retry_interval_s: float = 0.02,
        queue_limit: int = 64,
        dump_path: Path | None = None,
        control_port: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(FaultSet(FAULTS), host, port, control_port=control_port)
        #: Tag latency, retries and the delivery window pass on this clock (a ManualClock in tests).
        self.clock: Clock = clock or SystemClock()
        self.node_id = node_id
        self.delivery_window_s = delivery_window_s
        self.retry_interval_s = retry_interval_s
        self.queue_limit = queue_limit
        self.dump_path = dump_path
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._tags: dict[int, SimTag] = {t: SimTag(t) for t in tags}
        self._reported: dict[int, bytes] = {}
        self._downlinks: dict[int, _Downlink] = {}
        self._finished: list[int] = []
        self._next_msg_id = 1
        self._offline = False
        self._fault_tags: dict[str, int] = {}
        self._latency_before: dict[int, float] = {}
        self._c = dict.fromkeys(SimCounters.__slots__, 0)

    # ------------------------------------------------------------ lifecycle: device_kit's SimulatorServer

    def start(self) -> Self:
        """Bind, listen and serve (returns self), with the delivery engine running."""
        super().start()
        self._spawn(self._engine, name="uwb-sim-engine")
        self._write_dump()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (a gateway power-off)."""
        self._running.clear()  # before waking the engine, so it sees the stop and ends
        with self._lock:
            self._wake.notify_all()
        super().stop()

    # ------------------------------------------------------------ faults (the kit's one interface)

    def inject(self, name: str, **params: Any) -> None:
        """Switch a named fault on (FAULTS); a tag fault names its tag (``tag="204C"``)."""
        if name in _TAG_FAULTS:
            tag_id = self._tag(parse_tag_id(str(params.get("tag", "")))).tag_id
            params = {**params, "tag": format_tag_id(tag_id)}
        super().inject(name, **params)

    def fault_changed(self, name: str | None) -> None:
        """Apply a switched fault to the simulated world."""
        for fault in (name,) if name is not None else (*_TAG_FAULTS, "offline"):
            self._apply(fault)

    def _apply(self, name: str) -> None:
        on, param = self.faults_set.active(name), self.faults_set.param
        with self._lock:
            if name == "offline":
                self._offline = on
                _log.info("gateway %s", "offline" if on else "online")
            elif name == "restart" and on:
                self.restart()
                self.faults_set.clear("restart")  # a reboot happens once
            elif name in _TAG_FAULTS:
                self._apply_tag_fault(name, on, param)
            self._wake.notify_all()
        self._write_dump()

    def _apply_tag_fault(self, name: str, on: bool, param: Any) -> None:
        if on:
            tag = self._tag(parse_tag_id(str(param(name, "tag"))))
            self._fault_tags[name] = tag.tag_id
        elif name in self._fault_tags:
            tag = self._tag(self._fault_tags.pop(name))
        else:
            return
        if name == "out_of_range":
            tag.in_range = not on
        elif name == "slow_tag":
            if on:
                self._latency_before.setdefault(tag.tag_id, tag.latency_s)
                tag.latency_s = float(param(name, "latency_s"))
            else:
                tag.latency_s = self._latency_before.pop(tag.tag_id, 0.0)
        elif name == "drop_acks":
            tag.drop_acks = int(param(name, "count")) if on else 0

    def control_status(self) -> dict[str, Any]:
        """``sim-ctl status``: what each tag holds and the counters."""
        return {**self.snapshot(), "counters": dataclasses.asdict(self.counters())}

    # ------------------------------------------------------------ fault switches

    def add_tag(self, tag_id: int, *, in_range: bool = True, latency_s: float = 0.0) -> None:
        """Put a tag in the simulated world (idempotent)."""
        with self._lock:
            self._tags.setdefault(tag_id, SimTag(tag_id, in_range=in_range, latency_s=latency_s))
        self._write_dump()

    def set_tag(
        self,
        tag_id: int,
        *,
        in_range: bool | None = None,
        latency_s: float | None = None,
        drop_acks: int | None = None,
    ) -> None:
        """Change a tag's fault switches at runtime."""
        with self._lock:
            tag = self._tag(tag_id)
            if in_range is not None:
                tag.in_range = in_range
            if latency_s is not None:
                tag.latency_s = latency_s
            if drop_acks is not None:
                tag.drop_acks = drop_acks
            self._wake.notify_all()
        self._write_dump()

    def set_all_tags(self, *, latency_s: float | None = None, in_range: bool | None = None) -> None:
        """Change a switch on every tag at once."""
        with self._lock:
            for tag_id in self._tags:
                self.set_tag(tag_id, latency_s=latency_s, in_range=in_range)

    def set_offline(self, offline: bool) -> None:
        """Gateway offline (the ``offline`` fault): it ignores every frame and delivers nothing until back online."""
        if offline:
            self.inject("offline")
        else:
            self.clear("offline")

    @property
    def offline(self) -> bool:
        """Whether the gateway is currently silent."""
        return self._offline

    def restart(self) -> None:
        """Gateway reboot: its downlink queue and history are lost; tags keep what they hold."""
        with self._lock:
            self._downlinks.clear()
            self._finished.clear()

    def _tag(self, tag_id: int) -> SimTag:
        try:
            return self._tags[tag_id]
        except KeyError:
            raise KeyError(f"No simulated tag {format_tag_id(tag_id)}") from None

    # ------------------------------------------------------------ inspection

    def tag(self, tag_id: int) -> SimTag:
        """A copy of a tag's state."""
        with self._lock:
            tag = self._tag(tag_id)
            return SimTag(
                tag.tag_id,
                tag.in_range,
                tag.latency_s,
                tag.drop_acks,
                tag.held,
                list(tag.history),
                tag.nacks,
                tag.downlinks,
            )

    def tag_ids(self) -> list[int]:
        """Every simulated tag id, sorted."""
        with self._lock:
            return sorted(self._tags)

    def counters(self) -> SimCounters:
        """Traffic and delivery counters."""
        with self._lock:
            return SimCounters(**self._c)

    def in_flight(self) -> int:
        """Downlinks queued or sent and not yet finished."""
        with self._lock:
            return sum(1 for d in self._downlinks.values() if d.state not in TERMINAL_DOWNLINK_STATES)

    def snapshot(self) -> dict[str, Any]:
        """What each tag holds, decoded, as written to the --dump file."""
        with self._lock:
            tags = {format_tag_id(t.tag_id): _describe(t) for t in sorted(self._tags.values(), key=lambda t: t.tag_id)}
            return {"offline": self._offline, "tags": tags}

    def _write_dump(self) -> None:
        if self.dump_path is None:
            return
        text = json.dumps(self.snapshot(), ensure_ascii=False, indent=2)
        # Write-then-rename so a reader never sees a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.dump_path.parent, prefix=".uwb-dump-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(self.dump_path)

    # ------------------------------------------------------------ network

    def serve_connection(self, conn: socket.socket) -> None:
        """Answer request frames on one driver connection (the kit's accept loop calls this)."""
        decoder = EnvelopeDecoder()
        last: tuple[int, bytes, bytes] | None = None
        try:
            # Like the gateway firmware: a partial frame followed by this much silence is dropped (resync).
            conn.settimeout(_QUIET_RESET_S)
            while self.running:
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    frames = decoder.drop_partial() if decoder.pending else []
                else:
                    if not chunk:
                        return
                    frames = decoder.feed(chunk)
                for frame in frames:
                    with self._lock:
                        self._c["frames_in"] += 1
                        if self._offline:
                            _wire.debug(">>> (offline, ignored) %s", frame.body.hex(" "))
                            continue
                    _wire.debug(">>> seq=%d %s", frame.seq, frame.body.hex(" "))
                    if last is not None and last[0] == frame.seq and last[1] == frame.body:
                        # A retransmission after a lost response: answer again, do not act twice.
                        reply = last[2]
                    else:
                        reply = encode_envelope(frame.seq, self.handle(frame.body))
                        last = (frame.seq, frame.body, reply)
                    _wire.debug("<<< %s", reply.hex(" "))
                    conn.sendall(reply)
                    with self._lock:
                        self._c["frames_answered"] += 1
        except OSError:
            return

    # ------------------------------------------------------------ gateway logic

    def handle(self, body: bytes) -> bytes:
        """Answer one request body (one TLV), as the gateway firmware would."""
        try:
            tlvs = parse_tlvs(body)
        except ProtocolError:
            return response(ReturnValue.UNKNOWN_OR_BROKEN)
        if len(tlvs) != 1:
            return response(ReturnValue.UNKNOWN_OR_BROKEN)
        tlv = tlvs[0]
        with self._lock:
            return self._dispatch(tlv.type, tlv.value)

    def _dispatch(self, tlv_type: int, value: bytes) -> bytes:
        """Route one command; a known command with a value of the wrong size is an invalid parameter."""
        expected_len = {
            TlvType.NODE_ID_GET: 0,
            TlvType.STATUS_GET: 0,
            TlvType.DL_STATUS_GET: 2,
            TlvType.TAG_DATA_READ: 2,
        }
        if tlv_type in expected_len and len(value) != expected_len[TlvType(tlv_type)]:
            return response(ReturnValue.INVALID_PARAM)
        match tlv_type:
            case TlvType.NODE_ID_GET:
                answer = response(ReturnValue.OK, Tlv(TlvType.NODE_ID, struct.pack("<Q", self.node_id)))
            case TlvType.STATUS_GET:
                answer = self._status()
            case TlvType.DL_DATA_WRITE:
                answer = self._dl_write(value)
            case TlvType.DL_STATUS_GET:
                answer = self._dl_status(struct.unpack("<H", value)[0])
            case TlvType.TAG_DATA_READ:
                data = self._reported.get(struct.unpack("<H", value)[0], b"")
                answer = response(ReturnValue.OK, Tlv(TlvType.USR_DATA, data))
            case _:
                answer = response(ReturnValue.UNKNOWN_OR_BROKEN)
        return answer

    def _status(self) -> bytes:
        flags = StatusFlag.UWBMAC_JOINED | StatusFlag.BH_INITIALIZED
        queued = sum(1 for d in self._downlinks.values() if d.state not in TERMINAL_DOWNLINK_STATES)
        heard = sum(1 for t in self._tags.values() if t.in_range)
        counters = struct.pack("<HHI", min(queued, 0xFFFF), min(heard, 0xFFFF), self._c["acked"] & 0xFFFFFFFF)
        return response(
            ReturnValue.OK, Tlv(TlvType.STATUS, struct.pack("<H", flags)), Tlv(TlvType.GW_COUNTERS, counters)
        )

    def _dl_write(self, value: bytes) -> bytes:
        if len(value) < 4 or len(value) - 3 > MAX_USER_DATA_LEN:
            return response(ReturnValue.INVALID_PARAM)
        (tag_id,) = struct.unpack("<H", value[:2])
        flags, data = value[2], value[3:]
        if tag_id in RESERVED_TAG_IDS:
            return response(ReturnValue.INVALID_PARAM)
        active_list = [d for d in self._downlinks.values() if d.state not in TERMINAL_DOWNLINK_STATES]
        pending = [d for d in active_list if d.tag_id == tag_id]
        if pending and not flags & DL_FLAG_OVERWRITE:
            return response(ReturnValue.BUSY)
        if len(active_list) - len(pending) >= self.queue_limit:
            return response(ReturnValue.BUSY)
        for old in pending:
            # Overwrite: an older undelivered downlink to this tag must never land after the newer one.
            self._finish(old, DownlinkState.SUPERSEDED)
            self._c["superseded"] += 1
        msg_id = self._allocate_msg_id()
        now = self.clock.monotonic()
        tag = self._tags.get(tag_id)
        if tag is not None:
            tag.downlinks += 1
        first_try = now + (tag.latency_s if tag else 0.0)
        self._downlinks[msg_id] = _Downlink(
            msg_id, tag_id, bytes(data), DownlinkState.QUEUED, first_try, now + self.delivery_window_s
        )
        self._c["downlinks_queued"] += 1
        self._wake.notify_all()
        return response(ReturnValue.OK, Tlv(TlvType.DL_HANDLE, struct.pack("<H", msg_id)))

    def _allocate_msg_id(self) -> int:
        while True:
            msg_id = self._next_msg_id
            self._next_msg_id = self._next_msg_id % 0xFFFF + 1  # 1..65535, 0 never used
            if msg_id not in self._downlinks:
                return msg_id

    def _dl_status(self, msg_id: int) -> bytes:
        downlink = self._downlinks.get(msg_id)
        if downlink is None:
            value = struct.pack("<HHBI", msg_id, 0, DownlinkState.UNKNOWN, 0)
        else:
            value = struct.pack("<HHBI", msg_id, downlink.tag_id, downlink.state, downlink.held_crc)
        return response(ReturnValue.OK, Tlv(TlvType.DL_STATUS, value))

    def _finish(self, downlink: _Downlink, state: DownlinkState) -> None:
        downlink.state = state
        self._finished.append(downlink.msg_id)
        while len(self._finished) > _HISTORY:
            self._downlinks.pop(self._finished.pop(0), None)

    def _engine(self) -> None:
        """Deliver queued downlinks when their tag wakes up; retry until acked or the window closes."""
        while True:
            changed = False
            with self._lock:
                if not self.running:
                    return
                now = self.clock.monotonic()
                next_due = now + 1.0
                if not self._offline:
                    for downlink in list(self._downlinks.values()):
                        if downlink.state in TERMINAL_DOWNLINK_STATES:
                            continue
                        if downlink.next_try_at <= now:
                            changed |= self._try_deliver(downlink, now)
                        if downlink.state not in TERMINAL_DOWNLINK_STATES:
                            next_due = min(next_due, downlink.next_try_at)
                if not changed:
                    self.clock.wait(self._wake, max(0.0, next_due - self.clock.monotonic()))
            if changed:
                self._write_dump()

    def _try_deliver(self, downlink: _Downlink, now: float) -> bool:
        """One radio attempt; returns True when a tag's content changed."""
        tag = self._tags.get(downlink.tag_id)
        if tag is None or not tag.in_range:
            if now >= downlink.deadline:
                self._finish(downlink, DownlinkState.UNREACHABLE)
            else:
                downlink.next_try_at = now + self.retry_interval_s
            return False
        changed = False
        # The band firmware checks the CRC and the addressee before it stores anything.
        try:
            content = payload.decode(downlink.data)
            refusal = None if content.tag_id == tag.tag_id else f"payload is for tag {format_tag_id(content.tag_id)}"
        except PayloadError as err:
            refusal = str(err)
        if refusal is not None:
            _log.warning("tag %s refused downlink %d: %s", format_tag_id(tag.tag_id), downlink.msg_id, refusal)
            tag.nacks += 1
            self._c["nacked"] += 1
            self._finish(downlink, DownlinkState.NACKED)
            return False
        if tag.held != downlink.data:
            # Receiving the same bytes again (a retransmission) changes nothing: the write is idempotent.
            changed = True
            tag.held = downlink.data
            tag.history.append(downlink.data)
            _log.info("tag %s now holds %s", format_tag_id(tag.tag_id), _content_text(content))
        if tag.drop_acks > 0:
            tag.drop_acks -= 1
            self._c["acks_dropped"] += 1
            downlink.state = DownlinkState.SENT
            if now >= downlink.deadline:
                self._finish(downlink, DownlinkState.NO_ACK)
            else:
                downlink.next_try_at = now + max(tag.latency_s, self.retry_interval_s)
            return changed
        downlink.held_crc = held_check(tag.held)
        self._reported[tag.tag_id] = tag.held
        self._c["acked"] += 1
        self._finish(downlink, DownlinkState.ACKED)
        return True


def _non_negative(value: float, name: str) -> float:
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, got {value}")
    return value


def _content_text(content: object) -> str:
    if isinstance(content, BandCleared):
        return "nothing (cleared)"
    return repr(content)


def _describe(tag: SimTag) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "in_range": tag.in_range,
        "latency_s": tag.latency_s,
        "drop_acks": tag.drop_acks,
        "writes": len(tag.history),
        "downlinks": tag.downlinks,
        "nacks": tag.nacks,
        "held_hex": tag.held.hex(),
    }
    if not tag.held:
        entry["content"] = None
        return entry
    try:
        content = payload.decode(tag.held)
    except PayloadError as err:
        entry["content"] = {"error": str(err)}
        return entry
    if isinstance(content, BandCleared):
        entry["content"] = {"kind": "clear"}
    else:
        entry["content"] = {
            "kind": "assign",
            "batch": content.batch_code,
            "hotel": content.hotel_code,
            "room": content.room_number,
        }
    return entry
