"""Abuse through real gRPC: oversized and malformed fields of every request type, unknown enums, bad times.

Each case starts from a request that would be served (and written) and breaks one field. Every one must
be answered INVALID_ARGUMENT naming that field (message and google.rpc.BadRequest details), with the
database byte-for-byte as before (audit log included) and nothing logged by the platform.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, diagnostics_pb2, kiosk_pb2, organiser_pb2
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from platform_server.db.models import Base
from platform_server.grpc_api import limits
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.support.platform import Running, start, stop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from google.protobuf.message import Message

MB = "Z" * (1024 * 1024)  # a megabyte of text: what used to land in audit rows


@dataclass
class Abuse:
    """A server, a real identification token and a valid request of each kind to break."""

    running: Running
    token: str

    def valid(self, method: str) -> Message:  # noqa: C901
        s = self.running.seeded
        if method == "GetKioskContext":
            return kiosk_pb2.GetKioskContextRequest(kiosk_id="K1")
        if method == "IdentifyExpert":
            identify = identify_request("K1", s.batch_code, s.ids[1])
            identify.faces.add(image_jpeg=b"\xff\xd8face", quality=0.9)
            return identify
        if method == "CompleteCheckIn":
            return complete_request("K1", self.token, s.bands[1][0])
        if method == "AnnulCheckIn":
            return kiosk_pb2.AnnulCheckInRequest(
                request_id=rid(),
                kiosk_id="K1",
                check_in_id="ci_0123456789abcdef",
                reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
                detail="not taken",
            )
        if method == "Heartbeat":
            beat = kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=40, software_version="1.0.0")
            beat.kiosk_time.GetCurrentTime()
            beat.devices.add(device="arm", state=kiosk_pb2.DEVICE_STATE_OK, detail="ready")
            return beat
        if method == "ReportKioskEvent":
            event = kiosk_pb2.ReportKioskEventRequest(
                request_id=rid(), kiosk_id="K1", event="face_retry", outcome="attempt 2", id_number_hash_hint="123X"
            )
            event.occurred_at.GetCurrentTime()
            return event
        if method == "CreateBatch":
            create = organiser_pb2.CreateBatchRequest(
                request_id=rid(),
                batch=common_pb2.Batch(code="B9", name="第九批", venue="三楼", hotel_code="HTL1", hotel_name="饭店"),
            )
            create.batch.evaluation_start.FromSeconds(4_102_000_000)
            create.batch.evaluation_end.FromSeconds(4_102_030_000)
            return create
        if method == "CloseBatch":
            return organiser_pb2.CloseBatchRequest(request_id=rid(), code=s.batch_code)
        if method == "GetBatchStatistics":
            return organiser_pb2.GetBatchStatisticsRequest(code=s.batch_code)
        if method == "StreamCheckInEvents":
            return organiser_pb2.StreamCheckInEventsRequest(batch_code=s.batch_code)
        assert method == "Echo"
        return diagnostics_pb2.EchoRequest(message="ping")

    def call(self, method: str, request: Message | bytes) -> Any:
        """Call `method` with a message or with raw bytes (malformed messages); returns the answer."""
        r = self.running
        service = {
            "ListBatches": "OrganiserService",
            "CreateBatch": "OrganiserService",
            "CloseBatch": "OrganiserService",
            "GetBatchStatistics": "OrganiserService",
            "StreamCheckInEvents": "OrganiserService",
            "Echo": "DiagnosticsService",
        }.get(method, "KioskService")
        path = f"/expertcheckin.v1.{service}/{method}"
        data = request if isinstance(request, bytes) else request.SerializeToString()
        metadata = tuple(r.auth) if service == "OrganiserService" else None
        if method == "StreamCheckInEvents":
            stream = r.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            return list(stream(data, metadata=metadata, timeout=10))
        unary = r.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return unary(data, metadata=metadata, timeout=10)


def _schema_url(pg_url: str) -> tuple[str, Callable[[], None]]:
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    sep = "&" if "?" in pg_url else "?"
    return f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}", drop


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def abuse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Abuse]:
    """One served platform per database for all cases (each case checks that it changed nothing)."""
    drop: Callable[[], None] | None = None
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("abuse")
        url = f"sqlite:///{folder / 'platform.db'}"
    else:
        url, drop = _schema_url(str(request.getfixturevalue("pg_url")))
    running = start(url)
    s = running.seeded
    verified = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    assert verified.identification_token
    yield Abuse(running, verified.identification_token)
    stop(running)
    if drop is not None:
        drop()


def snapshot(running: Running) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    with running.platform.engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def _set(path: str, value: Any) -> Callable[[Message], None]:
    """A mutation setting one (dotted) field; `faces[0]` indexes a repeated field."""

    def mutate(message: Message) -> None:
        *parents, last = path.split(".")
        target: Any = message
        for part in parents:
            name, _, index = part.partition("[")
            target = getattr(target, name)
            if index:
                target = target[int(index.rstrip("]"))]
        if isinstance(value, tuple) and value and value[0] == "timestamp":
            getattr(target, last).seconds = value[1]
            getattr(target, last).nanos = value[2]
        else:
            setattr(target, last, value)

    return mutate


def _add(path: str, count: int, **fields: Any) -> Callable[[Message], None]:
    def mutate(message: Message) -> None:
        for _ in range(count):
            getattr(message, path).add(**fields)

    return mutate


def _clear_then_add(path: str, count: int, **fields: Any) -> Callable[[Message], None]:
    def mutate(message: Message) -> None:
        message.ClearField(path)
        _add(path, count, **fields)(message)

    return mutate


YEAR_1900 = -2_208_988_800
YEAR_2200 = 7_258_118_400
# (method, field path named in the answer, mutation)
CASES: list[tuple[str, str, Callable[[Message], None]]] = [
    ("GetKioskContext", "kiosk_id", _set("kiosk_id", MB)),
    ("GetKioskContext", "kiosk_id", _set("kiosk_id", "K1 OR 1=1")),
    ("GetKioskContext", "kiosk_id", _set("kiosk_id", "")),
    ("IdentifyExpert", "request_id", _set("request_id", MB)),
    ("IdentifyExpert", "request_id", _set("request_id", "")),
    ("IdentifyExpert", "request_id", _set("request_id", "id\nforged log line")),
    ("IdentifyExpert", "kiosk_id", _set("kiosk_id", "K" * 65)),
    ("IdentifyExpert", "batch_code", _set("batch_code", MB)),
    ("IdentifyExpert", "batch_code", _set("batch_code", "B2025/../x")),
    ("IdentifyExpert", "id_card.id_number", _set("id_card.id_number", "1" * 19)),
    ("IdentifyExpert", "id_card.id_number", _set("id_card.id_number", "11010119900307abcd")),
    ("IdentifyExpert", "id_card.name", _set("id_card.name", MB)),
    ("IdentifyExpert", "id_card.name", _set("id_card.name", "张三\x00")),
    ("IdentifyExpert", "id_card.sex_code", _set("id_card.sex_code", "12")),
    ("IdentifyExpert", "id_card.nation_code", _set("id_card.nation_code", "abc")),
    ("IdentifyExpert", "id_card.birth_date", _set("id_card.birth_date", "1990-01-01")),
    ("IdentifyExpert", "id_card.address", _set("id_card.address", MB)),
    ("IdentifyExpert", "id_card.issuing_authority", _set("id_card.issuing_authority", "局" * 65)),
    ("IdentifyExpert", "id_card.valid_from", _set("id_card.valid_from", "2020")),
    ("IdentifyExpert", "id_card.valid_to", _set("id_card.valid_to", "forever")),
    ("IdentifyExpert", "faces", _clear_then_add("faces", 4, image_jpeg=b"\xff\xd8", quality=0.5)),
    ("IdentifyExpert", "faces[0].quality", _set("faces[0].quality", float("nan"))),
    ("IdentifyExpert", "faces[0].quality", _set("faces[0].quality", -1.0)),
    ("IdentifyExpert", "face_attempt", _set("face_attempt", -1)),
    ("IdentifyExpert", "face_attempt", _set("face_attempt", 1000)),
    ("CompleteCheckIn", "request_id", _set("request_id", "r" * 65)),
    ("CompleteCheckIn", "kiosk_id", _set("kiosk_id", "-K1")),
    ("CompleteCheckIn", "identification_token", _set("identification_token", "a." + "b" * 511)),
    ("CompleteCheckIn", "identification_token", _set("identification_token", "<script>.x")),
    ("CompleteCheckIn", "identification_token", _set("identification_token", "a b.c")),
    ("CompleteCheckIn", "signature_png", _set("signature_png", b"\x89PNG" + b"\0" * (512 * 1024))),
    ("CompleteCheckIn", "band_uid", _set("band_uid", "0" * 33)),
    ("CompleteCheckIn", "band_uid", _set("band_uid", "04A1'; DROP TABLE")),
    ("CompleteCheckIn", "new_card.pan", _set("new_card.pan", "6" * 33)),
    ("CompleteCheckIn", "new_card.pan", _set("new_card.pan", "6228480000000000abc")),
    ("CompleteCheckIn", "new_card.expiry_yymm", _set("new_card.expiry_yymm", "12/25")),
    ("CompleteCheckIn", "new_card.holder_name", _set("new_card.holder_name", MB)),
    ("CompleteCheckIn", "new_card.source", _set("new_card.source", 99)),
    ("AnnulCheckIn", "request_id", _set("request_id", MB)),
    ("AnnulCheckIn", "check_in_id", _set("check_in_id", "")),
    ("AnnulCheckIn", "check_in_id", _set("check_in_id", MB)),
    ("AnnulCheckIn", "reason", _set("reason", 42)),
    ("AnnulCheckIn", "reason", _set("reason", -7)),
    ("AnnulCheckIn", "detail", _set("detail", MB)),
    ("AnnulCheckIn", "detail", _set("detail", "ok\r\nforged: entry")),
    ("Heartbeat", "kiosk_id", _set("kiosk_id", MB)),
    ("Heartbeat", "kiosk_time", _set("kiosk_time", ("timestamp", YEAR_1900, 0))),
    ("Heartbeat", "kiosk_time", _set("kiosk_time", ("timestamp", YEAR_2200, 0))),
    ("Heartbeat", "kiosk_time", _set("kiosk_time", ("timestamp", 10**15, 0))),
    ("Heartbeat", "kiosk_time", _set("kiosk_time", ("timestamp", 1_800_000_000, -1))),
    ("Heartbeat", "kiosk_time", _set("kiosk_time", ("timestamp", 1_800_000_000, 1_000_000_000))),
    ("Heartbeat", "devices", _add("devices", 16, device="camera", state=1)),
    ("Heartbeat", "devices[0].device", _set("devices[0].device", "d" * 41)),
    ("Heartbeat", "devices[0].state", _set("devices[0].state", 77)),
    ("Heartbeat", "devices[0].detail", _set("devices[0].detail", MB)),
    ("Heartbeat", "band_stock", _set("band_stock", -1)),
    ("Heartbeat", "pending_check_ins", _set("pending_check_ins", 2_000_000_000)),
    ("Heartbeat", "software_version", _set("software_version", "v" * 65)),
    ("Heartbeat", "software_version", _set("software_version", "版本1")),
    ("ReportKioskEvent", "request_id", _set("request_id", MB)),
    ("ReportKioskEvent", "kiosk_id", _set("kiosk_id", "K1\x00")),
    ("ReportKioskEvent", "event", _set("event", "")),
    ("ReportKioskEvent", "event", _set("event", MB)),
    ("ReportKioskEvent", "event", _set("event", "face retry")),
    ("ReportKioskEvent", "outcome", _set("outcome", "o" * 41)),
    ("ReportKioskEvent", "detail", _set("detail", MB)),
    ("ReportKioskEvent", "id_number_hash_hint", _set("id_number_hash_hint", "12345")),
    ("ReportKioskEvent", "id_number_hash_hint", _set("id_number_hash_hint", "ab")),
    ("ReportKioskEvent", "occurred_at", _set("occurred_at", ("timestamp", -(10**12), 0))),
    ("ReportKioskEvent", "occurred_at", _set("occurred_at", ("timestamp", 1_800_000_000, -5))),
    ("CreateBatch", "request_id", _set("request_id", "")),
    ("CreateBatch", "batch.code", _set("batch.code", "B" * 17)),
    ("CreateBatch", "batch.name", _set("batch.name", "")),
    ("CreateBatch", "batch.name", _set("batch.name", MB)),
    ("CreateBatch", "batch.venue", _set("batch.venue", "v" * 401)),
    ("CreateBatch", "batch.hotel_name", _set("batch.hotel_name", "h" * 201)),
    ("CreateBatch", "batch.hotel_address", _set("batch.hotel_address", MB)),
    ("CreateBatch", "batch.hotel_code", _set("batch.hotel_code", "HOTEL-123")),
    ("CreateBatch", "batch.evaluation_start", _set("batch.evaluation_start", ("timestamp", YEAR_1900, 0))),
    ("CreateBatch", "batch.evaluation_end", _set("batch.evaluation_end", ("timestamp", 2**62, 0))),
    ("CreateBatch", "batch.check_in_opens", _set("batch.check_in_opens", ("timestamp", 4_101_000_000, -1))),
    ("CloseBatch", "request_id", _set("request_id", MB)),
    ("CloseBatch", "code", _set("code", "")),
    ("CloseBatch", "code", _set("code", "B2025\x7f")),
    ("GetBatchStatistics", "code", _set("code", MB)),
    ("StreamCheckInEvents", "batch_code", _set("batch_code", "B" * 17)),
    ("StreamCheckInEvents", "after_event_id", _set("after_event_id", -1)),
    ("Echo", "message", _set("message", MB)),
    ("Echo", "message", _set("message", "\x1b[31mred")),
]


def _case_id(case: tuple[str, str, Any]) -> str:
    return f"{case[0]}-{case[1]}"


def _assert_invalid(err: grpc.RpcError, field: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert field in (err.details() or "")
    assert len(err.details() or "") < 4096  # the answer does not echo the megabyte back
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert field in [v.field for v in bad.field_violations]


def _assert_untouched(abuse: Abuse, before: dict[str, list[tuple[Any, ...]]], caplog: pytest.LogCaptureFixture) -> None:
    assert snapshot(abuse.running) == before
    assert not [r for r in caplog.records if r.name.startswith("platform_server")]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_a_field_over_its_limit_is_invalid_argument_naming_it_and_nothing_is_written(
    abuse: Abuse, case: tuple[str, str, Callable[[Message], None]], caplog: pytest.LogCaptureFixture
) -> None:
    method, field, mutate = case
    request = abuse.valid(method)
    assert not limits.violations(request), "the starting request must be within every limit"
    mutate(request)
    before = snapshot(abuse.running)
    caplog.clear()
    with pytest.raises(grpc.RpcError) as raised:
        abuse.call(method, request)
    _assert_invalid(raised.value, field)
    _assert_untouched(abuse, before, caplog)


# Bytes that are no message at all: a string field holding invalid UTF-8, a length running past the end.
BAD_UTF8 = b"\x0a\x02\xff\xfe"  # field 1 (string), 2 bytes, not UTF-8
TRUNCATED = b"\x0a\x40abc"  # field 1 announces 64 bytes, 3 follow
MALFORMED = [
    (method, payload)
    for method in (
        "GetKioskContext",
        "IdentifyExpert",
        "CompleteCheckIn",
        "AnnulCheckIn",
        "Heartbeat",
        "ReportKioskEvent",
        "CreateBatch",
        "CloseBatch",
        "GetBatchStatistics",
        "StreamCheckInEvents",
        "Echo",
    )
    for payload in (BAD_UTF8, TRUNCATED)
] + [("ListBatches", TRUNCATED)]  # its one field is a bool: no string to spoil


@pytest.mark.parametrize(
    ("method", "payload"), MALFORMED, ids=[f"{m}-{'utf8' if p == BAD_UTF8 else 'truncated'}" for m, p in MALFORMED]
)
def test_bytes_that_are_no_message_are_invalid_argument(
    abuse: Abuse, method: str, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    before = snapshot(abuse.running)
    caplog.clear()
    with pytest.raises(grpc.RpcError) as raised:
        abuse.call(method, payload)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a well-formed message" in (raised.value.details() or "")
    _assert_untouched(abuse, before, caplog)


@pytest.mark.parametrize(
    "method",
    [
        "GetKioskContext",
        "IdentifyExpert",
        "CompleteCheckIn",
        "AnnulCheckIn",
        "Heartbeat",
        "ReportKioskEvent",
        "CreateBatch",
        "CloseBatch",
        "GetBatchStatistics",
        "StreamCheckInEvents",
        "Echo",
    ],
)
def test_every_method_is_covered_and_its_valid_request_passes_the_limits(abuse: Abuse, method: str) -> None:
    """The cases' starting requests are served (not refused by the limits), so a case can fail."""
    assert method in {c[0] for c in CASES}
    request = abuse.valid(method)
    if method in {"CloseBatch", "CompleteCheckIn"}:
        assert not limits.violations(request)  # served, but it would change the shared batch
        return
    if method == "StreamCheckInEvents":
        stream = abuse.running.organiser.StreamCheckInEvents(request, metadata=abuse.running.auth, timeout=0.5)
        with pytest.raises(grpc.RpcError) as raised:
            list(stream)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # served until the deadline
        return
    abuse.call(method, request)
