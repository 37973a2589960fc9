"""Table tests and property tests of the arm's line protocol (pure functions, no I/O)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robot_arm.errors import ArmConfigError, ArmProtocolError
from robot_arm.models import normalise_uid
from robot_arm.protocol import (
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
    checksum,
    encode_event,
    encode_reply,
    encode_request,
    format_status,
    frame,
    next_request_id,
    parse_info,
    parse_job,
    parse_message,
    parse_request,
    parse_status,
)


@pytest.mark.parametrize(
    ("request_", "wire"),
    [
        (Request(1, Command.HOME), b"#1 HOME*"),
        (Request(12, Command.MOVE, ("READER",)), b"#12 MOVE READER*"),
        (Request(9999, Command.STATUS), b"#9999 STATUS?*"),
        (Request(7, Command.JOB, ("6",)), b"#7 JOB? 6*"),
    ],
)
def test_encode_request_table(request_: Request, wire: bytes) -> None:
    data = encode_request(request_)
    assert data.startswith(wire)
    assert data.endswith(b"\n")
    body = data[: data.index(b"*")]
    assert int(data[data.index(b"*") + 1 : -1], 16) == checksum(body)


def test_checksum_is_xor_of_body() -> None:
    # '#1 HOME': 0x23 ^ 0x31 ^ 0x20 ^ 0x48 ^ 0x4F ^ 0x4D ^ 0x45
    assert checksum(b"#1 HOME") == 0x23 ^ 0x31 ^ 0x20 ^ 0x48 ^ 0x4F ^ 0x4D ^ 0x45
    assert frame("#1 HOME") == b"#1 HOME*" + f"{checksum(b'#1 HOME'):02X}".encode() + b"\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"#5 PICK\n", Request(5, Command.PICK)),
        (b"#5 pick\r\n", Request(5, Command.PICK)),  # a technician's terminal: lower case, CRLF, no checksum
        (frame("#6 MOVE PICKUP"), Request(6, Command.MOVE, ("PICKUP",))),
        (b"#8 STATUS?\n", Request(8, Command.STATUS)),
    ],
)
def test_parse_request_table(line: bytes, expected: Request) -> None:
    assert parse_request(line) == expected


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        (b"#0 HOME\n", ArmProtocolError, "request id must be 1..9999"),
        (b"#10000 HOME\n", ArmProtocolError, "request id 0..9999"),
        (b"HOME\n", ArmProtocolError, "request must be"),
        (b"#1 HOME*00\n", ArmProtocolError, "checksum mismatch"),
        (b"#1 HOME*G1\n", ArmProtocolError, "2 hex digits"),
        (b"#1 FLY\n", UnknownCommandError, "unknown command"),
        (b"#1 MOVE\n", BadArgumentError, "MOVE takes 1 argument"),
        (b"#1 HOME NOW\n", BadArgumentError, "HOME takes 0 argument"),
        (b"#1 HO\x01ME\n", ArmProtocolError, "control characters"),
        (b"#1 \xffHOME\n", ArmProtocolError, "not ASCII"),
    ],
)
def test_parse_request_rejects_with_specific_message(line: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_request(line)


def test_unknown_command_keeps_request_id_for_the_e20_answer() -> None:
    with pytest.raises(UnknownCommandError) as info:
        parse_request(b"#42 DANCE\n")
    assert info.value.rid == 42


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Reply(3, None, {"Q": "7"}), b"$3 OK Q=7*"),
        (Reply(4, ErrorCode.STOCK_EMPTY, text="stock empty"), b"$4 E31 stock empty*"),
        (Event(EventName.DONE, fields={"Q": "7", "RETRACTED": "1"}), b"@DONE Q=7 RETRACTED=1*"),
        (Event(EventName.SLOT, ("EMPTY",)), b"@SLOT EMPTY*"),
        (Event(EventName.ERR, fields={"Q": "9", "E": "42"}), b"@ERR Q=9 E=42*"),
    ],
)
def test_encode_and_parse_replies_and_events(message: Reply | Event, expected: bytes) -> None:
    data = encode_reply(message) if isinstance(message, Reply) else encode_event(message)
    assert data.startswith(expected)
    assert parse_message(data) == message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"$1 OK\n", "no '\\*XX' checksum"),
        (frame("$1"), "without OK"),
        (frame("$1 E99"), "unknown error code"),
        (frame("$1 EX"), "E<number>"),
        (frame("@WAVE"), "unknown event"),
        (frame("%1 OK"), "must start with"),
        (frame("$1 OK Q=1 Q=2"), "given twice"),
        (frame("$1 OK Q=1 loose"), "after KEY=VALUE"),
        (frame("$1 OK =3"), "KEY=VALUE"),
    ],
)
def test_parse_message_rejects(line: bytes, message: str) -> None:
    with pytest.raises(ArmProtocolError, match=message):
        parse_message(line)


def _status(**changes: object) -> ArmStatus:
    base = {
        "state": ArmState.IDLE,
        "position": Station.HOME,
        "homed": True,
        "gripper_closed": False,
        "holding": False,
        "stock": 12,
        "reject_count": 1,
        "pickup_occupied": False,
        "door_open": False,
        "estop": False,
        "alarm": None,
        "boot": 3,
        "queue": 0,
    }
    base.update(changes)
    return ArmStatus(**base)  # type: ignore[arg-type]


def test_status_round_trip_and_ready() -> None:
    status = _status()
    assert parse_status(format_status(status)) == status
    assert status.ready
    for change in (
        {"homed": False},
        {"holding": True},
        {"pickup_occupied": True},
        {"estop": True},
        {"door_open": True},
        {"alarm": ErrorCode.JAM},
        {"state": ArmState.BUSY},
    ):
        assert not _status(**change).ready, change


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("POS", "ROOF", "station or '-'"),
        ("HOMED", "yes", "must be 1 or 0"),
        ("STOCK", "-1", "count"),
        ("STATE", "DANCING", "must be one of"),
        ("ALARM", "E77", "unknown error code"),
    ],
)
def test_parse_status_rejects_bad_fields(key: str, value: str, message: str) -> None:
    fields = format_status(_status())
    fields[key] = value
    with pytest.raises(ArmProtocolError, match=message):
        parse_status(fields)


def test_parse_status_names_a_missing_field() -> None:
    fields = format_status(_status())
    del fields["SLOT"]
    with pytest.raises(ArmProtocolError, match="field SLOT missing"):
        parse_status(fields)


def test_parse_info_and_job() -> None:
    info = parse_info({"MODEL": "WD-ARM1", "FW": "1.0.0", "PROTO": "1", "SERIAL": "S1", "BOOT": "4"})
    assert (info.model, info.boot, info.protocol) == ("WD-ARM1", 4, 1)
    job = parse_job({"RID": "12", "Q": "7", "STATE": "DONE", "E": "0", "RETRACTED": "1"})
    assert (job.rid, job.queue_index, job.state, job.error, job.fields) == (
        12,
        7,
        JobState.DONE,
        None,
        {"RETRACTED": "1"},
    )
    failed = parse_job({"RID": "12", "Q": "7", "STATE": "FAILED", "E": "42"})
    assert failed.error is ErrorCode.JAM


def test_request_ids_wrap_like_uarm() -> None:
    assert next_request_id(1) == 2
    assert next_request_id(9999) == 1
    assert next_request_id(0) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("04a1b2c3d4e5f0", "04A1B2C3D4E5F0"), ("04 A1 B2 C3", "04A1B2C3"), ("04:A1:B2:C3:D4:E5:F0", "04A1B2C3D4E5F0")],
)
def test_normalise_uid(text: str, expected: str) -> None:
    assert normalise_uid(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("", "hex"), ("04A1B", "hex"), ("04A1B2", "4, 7 or 10 bytes"), ("ZZ", "hex")]
)
def test_normalise_uid_rejects(text: str, message: str) -> None:
    with pytest.raises(ArmConfigError, match=message):
        normalise_uid(text)


def test_every_error_code_has_a_bilingual_description() -> None:
    for code in ErrorCode:
        assert " / " in code.description
        assert ErrorCode.parse(f"E{int(code)}") is code


_token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=8)


@given(
    rid=st.integers(1, 9999),
    fields=st.dictionaries(_token, _token, max_size=6),
)
def test_reply_round_trip_property(rid: int, fields: dict[str, str]) -> None:
    reply = Reply(rid, None, fields)
    assert parse_message(encode_reply(reply)) == reply


@given(rid=st.integers(1, 9999), command=st.sampled_from(list(Command)), station=st.sampled_from(list(Station)))
def test_request_round_trip_property(rid: int, command: Command, station: Station) -> None:
    args: tuple[str, ...] = (station.value,) if command is Command.MOVE else ("5",) if command is Command.JOB else ()
    request = Request(rid, command, args)
    assert parse_request(encode_request(request)) == request


@given(st.binary(max_size=200))
def test_parsers_raise_only_protocol_errors_on_noise(data: bytes) -> None:
    for parse in (parse_message, parse_request):
        with contextlib.suppress(ArmProtocolError):
            parse(data)


@given(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b), st.integers(0, 7), st.integers(0, 59))
def test_a_flipped_bit_is_caught_by_the_checksum(body_noise: bytes, bit: int, position: int) -> None:
    line = encode_reply(Reply(17, None, {"Q": "3", "X": body_noise.hex().upper()[:20] or "0"}))
    index = position % (line.index(b"*"))
    corrupted = bytearray(line)
    corrupted[index] ^= 1 << bit
    if corrupted == line or b"\n" in corrupted[:-1]:
        return
    with pytest.raises(ArmProtocolError):
        parse_message(bytes(corrupted))
