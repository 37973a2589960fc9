"""The dispenser arm's serial line protocol (docs/arm-protocol.md): pure encoding and parsing, no I/O.

Lines are ASCII, `<body>*<XOR checksum as 2 hex digits>` ended by LF, in the style of uArm's `#n` / `$n` / `@`
lines, with Dobot-style queued completion: a motion is acknowledged at once with a queue index
(`$n OK Q=k`) and finishes later with `@DONE Q=k` or `@ERR Q=k E=code`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Final, TypeAlias, TypeVar

from robot_arm.errors import ArmProtocolError

_E = TypeVar("_E", bound=StrEnum)

PROTOCOL_VERSION: Final = 1
BAUDRATE: Final = 115200
MAX_LINE_LENGTH: Final = 160
"""Longest body the arm accepts, checksum excluded; longer lines are refused as E22."""
REQUEST_ID_MIN: Final = 1
REQUEST_ID_MAX: Final = 9999
"""Request ids count 1..9999 and wrap to 1, as uArm's do; id 0 answers a line whose id was unreadable."""


class ErrorCode(IntEnum):
    """Numbered error codes with fixed meanings (hardware-protocols.md section 6.4, extended)."""

    BUSY = 10
    UNKNOWN_COMMAND = 20
    BAD_ARGUMENT = 21
    BAD_LINE = 22
    UNKNOWN_REQUEST = 23
    NOT_HOMED = 30
    STOCK_EMPTY = 31
    ALREADY_HOLDING = 32
    NOT_HOLDING = 33
    PICKUP_OCCUPIED = 34
    RELEASE_NOT_ALLOWED = 35
    GRIPPER_FAULT = 40
    BAND_DROPPED = 41
    JAM = 42
    EMERGENCY_STOP = 50
    DOOR_OPEN = 51
    ALARM_ACTIVE = 52
    ABORTED = 53

    @property
    def description(self) -> str:
        """Bilingual one-line meaning, for technicians' screens and logs."""
        return ERROR_DESCRIPTIONS[self]

    @property
    def wire_text(self) -> str:
        """The English half of the description: the wire is ASCII, the host adds the Chinese."""
        return ERROR_DESCRIPTIONS[self].split(" / ", 1)[1]

    @classmethod
    def parse(cls, text: str) -> ErrorCode:
        """Parse `42` or `E42` into a known code, or raise ArmProtocolError."""
        digits = text[1:] if text[:1] == "E" else text
        if not digits.isdigit():
            raise ArmProtocolError(f"error code must be E<number>, got {text!r}")
        try:
            return cls(int(digits))
        except ValueError as err:
            raise ArmProtocolError(f"unknown error code {text!r}") from err


ERROR_DESCRIPTIONS: Final[dict[ErrorCode, str]] = {
    ErrorCode.BUSY: "队列已满 / command queue full",
    ErrorCode.UNKNOWN_COMMAND: "未知命令 / unknown command",
    ErrorCode.BAD_ARGUMENT: "参数错误 / bad argument",
    ErrorCode.BAD_LINE: "报文格式或校验错误 / malformed line or bad checksum",
    ErrorCode.UNKNOWN_REQUEST: "无此请求编号 / no such request id since SYNC or power-up",
    ErrorCode.NOT_HOMED: "未回零 / not homed",
    ErrorCode.STOCK_EMPTY: "手环库存为空 / wristband stock empty",
    ErrorCode.ALREADY_HOLDING: "夹爪中已有手环 / already holding a band",
    ErrorCode.NOT_HOLDING: "夹爪中没有手环 / not holding a band",
    ErrorCode.PICKUP_OCCUPIED: "出口已有手环 / pickup slot occupied",
    ErrorCode.RELEASE_NOT_ALLOWED: "此工位不允许松开 / release not allowed at this station",
    ErrorCode.GRIPPER_FAULT: "夹爪故障 / gripper fault",
    ErrorCode.BAND_DROPPED: "手环掉落 / band dropped",
    ErrorCode.JAM: "机械卡阻 / jam (motion blocked)",
    ErrorCode.EMERGENCY_STOP: "急停 / emergency stop",
    ErrorCode.DOOR_OPEN: "维护门打开 / service door open",
    ErrorCode.ALARM_ACTIVE: "有未清除的报警 / an alarm is active, send CLEAR",
    ErrorCode.ABORTED: "排队命令已取消 / queued command aborted after an earlier failure",
}


class Station(StrEnum):
    """Named stations the arm moves between."""

    HOME = "HOME"
    STOCK = "STOCK"
    READER = "READER"
    PICKUP = "PICKUP"
    REJECT = "REJECT"


class Command(StrEnum):
    """Request verbs. Queued (motion) verbs are acknowledged with a queue index and finish with an event."""

    HOME = "HOME"
    PICK = "PICK"
    MOVE = "MOVE"
    RELEASE = "RELEASE"
    RETRACT = "RETRACT"
    STATUS = "STATUS?"
    INFO = "INFO?"
    JOB = "JOB?"
    CLEAR = "CLEAR"
    ESTOP = "ESTOP"
    SYNC = "SYNC"


MOTION_COMMANDS: Final = frozenset({Command.HOME, Command.PICK, Command.MOVE, Command.RELEASE, Command.RETRACT})
QUERY_COMMANDS: Final = frozenset({Command.STATUS, Command.INFO, Command.JOB})
"""Queries change nothing, so the driver may simply send them again after a transport fault."""

ARGUMENT_COUNTS: Final[dict[Command, int]] = {
    Command.HOME: 0,
    Command.PICK: 0,
    Command.MOVE: 1,
    Command.RELEASE: 0,
    Command.RETRACT: 0,
    Command.STATUS: 0,
    Command.INFO: 0,
    Command.JOB: 1,
    Command.CLEAR: 0,
    Command.ESTOP: 0,
    Command.SYNC: 0,
}


class EventName(StrEnum):
    """Unsolicited `@` lines."""

    READY = "READY"
    MOVING = "MOVING"
    DONE = "DONE"
    ERR = "ERR"
    ALARM = "ALARM"
    CLEARED = "CLEARED"
    DOOR = "DOOR"
    ESTOP = "ESTOP"
    SLOT = "SLOT"


class ArmState(StrEnum):
    """Overall state in STATUS?."""

    IDLE = "IDLE"
    BUSY = "BUSY"
    ALARM = "ALARM"


class JobState(StrEnum):
    """State of one request in JOB? answers."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    REFUSED = "REFUSED"


@dataclass(frozen=True, slots=True)
class Request:
    """A host-to-arm line: `#<rid> <command> [args]`."""

    rid: int
    command: Command
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """An immediate answer `$<rid> OK k=v ...` or `$<rid> E<code> [text]`."""

    rid: int
    error: ErrorCode | None = None
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def ok(self) -> bool:
        """True for `OK` replies."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Event:
    """An unsolicited `@<NAME> [args] [k=v ...]` line."""

    name: EventName
    args: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)


Message: TypeAlias = Reply | Event


@dataclass(frozen=True, slots=True)
class ArmStatus:
    """Everything STATUS? reports: position, gripper, band held, stock, bins, sensors, alarms."""

    state: ArmState
    position: Station | None
    """None while between stations or after losing position (jam, e-stop, power loss)."""
    homed: bool
    gripper_closed: bool
    holding: bool
    stock: int
    reject_count: int
    """Bands counted into the reject bin by its light barrier since the controller started."""
    pickup_occupied: bool
    door_open: bool
    estop: bool
    alarm: ErrorCode | None
    boot: int
    queue: int

    @property
    def ready(self) -> bool:
        """True when the arm can start a dispense: homed, idle, no alarm, nothing held or waiting."""
        return (
            self.state is ArmState.IDLE
            and self.homed
            and self.alarm is None
            and not self.estop
            and not self.door_open
            and not self.holding
            and not self.pickup_occupied
        )


@dataclass(frozen=True, slots=True)
class ArmInfo:
    """INFO?: model, firmware, protocol version, serial number and boot count."""

    model: str
    firmware: str
    protocol: int
    serial: str
    boot: int


@dataclass(frozen=True, slots=True)
class JobInfo:
    """JOB? <rid>: what became of a request the host may not have heard the answer to."""

    rid: int
    queue_index: int
    state: JobState
    error: ErrorCode | None
    fields: dict[str, str]


_BODY_CHARS = re.compile(r"[\x20-\x7e]*")
_TOKEN = re.compile(r"[A-Za-z0-9_.:,?=+\-]+")


def checksum(body: bytes) -> int:
    """XOR of all body bytes (NMEA style): cheap, and catches the single-bit errors of a noisy UART."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def frame(body: str) -> bytes:
    """Append the checksum and newline to a line body."""
    if len(body) > MAX_LINE_LENGTH or not _BODY_CHARS.fullmatch(body) or "*" in body:
        raise ArmProtocolError(f"line body must be printable ASCII without '*', at most {MAX_LINE_LENGTH} chars")
    raw = body.encode("ascii")
    return raw + b"*" + f"{checksum(raw):02X}".encode("ascii") + b"\n"


def unframe(line: bytes, *, require_checksum: bool = True) -> str:
    """Strip line end and checksum; raise ArmProtocolError on a bad checksum or non-ASCII byte.

    A technician typing in a serial terminal may leave the checksum off, so the arm accepts
    requests without one (`require_checksum=False`); the driver always requires it from the arm.
    """
    raw = line.rstrip(b"\r\n")
    if b"*" in raw:
        raw, _, check = raw.rpartition(b"*")
        if len(check) != 2 or not all(c in b"0123456789ABCDEFabcdef" for c in check):
            raise ArmProtocolError(f"checksum must be 2 hex digits after '*', got {check!r}")
        if int(check, 16) != checksum(raw):
            raise ArmProtocolError(f"checksum mismatch: line says {check.decode()}, body gives {checksum(raw):02X}")
    elif require_checksum:
        raise ArmProtocolError(f"line has no '*XX' checksum: {line!r}")
    if len(raw) > MAX_LINE_LENGTH:
        raise ArmProtocolError(f"line is {len(raw)} bytes long, at most {MAX_LINE_LENGTH} allowed")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise ArmProtocolError(f"line is not ASCII: {line!r}") from err
    if not _BODY_CHARS.fullmatch(text):
        raise ArmProtocolError(f"line has control characters: {line!r}")
    return text


def _rid(text: str, prefix: str) -> int:
    digits = text[1:]
    if text[:1] != prefix or not digits.isdigit() or len(digits) > 4:
        raise ArmProtocolError(f"expected {prefix}<request id 0..9999>, got {text!r}")
    return int(digits)


def _split_fields(tokens: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    args: list[str] = []
    fields: dict[str, str] = {}
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            raise ArmProtocolError(f"bad token {token!r}")
        key, sep, value = token.partition("=")
        if sep:
            if not key or not value:
                raise ArmProtocolError(f"field must be KEY=VALUE, got {token!r}")
            if key in fields:
                raise ArmProtocolError(f"field {key} given twice")
            fields[key] = value
        elif fields:
            raise ArmProtocolError(f"argument {token!r} after KEY=VALUE fields")
        else:
            args.append(token)
    return tuple(args), fields


def _join_fields(fields: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def encode_request(request: Request) -> bytes:
    """`#<rid> <command> [args]*XX` and LF."""
    if not REQUEST_ID_MIN <= request.rid <= REQUEST_ID_MAX:
        raise ArmProtocolError(f"request id must be {REQUEST_ID_MIN}..{REQUEST_ID_MAX}, got {request.rid}")
    return frame(" ".join([f"#{request.rid}", request.command.value, *request.args]))


def parse_request(line: bytes) -> Request:
    """Parse a request line (checksum optional); raise ArmProtocolError saying what is wrong."""
    tokens = unframe(line, require_checksum=False).split()
    if len(tokens) < 2:
        raise ArmProtocolError(f"request must be '#<id> <command> [args]', got {line!r}")
    rid = _rid(tokens[0], "#")
    if not REQUEST_ID_MIN <= rid <= REQUEST_ID_MAX:
        raise ArmProtocolError(f"request id must be {REQUEST_ID_MIN}..{REQUEST_ID_MAX}, got {rid}")
    try:
        command = Command(tokens[1].upper())
    except ValueError as err:
        raise UnknownCommandError(rid, tokens[1]) from err
    args = tuple(tokens[2:])
    if len(args) != ARGUMENT_COUNTS[command]:
        raise BadArgumentError(rid, f"{command.value} takes {ARGUMENT_COUNTS[command]} argument(s), got {len(args)}")
    return Request(rid, command, args)


class UnknownCommandError(ArmProtocolError):
    """A well-formed request with a verb the arm does not know (answered E20)."""

    def __init__(self, rid: int, verb: str) -> None:
        self.rid = rid
        super().__init__(f"unknown command {verb!r}")


class BadArgumentError(ArmProtocolError):
    """A well-formed request with the wrong number or kind of arguments (answered E21)."""

    def __init__(self, rid: int, detail: str) -> None:
        self.rid = rid
        super().__init__(detail)


def encode_reply(reply: Reply) -> bytes:
    """`$<rid> OK k=v ...` or `$<rid> E<code> [text]`."""
    if reply.error is None:
        body = f"${reply.rid} OK"
        if reply.fields:
            body += " " + _join_fields(reply.fields)
    else:
        body = f"${reply.rid} E{int(reply.error)}"
        if reply.text:
            body += " " + re.sub(r"[^\x20-\x29\x2b-\x7e]", "?", reply.text)[:80]
    return frame(body)


def encode_event(event: Event) -> bytes:
    """`@<NAME> [args] [k=v ...]`."""
    parts = [f"@{event.name.value}", *event.args]
    if event.fields:
        parts.append(_join_fields(event.fields))
    return frame(" ".join(parts))


def parse_message(line: bytes) -> Message:
    """Parse an arm-to-host line (checksum required) into a Reply or an Event."""
    text = unframe(line, require_checksum=True)
    tokens = text.split()
    if not tokens:
        raise ArmProtocolError("empty line")
    head = tokens[0]
    if head.startswith("$"):
        rid = _rid(head, "$")
        if len(tokens) < 2:
            raise ArmProtocolError(f"reply without OK or E<code>: {text!r}")
        if tokens[1] == "OK":
            _, fields = _split_fields(tokens[2:])
            return Reply(rid, None, fields)
        code = ErrorCode.parse(tokens[1])
        return Reply(rid, code, {}, " ".join(tokens[2:]))
    if head.startswith("@"):
        try:
            name = EventName(head[1:])
        except ValueError as err:
            raise ArmProtocolError(f"unknown event {head!r}") from err
        args, fields = _split_fields(tokens[1:])
        return Event(name, args, fields)
    raise ArmProtocolError(f"line must start with '$' or '@', got {text!r}")


def _need(fields: dict[str, str], key: str) -> str:
    try:
        return fields[key]
    except KeyError as err:
        raise ArmProtocolError(f"field {key} missing in {sorted(fields)}") from err


def _flag(fields: dict[str, str], key: str, true: str = "1", false: str = "0") -> bool:
    value = _need(fields, key)
    if value not in {true, false}:
        raise ArmProtocolError(f"field {key} must be {true} or {false}, got {value!r}")
    return value == true


def _count(fields: dict[str, str], key: str) -> int:
    value = _need(fields, key)
    if not value.isdigit() or len(value) > 6:
        raise ArmProtocolError(f"field {key} must be a count 0..999999, got {value!r}")
    return int(value)


def _enum(enum: type[_E], fields: dict[str, str], key: str) -> _E:
    value = _need(fields, key)
    try:
        return enum(value)
    except ValueError as err:
        raise ArmProtocolError(f"field {key} must be one of {[m.value for m in enum]}, got {value!r}") from err


def _optional_code(fields: dict[str, str], key: str) -> ErrorCode | None:
    value = _need(fields, key)
    return None if value == "0" else ErrorCode.parse(value)


def parse_status(fields: dict[str, str]) -> ArmStatus:
    """Parse the fields of a STATUS? reply."""
    position = _need(fields, "POS")
    try:
        station = None if position == "-" else Station(position)
    except ValueError as err:
        raise ArmProtocolError(f"field POS must be a station or '-', got {position!r}") from err
    return ArmStatus(
        state=_enum(ArmState, fields, "STATE"),
        position=station,
        homed=_flag(fields, "HOMED"),
        gripper_closed=_flag(fields, "GRIP", "CLOSED", "OPEN"),
        holding=_flag(fields, "HOLD"),
        stock=_count(fields, "STOCK"),
        reject_count=_count(fields, "REJ"),
        pickup_occupied=_flag(fields, "SLOT", "BAND", "EMPTY"),
        door_open=_flag(fields, "DOOR", "OPEN", "CLOSED"),
        estop=_flag(fields, "ESTOP"),
        alarm=_optional_code(fields, "ALARM"),
        boot=_count(fields, "BOOT"),
        queue=_count(fields, "QUEUE"),
    )


def format_status(status: ArmStatus) -> dict[str, str]:
    """The fields of a STATUS? reply, in wire order (the simulator's side of parse_status)."""
    return {
        "STATE": status.state.value,
        "POS": status.position.value if status.position else "-",
        "HOMED": "1" if status.homed else "0",
        "GRIP": "CLOSED" if status.gripper_closed else "OPEN",
        "HOLD": "1" if status.holding else "0",
        "STOCK": str(status.stock),
        "REJ": str(status.reject_count),
        "SLOT": "BAND" if status.pickup_occupied else "EMPTY",
        "DOOR": "OPEN" if status.door_open else "CLOSED",
        "ESTOP": "1" if status.estop else "0",
        "ALARM": str(int(status.alarm)) if status.alarm else "0",
        "BOOT": str(status.boot),
        "QUEUE": str(status.queue),
    }


def parse_info(fields: dict[str, str]) -> ArmInfo:
    """Parse the fields of an INFO? reply."""
    return ArmInfo(
        model=_need(fields, "MODEL"),
        firmware=_need(fields, "FW"),
        protocol=_count(fields, "PROTO"),
        serial=_need(fields, "SERIAL"),
        boot=_count(fields, "BOOT"),
    )


JOB_KEYS: Final = frozenset({"RID", "Q", "STATE", "E"})


def parse_job(fields: dict[str, str]) -> JobInfo:
    """Parse the fields of a JOB? reply; fields beyond RID/Q/STATE/E are the job's results."""
    return JobInfo(
        rid=_count(fields, "RID"),
        queue_index=_count(fields, "Q"),
        state=_enum(JobState, fields, "STATE"),
        error=_optional_code(fields, "E"),
        fields={k: v for k, v in fields.items() if k not in JOB_KEYS},
    )


def next_request_id(rid: int) -> int:
    """The id after `rid`, wrapping 9999 to 1."""
    return REQUEST_ID_MIN if rid >= REQUEST_ID_MAX else rid + 1
