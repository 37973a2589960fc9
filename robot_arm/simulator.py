"""Simulated dispenser arm: the arm model on the device kit's simulator server, speaking the firmware's lines.

pyserial reaches it as `socket://127.0.0.1:PORT`, so the driver cannot tell it from the real arm.
Motion times are the real ones divided by a speed factor. Named faults (`inject("jam")`) fire at
the next motion they apply to, like OctoPrint's virtual printer's `simulated_errors`; they go through
the kit's one fault interface and control channel (`robot-arm sim-ctl`), with the scenario's own
actions (take, e-stop, door, refill) as control ops.

Physics the simulator assumes, as the dispenser's mechanics do (docs/arm-protocol.md):
- the work area's floor is a chute into the reject bin, whose light barrier counts bands (`REJ`),
  so a band that falls from the gripper ends in the reject bin and the count shows it;
- the pickup slot has a sensor and a capture flap (RETRACT) into the reject bin, as ATMs capture cards.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Self

from device_kit.clock import Clock, SystemClock
from device_kit.faults import FaultSet, FaultSpec
from device_kit.server import SimulatorServer
from robot_arm.errors import ArmConfigError, ArmProtocolError
from robot_arm.models import normalise_uid
from robot_arm.protocol import (
    MAX_LINE_LENGTH,
    MOTION_COMMANDS,
    PROTOCOL_VERSION,
    ArmState,
    ArmStatus,
    BadArgumentError,
    Command,
    ErrorCode,
    Event,
    EventName,
    JobState,
    Reply,
    Request,
    Station,
    UnknownCommandError,
    encode_event,
    encode_reply,
    format_status,
    parse_request,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)
wire_log = logging.getLogger("robot_arm.sim.wire")

MECHANICAL_FAULTS: Final = (
    "stock_empty",
    "jam",
    "band_dropped",
    "gripper_fault",
    "pickup_not_taken",
    "door_opened",
    "e_stop",
    "power_loss",
    "slow_home",
)
"""Faults of the arm itself; each fires once, at the next motion it applies to."""
TRANSPORT_FAULTS: Final = ("lost_request", "lost_reply", "lost_event", "garbled_reply", "disconnect")
"""Faults of the serial link; each hits the next motion request (or its completion event)."""
FAULTS: Final = MECHANICAL_FAULTS + TRANSPORT_FAULTS
_MID_MOVE_FAULTS: Final = ("jam", "band_dropped", "door_opened", "e_stop", "power_loss")
_FAULT_HELP: Final = {
    "stock_empty": "库存空 / the band cassette is empty or pulled out (until refill)",
    "jam": "卡住 / the next motion jams half way: E42",
    "band_dropped": "掉落 / the next move with a band drops it into the reject bin: E41",
    "gripper_fault": "夹爪故障 / the next grip or release fails: E40",
    "pickup_not_taken": "无人取 / the next band presented is never taken",
    "door_opened": "门开 / the door opens during the next motion: E51",
    "e_stop": "急停 / the e-stop is pressed during the next motion: E50",
    "power_loss": "断电 / power fails during the next motion (keep_band yes|no|random)",
    "slow_home": "回零慢 / the next HOME takes `factor` times as long",
}
#: The faults as the device kit declares them (``sim-ctl faults``); each fires once.
KIT_FAULTS: Final = tuple(
    FaultSpec(
        name,
        _FAULT_HELP.get(name, "链路故障 / transport fault on the next motion request (or `command`)"),
        {"keep_band": "random"}
        if name == "power_loss"
        else {"factor": 5.0}
        if name == "slow_home"
        else {"command": ""}
        if name in TRANSPORT_FAULTS
        else {},
    )
    for name in FAULTS
)
#: The scenario's actions on the control channel besides the fault ops.
_ACTIONS: Final = ("take", "estop_press", "estop_release", "door_open", "door_close", "refill")

# Nominal timings of the real mechanism, in seconds; divided by the speed factor.
TRAVEL_TIME: Final = 1.5
HOME_TIME: Final = 3.0
GRIP_TIME: Final = 0.6
RELEASE_TIME: Final = 0.5
RETRACT_TIME: Final = 1.0
MAX_QUEUE: Final = 4
MAX_REMEMBERED_REQUESTS: Final = 64


def default_bands(count: int = 20) -> list[str]:
    """Deterministic 7-byte UIDs (NXP manufacturer byte 04) for demos and tests without a band list."""
    return [f"04A1B2{0xC3D40000 + i:08X}" for i in range(count)]


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Simulator configuration, range-checked."""

    bands: tuple[str, ...] = field(default_factory=lambda: tuple(default_bands()))
    speed: float = 1.0
    """Motion times are divided by this: 1000 runs a 1.5 s move in 1.5 ms."""
    pickup_take_after: float | None = 3.0
    """Seconds (arm time, scaled by speed) after which the simulated expert takes a presented band; None: never."""
    reboot_time: float = 2.0
    """Seconds (scaled) the controller takes to boot after a power loss; connections are refused meanwhile."""
    seed: int | None = None
    model: str = "WD-ARM1"
    firmware: str = "1.0.0-sim"
    serial: str = "SIM-0001"

    def __post_init__(self) -> None:
        if not 0.01 <= self.speed <= 100_000:
            raise ArmConfigError(f"simulator speed must be between 0.01 and 100000, got {self.speed}")
        if self.pickup_take_after is not None and not 0 <= self.pickup_take_after <= 3600:
            raise ArmConfigError(f"pickup_take_after must be 0..3600 s or None, got {self.pickup_take_after}")
        if not 0 <= self.reboot_time <= 600:
            raise ArmConfigError(f"reboot_time must be 0..600 s, got {self.reboot_time}")
        uids = [normalise_uid(u) for u in self.bands]
        duplicates = sorted({u for u in uids if uids.count(u) > 1})
        if duplicates:
            raise ArmConfigError(f"band UIDs must be unique, repeated: {', '.join(duplicates)}")
        object.__setattr__(self, "bands", tuple(uids))


@dataclass(frozen=True, slots=True)
class SimLedger:
    """Where every band is, as the simulated mechanics know it (the soak test's ground truth)."""

    stock: tuple[str, ...]
    held: str | None
    pickup_slot: str | None
    reject_bin: tuple[str, ...]
    handed_out: tuple[str, ...]

    def all_bands(self) -> list[str]:
        """Every band in every place, with repeats if the model were ever wrong."""
        extra = [u for u in (self.held, self.pickup_slot) if u is not None]
        return [*self.stock, *extra, *self.reject_bin, *self.handed_out]


@dataclass(slots=True)
class _Job:
    rid: int
    queue_index: int
    command: Command
    args: tuple[str, ...]
    client: _Client | None
    state: JobState = JobState.QUEUED
    error: ErrorCode | None = None
    results: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _RequestRecord:
    """What the arm did with one request id, for JOB?."""

    rid: int
    queue_index: int
    state: JobState
    error: ErrorCode | None = None
    results: dict[str, str] = field(default_factory=dict)


class _Client:
    """One TCP connection (the serial line)."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.alive = True
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        if not self.alive:
            return
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.alive = False

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class _MotionStoppedError(Exception):
    """Internal: the running motion was stopped (e-stop, door, power loss, host ESTOP)."""


class ArmSimulator(SimulatorServer):
    """The simulated arm behind a TCP port; start/stop in process, or run by `robot-arm sim`."""

    name = "arm-sim"
    control_ops_help = ", " + ", ".join(_ACTIONS)

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_band_at_reader: Callable[[str], None] | None = None,
        on_band_left_reader: Callable[[], None] | None = None,
        control_port: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(FaultSet(KIT_FAULTS), host, port, control_port=control_port)
        self.settings = settings or SimSettings()
        #: Motion, boot and pickup times pass on this clock (a ManualClock in tests).
        self.clock: Clock = clock or SystemClock()
        self.on_band_at_reader = on_band_at_reader
        self.on_band_left_reader = on_band_left_reader
        self._rng = random.Random(self.settings.seed)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._links: list[_Client] = []
        self._stopping = False
        # -- the mechanism
        self._stock: deque[str] = deque(self.settings.bands)
        self._cassette_in = True
        self._held: str | None = None
        self._slot: str | None = None
        self._slot_take_at: float | None = None
        self._reject: list[str] = []
        self._handed_out: list[str] = []
        self._position: Station | None = None
        self._homed = False
        self._gripper_closed = False
        self._door_open = False
        self._estop_button = False
        self._soft_estop = False
        self._alarm: ErrorCode | None = None
        self._boot = 1
        self._booting_until: float | None = None
        self._queue: deque[_Job] = deque()
        self._job: _Job | None = None
        self._next_q = 1
        self._requests: OrderedDict[int, _RequestRecord] = OrderedDict()
        self._faults: dict[str, dict[str, object]] = {}
        self._at_reader = False
        self.motions_run: dict[Command, int] = dict.fromkeys(MOTION_COMMANDS, 0)
        """Motions the mechanism actually started, per command (tests check nothing ran twice)."""
        self.faults_fired: dict[str, int] = dict.fromkeys(FAULTS, 0)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port and start serving (port 0 picks a free one; see `port` and `url`)."""
        self._stopping = False
        super().start()
        self._spawn(self._worker_loop, name="arm-sim-worker")
        log.info("arm simulator on %s (speed %s)", self.url, self.settings.speed)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        with self._cond:
            self._stopping = True
            links, self._links = self._links, []
            self._cond.notify_all()
        for link in links:
            link.close()
        super().stop()

    # -- faults (the kit's one interface) and scenario controls ----------------------------------

    def inject(self, name: str, **options: object) -> None:
        """Arm a named fault for the next motion it applies to (see FAULTS).

        Options: power_loss takes `keep_band: bool` (default random); slow_home takes `factor: float`
        (the next HOME takes that many times as long, default 5: a worn axis); transport faults take
        `command: str` to hit a given verb instead of the next motion.
        """
        if name not in FAULTS:
            raise ArmConfigError(f"unknown simulator fault {name!r}; known faults: {', '.join(FAULTS)}")
        self.faults_set.inject(name, **options)  # type: ignore[arg-type]  # the kit checks keys and types
        values: dict[str, object] = dict(self.faults_set.snapshot()[name])
        self.faults_set.clear(name)  # the arm keeps pending faults itself: each fires once
        if values.get("command") == "":
            del values["command"]
        keep = values.pop("keep_band", "random")
        if keep != "random":
            values["keep_band"] = str(keep).lower() in {"1", "true", "yes", "on"}
        with self._cond:
            self._faults[name] = values
            if name == "stock_empty":
                self._fire("stock_empty")
                # The band cassette is empty or pulled out: the stock sensor reads 0 until refilled.
                self._cassette_in = False
            self._cond.notify_all()

    def clear(self, name: str | None = None) -> None:
        """Disarm one pending fault, or all."""
        if name is not None:
            self.faults_set.spec(name)
        with self._cond:
            if name is None:
                self._faults.clear()
            else:
                self._faults.pop(name, None)

    def active_faults(self) -> dict[str, object]:
        """Pending faults and their options."""
        with self._cond:
            return {name: dict(options) for name, options in self._faults.items()}

    def control_status(self) -> dict[str, object]:
        """``sim-ctl status``: where every band is, and the arm's state."""
        ledger = self.ledger()
        status = self.status()
        return {
            "ledger": {
                "stock": len(ledger.stock),
                "held": ledger.held,
                "slot": ledger.pickup_slot,
                "reject": len(ledger.reject_bin),
                "handed_out": len(ledger.handed_out),
            },
            "state": status.state.value,
            "homed": status.homed,
            "alarm": int(status.alarm) if status.alarm else None,
        }

    def control_action(self, op: str, request: dict[str, object]) -> bool:
        """The scenario's actions: take, estop_press/_release, door_open/_close, refill (``bands``)."""
        bands = request.get("bands") or []
        actions: dict[str, Callable[[], object]] = {
            "take": self.take_from_pickup,
            "estop_press": self.press_estop,
            "estop_release": self.release_estop,
            "door_open": self.open_door,
            "door_close": self.close_door,
            "refill": lambda: self.refill([str(b) for b in bands] if isinstance(bands, list) else [str(bands)]),
        }
        if op not in actions:
            return False
        try:
            actions[op]()
        except ArmConfigError as err:
            raise ValueError(str(err)) from err
        return True

    def pending_faults(self) -> list[str]:
        """Faults injected that have not fired yet."""
        with self._cond:
            return sorted(self._faults)

    def take_from_pickup(self) -> str | None:
        """The expert takes the band from the pickup slot; returns its UID, or None if the slot was empty."""
        with self._cond:
            return self._take()

    def press_estop(self) -> None:
        """Someone presses the physical emergency-stop button."""
        with self._cond:
            self._estop_button = True
            self._stop_everything(ErrorCode.EMERGENCY_STOP)
            self._broadcast(Event(EventName.ESTOP, ("ON",)))

    def release_estop(self) -> None:
        """The emergency-stop button is released (CLEAR and HOME are still needed)."""
        with self._cond:
            self._estop_button = False
            self._broadcast(Event(EventName.ESTOP, ("OFF",)))

    def open_door(self) -> None:
        """The service door is opened: the interlock stops the motors."""
        with self._cond:
            self._door_open = True
            self._stop_everything(ErrorCode.DOOR_OPEN)
            self._broadcast(Event(EventName.DOOR, ("OPEN",)))

    def close_door(self) -> None:
        """The service door is closed (CLEAR and HOME are still needed)."""
        with self._cond:
            self._door_open = False
            self._broadcast(Event(EventName.DOOR, ("CLOSED",)))

    def refill(self, bands: Iterable[str] = ()) -> None:
        """Staff put the cassette back and add bands to the stock (top of stock last)."""
        with self._cond:
            known = set(self.ledger_unlocked().all_bands())
            for uid in map(normalise_uid, bands):
                if uid in known:
                    raise ArmConfigError(f"band {uid} is already in the dispenser")
                self._stock.append(uid)
                known.add(uid)
            self._cassette_in = True

    def ledger(self) -> SimLedger:
        """Where every band is now."""
        with self._cond:
            return self.ledger_unlocked()

    def ledger_unlocked(self) -> SimLedger:
        """`ledger()` for callers already holding the simulator's lock."""
        return SimLedger(
            stock=tuple(self._stock),
            held=self._held,
            pickup_slot=self._slot,
            reject_bin=tuple(self._reject),
            handed_out=tuple(self._handed_out),
        )

    def status(self) -> ArmStatus:
        """The status the arm would report now."""
        with self._cond:
            return self._status()

    # -- TCP -----------------------------------------------------------------------------------

    def serve_connection(self, conn: socket.socket) -> None:
        """One host link (the kit's accept loop calls this): refused while the controller boots."""
        with self._cond:
            if self._booting_now():
                # The controller is still booting: a USB-serial port that is not there yet.
                return
            peer = conn.getpeername()
            client = _Client(conn, f"{peer[0]}:{peer[1]}")
            self._links.append(client)
        self._client_loop(client)

    def _client_loop(self, client: _Client) -> None:
        buffer = b""
        while client.alive and not self._stopping:
            try:
                chunk = client.sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._on_line(client, line + b"\n")
            if len(buffer) > 4 * MAX_LINE_LENGTH:
                buffer = b""
                self._reply(client, Reply(0, ErrorCode.BAD_LINE, text="line too long"))
        with self._cond:
            if client in self._links:
                self._links.remove(client)
        client.close()

    def _send(self, client: _Client, data: bytes) -> None:
        wire_log.debug("<<< %s", data.decode("ascii", "replace").rstrip())
        client.send(data)

    def _reply(self, client: _Client, reply: Reply) -> None:
        self._send(client, encode_reply(reply))

    def _broadcast(self, event: Event) -> None:
        data = encode_event(event)
        for client in list(self._links):
            self._send(client, data)

    # -- requests ------------------------------------------------------------------------------

    def _on_line(self, client: _Client, line: bytes) -> None:
        wire_log.debug(">>> %s", line.decode("ascii", "replace").rstrip())
        if not line.strip():
            return
        try:
            request = parse_request(line)
        except UnknownCommandError as err:
            self._reply(client, Reply(err.rid, ErrorCode.UNKNOWN_COMMAND, text=str(err)))
            return
        except BadArgumentError as err:
            self._reply(client, Reply(err.rid, ErrorCode.BAD_ARGUMENT, text=str(err)))
            return
        except ArmProtocolError as err:
            # The id itself cannot be trusted, so the answer goes to request 0.
            self._reply(client, Reply(0, ErrorCode.BAD_LINE, text=str(err)))
            return
        with self._cond:
            self._handle(client, request)

    def _transport_fault(self, name: str, command: Command) -> bool:
        options = self._faults.get(name)
        if options is None:
            return False
        wanted = options.get("command")
        if wanted is None and command not in MOTION_COMMANDS:
            return False
        if wanted is not None and str(wanted).upper() != command.value:
            return False
        self._fire(name)
        return True

    def _handle(self, client: _Client, request: Request) -> None:
        if self._transport_fault("lost_request", request.command):
            return
        reply = self._answer(client, request)
        if self._transport_fault("lost_reply", request.command):
            return
        data = encode_reply(reply)
        if self._transport_fault("garbled_reply", request.command):
            data = data[:-3] + (b"00" if data[-3:-1] != b"00" else b"11") + b"\n"
        self._send(client, data)
        if self._transport_fault("disconnect", request.command):
            client.close()

    def _record(self, rid: int, queue_index: int, state: JobState, error: ErrorCode | None = None) -> None:
        self._requests[rid] = _RequestRecord(rid, queue_index, state, error)
        self._requests.move_to_end(rid)
        while len(self._requests) > MAX_REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)

    def _answer(self, client: _Client, request: Request) -> Reply:
        immediate: dict[Command, Callable[[Request], Reply]] = {
            Command.STATUS: lambda r: Reply(r.rid, None, format_status(self._status())),
            Command.INFO: lambda r: Reply(r.rid, None, self._info()),
            Command.JOB: lambda r: self._job_reply(r.rid, r.args[0]),
            Command.SYNC: self._sync,
            Command.ESTOP: self._soft_stop,
            Command.CLEAR: self._clear_request,
        }
        handler = immediate.get(request.command)
        return handler(request) if handler else self._accept_motion(client, request)

    def _sync(self, request: Request) -> Reply:
        """A new host session: forget earlier request ids so JOB? never matches a stale one."""
        self._requests.clear()
        return Reply(request.rid, None, {"BOOT": str(self._boot)})

    def _soft_stop(self, request: Request) -> Reply:
        self._soft_estop = True
        self._stop_everything(ErrorCode.EMERGENCY_STOP)
        self._broadcast(Event(EventName.ESTOP, ("ON",)))
        self._record(request.rid, 0, JobState.DONE)
        return Reply(request.rid)

    def _clear_request(self, request: Request) -> Reply:
        error = self._clear()
        self._record(request.rid, 0, JobState.REFUSED if error else JobState.DONE, error)
        return Reply(request.rid, error, text=error.wire_text if error else "")

    def _job_reply(self, rid: int, arg: str) -> Reply:
        if not arg.isdigit():
            return Reply(rid, ErrorCode.BAD_ARGUMENT, text="JOB? takes a request id")
        record = self._requests.get(int(arg))
        if record is None:
            return Reply(rid, ErrorCode.UNKNOWN_REQUEST, text=f"no request {arg} since SYNC or power-up")
        fields = {
            "RID": str(record.rid),
            "Q": str(record.queue_index),
            "STATE": record.state.value,
            "E": str(int(record.error)) if record.error else "0",
        }
        fields.update(record.results)
        return Reply(rid, None, fields)

    def _clear(self) -> ErrorCode | None:
        if self._estop_button:
            return ErrorCode.EMERGENCY_STOP
        if self._door_open:
            return ErrorCode.DOOR_OPEN
        self._soft_estop = False
        if self._alarm is not None:
            self._alarm = None
            self._broadcast(Event(EventName.CLEARED))
        return None

    def _accept_motion(self, client: _Client, request: Request) -> Reply:
        rid = request.rid
        error = self._safety_refusal()
        if error is None and len(self._queue) >= MAX_QUEUE:
            error = ErrorCode.BUSY
        if error is None and request.command is Command.MOVE and request.args[0].upper() not in Station.__members__:
            error = ErrorCode.BAD_ARGUMENT
        if error is None and self._job is None and not self._queue:
            # Idle: everything the arm can check now is checked now, so the host gets an immediate refusal.
            error = self._precondition(request.command)
        if error is not None:
            self._record(rid, 0, JobState.REFUSED, error)
            return Reply(rid, error, text=error.wire_text)
        job = _Job(rid, self._next_q, request.command, tuple(a.upper() for a in request.args), client)
        self._next_q += 1
        self._queue.append(job)
        self._record(rid, job.queue_index, JobState.QUEUED)
        self._cond.notify_all()
        return Reply(rid, None, {"Q": str(job.queue_index)})

    def _safety_refusal(self) -> ErrorCode | None:
        if self._estop_button or self._soft_estop:
            return ErrorCode.EMERGENCY_STOP
        if self._door_open:
            return ErrorCode.DOOR_OPEN
        if self._alarm is not None:
            return ErrorCode.ALARM_ACTIVE
        return None

    def _precondition(self, command: Command) -> ErrorCode | None:
        """Why `command` cannot run in the current state, or None."""
        if command is not Command.HOME and not self._homed:
            return ErrorCode.NOT_HOMED
        if command is Command.PICK:
            return self._pick_refusal()
        if command is Command.RELEASE:
            return self._release_refusal()
        return None

    def _pick_refusal(self) -> ErrorCode | None:
        if self._held is not None:
            return ErrorCode.ALREADY_HOLDING
        if not self._stock or not self._cassette_in:
            return ErrorCode.STOCK_EMPTY
        return None

    def _release_refusal(self) -> ErrorCode | None:
        if self._held is None:
            return ErrorCode.NOT_HOLDING
        if self._position not in {Station.STOCK, Station.PICKUP, Station.REJECT}:
            # Anywhere else the band would fall loose inside the machine.
            return ErrorCode.RELEASE_NOT_ALLOWED
        if self._position is Station.PICKUP and self._slot is not None:
            return ErrorCode.PICKUP_OCCUPIED
        return None

    def _status(self) -> ArmStatus:
        if self._alarm is not None or self._estop_button or self._soft_estop or self._door_open:
            state = ArmState.ALARM
        elif self._job is not None or self._queue:
            state = ArmState.BUSY
        else:
            state = ArmState.IDLE
        return ArmStatus(
            state=state,
            position=self._position,
            homed=self._homed,
            gripper_closed=self._gripper_closed,
            holding=self._held is not None,
            stock=len(self._stock) if self._cassette_in else 0,
            reject_count=len(self._reject),
            pickup_occupied=self._slot is not None,
            door_open=self._door_open,
            estop=self._estop_button or self._soft_estop,
            alarm=self._alarm,
            boot=self._boot,
            queue=len(self._queue) + (1 if self._job else 0),
        )

    def _info(self) -> dict[str, str]:
        return {
            "MODEL": self.settings.model,
            "FW": self.settings.firmware,
            "PROTO": str(PROTOCOL_VERSION),
            "SERIAL": self.settings.serial,
            "BOOT": str(self._boot),
        }

    # -- the mechanism -------------------------------------------------------------------------

    def _fire(self, name: str) -> dict[str, object]:
        self.faults_fired[name] += 1
        log.info("arm simulator: fault %s fires", name)
        return self._faults.pop(name, {})

    def _booting_now(self) -> bool:
        return self._booting_until is not None

    def _scaled(self, seconds: float) -> float:
        return seconds / self.settings.speed

    def _take(self) -> str | None:
        uid = self._slot
        if uid is None:
            return None
        self._slot = None
        self._slot_take_at = None
        self._handed_out.append(uid)
        self._broadcast(Event(EventName.SLOT, ("EMPTY",)))
        self._cond.notify_all()
        return uid

    def _stop_everything(self, code: ErrorCode) -> None:
        """E-stop or door: abort the running and queued motions, lose the position, latch the alarm."""
        aborted = [self._job] if self._job else []
        aborted += list(self._queue)
        self._queue.clear()
        self._job = None
        for job in aborted:
            self._fail(job, code if job is aborted[0] else ErrorCode.ABORTED)
        self._homed = False
        self._position = None
        self._leave_reader()
        if self._alarm is None:
            self._alarm = code
            self._broadcast(Event(EventName.ALARM, fields={"E": str(int(code))}))
        self._cond.notify_all()

    def _fail(self, job: _Job, code: ErrorCode) -> None:
        job.state = JobState.FAILED
        job.error = code
        record = self._requests.get(job.rid)
        if record is not None and record.queue_index == job.queue_index:
            record.state, record.error = JobState.FAILED, code
        self._emit_completion(Event(EventName.ERR, fields={"Q": str(job.queue_index), "E": str(int(code))}))

    def _done(self, job: _Job, results: dict[str, str] | None = None) -> None:
        job.state = JobState.DONE
        job.results = results or {}
        record = self._requests.get(job.rid)
        if record is not None and record.queue_index == job.queue_index:
            record.state, record.results = JobState.DONE, dict(job.results)
        self._emit_completion(Event(EventName.DONE, fields={"Q": str(job.queue_index), **job.results}))

    def _emit_completion(self, event: Event) -> None:
        if "lost_event" in self._faults:
            self._fire("lost_event")
            return
        self._broadcast(event)

    def _latch(self, job: _Job, code: ErrorCode) -> None:
        """A motion fault: stop, latch the alarm, fail this job and abort the queue behind it."""
        self._job = None
        self._fail(job, code)
        for queued in list(self._queue):
            self._fail(queued, ErrorCode.ABORTED)
        self._queue.clear()
        self._alarm = code
        self._broadcast(Event(EventName.ALARM, fields={"E": str(int(code))}))

    def _worker_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = self.clock.monotonic()
                if self._booting_until is not None and now >= self._booting_until:
                    self._finish_boot()
                if self._slot_take_at is not None and now >= self._slot_take_at:
                    self._take()
                if self._queue and self._job is None and not self._booting_now():
                    job = self._queue.popleft()
                    self._job = job
                    with contextlib.suppress(_MotionStoppedError):
                        self._run(job)
                    if self._job is job:
                        self._job = None
                    continue
                deadlines = [t for t in (self._booting_until, self._slot_take_at) if t is not None]
                timeout = max(0.0, min(deadlines) - self.clock.monotonic()) if deadlines else None
                self.clock.wait(self._cond, timeout)

    def _pause(self, job: _Job, seconds: float) -> None:
        """Let `seconds` of arm time pass (scaled), raising _MotionStoppedError if the motion is stopped."""
        deadline = self.clock.monotonic() + self._scaled(seconds)
        while True:
            if self._job is not job or self._stopping:
                raise _MotionStoppedError
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return
            self.clock.wait(self._cond, remaining)

    def _unlocked(self, hook: Callable[[], None]) -> None:
        """Call a physics hook without holding the lock (it may do I/O, e.g. to the virtual reader)."""
        self._lock.release()
        try:
            hook()
        except Exception:
            log.exception("arm simulator hook failed")
        finally:
            self._lock.acquire()

    def _leave_reader(self) -> None:
        if self._at_reader:
            self._at_reader = False
            hook = self.on_band_left_reader
            if hook is not None:
                self._unlocked(hook)

    def _run(self, job: _Job) -> None:
        error = self._safety_refusal() or self._precondition(job.command)
        if error is not None:
            self._job = None
            self._fail(job, error)
            for queued in list(self._queue):
                self._fail(queued, ErrorCode.ABORTED)
            self._queue.clear()
            return
        job.state = JobState.RUNNING
        record = self._requests.get(job.rid)
        if record is not None and record.queue_index == job.queue_index:
            record.state = JobState.RUNNING
        self.motions_run[job.command] += 1
        if job.command is Command.HOME:
            slow = float(str(self._fire("slow_home").get("factor", 5))) if "slow_home" in self._faults else 1.0
            self._travel(job, None, HOME_TIME * slow)
            self._homed = True
            self._done(job)
        elif job.command is Command.MOVE:
            self._travel(job, Station(job.args[0]), TRAVEL_TIME)
            self._done(job)
        elif job.command is Command.PICK:
            self._travel(job, Station.STOCK, TRAVEL_TIME)
            self._grip(job)
        elif job.command is Command.RELEASE:
            self._release(job)
        elif job.command is Command.RETRACT:
            self._pause(job, RETRACT_TIME)
            uid = self._slot
            if uid is not None:
                self._slot = None
                self._slot_take_at = None
                self._reject.append(uid)
                self._broadcast(Event(EventName.SLOT, ("EMPTY",)))
            self._done(job, {"RETRACTED": "1" if uid else "0"})

    def _travel(self, job: _Job, target: Station | None, seconds: float) -> None:
        """Move to `target` (None: the home switches), with mid-move faults at half way."""
        destination = target or Station.HOME
        if self._position is destination and target is not None:
            return
        self._leave_reader()
        self._position = None
        self._pause(job, seconds / 2)
        fault = next((f for f in _MID_MOVE_FAULTS if f in self._faults), None)
        if fault == "band_dropped" and self._held is None:
            fault = None  # nothing to drop: stays armed for a move with a band
        if fault is not None:
            self._mid_move_fault(job, fault)
            raise _MotionStoppedError
        self._pause(job, seconds / 2)
        self._position = destination
        if destination is Station.READER and self._held is not None:
            self._at_reader = True
            hook = self.on_band_at_reader
            uid = self._held
            if hook is not None:
                self._unlocked(lambda: hook(uid))

    def _mid_move_fault(self, job: _Job, fault: str) -> None:
        options = self._fire(fault)
        if fault == "jam":
            # Stalled against an obstruction: the controller no longer trusts its position.
            self._homed = False
            self._latch(job, ErrorCode.JAM)
        elif fault == "band_dropped":
            # The band slips out of the gripper and slides down the chute into the reject bin.
            uid, self._held = self._held, None
            self._gripper_closed = False
            if uid is not None:
                self._reject.append(uid)
            self._latch(job, ErrorCode.BAND_DROPPED)
        elif fault == "door_opened":
            self._door_open = True
            self._broadcast(Event(EventName.DOOR, ("OPEN",)))
            self._stop_everything(ErrorCode.DOOR_OPEN)
        elif fault == "e_stop":
            self._estop_button = True
            self._broadcast(Event(EventName.ESTOP, ("ON",)))
            self._stop_everything(ErrorCode.EMERGENCY_STOP)
        elif fault == "power_loss":
            keep = options.get("keep_band")
            self._power_loss(keep_band=bool(keep) if keep is not None else self._rng.random() < 0.5)

    def _power_loss(self, *, keep_band: bool) -> None:
        """Power drops mid-move: links die, queue and memory are lost, the arm wakes un-homed."""
        clients, self._links = self._links, []
        for client in clients:
            client.close()
        self._job = None
        self._queue.clear()
        self._requests.clear()
        self._alarm = None
        self._soft_estop = False
        self._homed = False
        self._position = None
        self._leave_reader()
        if self._held is not None and not keep_band:
            # The gripper opens without power: the band falls down the chute into the reject bin.
            self._reject.append(self._held)
            self._held = None
        # A worm-geared gripper keeps its grip without power, so a kept band is still held.
        self._gripper_closed = self._held is not None
        self._booting_until = self.clock.monotonic() + self._scaled(self.settings.reboot_time)
        self._cond.notify_all()

    def _finish_boot(self) -> None:
        self._booting_until = None
        self._boot += 1
        self._broadcast(Event(EventName.READY, fields={"BOOT": str(self._boot), "FW": self.settings.firmware}))

    def _grip(self, job: _Job) -> None:
        self._pause(job, GRIP_TIME)
        if "gripper_fault" in self._faults:
            self._fire("gripper_fault")
            self._latch(job, ErrorCode.GRIPPER_FAULT)
            return
        if not self._stock or not self._cassette_in:
            self._job = None
            self._fail(job, ErrorCode.STOCK_EMPTY)
            return
        self._held = self._stock.popleft()
        self._gripper_closed = True
        self._done(job)

    def _release(self, job: _Job) -> None:
        self._pause(job, RELEASE_TIME)
        if "gripper_fault" in self._faults:
            # The gripper will not open: the band stays held.
            self._fire("gripper_fault")
            self._latch(job, ErrorCode.GRIPPER_FAULT)
            return
        uid, self._held = self._held, None
        self._gripper_closed = False
        assert uid is not None
        if self._position is Station.STOCK:
            self._stock.appendleft(uid)
        elif self._position is Station.REJECT:
            self._reject.append(uid)
        else:
            self._slot = uid
            self._broadcast(Event(EventName.SLOT, ("BAND",)))
            if "pickup_not_taken" in self._faults:
                self._fire("pickup_not_taken")
            elif self.settings.pickup_take_after is not None:
                self._slot_take_at = self.clock.monotonic() + self._scaled(self.settings.pickup_take_after)
        self._done(job)
