"""The request limits table: complete for every request field, in step with its document, and honest."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from expertcheckin.v1 import diagnostics_pb2, kiosk_pb2, organiser_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given
from hypothesis import strategies as st

from platform_server.config import PlatformConfig, RulesSection, ServerSection
from platform_server.grpc_api import limits

ROOT = Path(__file__).resolve().parents[3]


def _reachable(descriptor: object, seen: dict[str, object]) -> None:
    name = descriptor.full_name  # type: ignore[attr-defined]
    if name in seen or name == "google.protobuf.Timestamp":
        return
    seen[name] = descriptor
    for field in descriptor.fields:  # type: ignore[attr-defined]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _reachable(field.message_type, seen)


def request_messages() -> dict[str, object]:
    seen: dict[str, object] = {}
    for descriptor in limits.request_types().values():
        _reachable(descriptor, seen)
    return seen


def test_every_field_of_every_request_message_has_a_limit() -> None:
    messages = request_messages()
    missing = [
        f"{name}.{field.name}"
        for name, descriptor in messages.items()
        for field in descriptor.fields  # type: ignore[attr-defined]
        if field.name not in limits.LIMITS.get(name, {})
    ]
    assert not missing, f"add these to platform_server/grpc_api/limits.py LIMITS: {missing}"
    stale = [m for m in limits.LIMITS if m not in messages]
    assert not stale
    assert len(limits.request_types()) == 15  # 6 kiosk, 8 organiser, 1 diagnostics


def test_every_string_and_bytes_field_has_a_length_bound() -> None:
    for name, descriptor in request_messages().items():
        for field in descriptor.fields:  # type: ignore[attr-defined]
            limit = limits.LIMITS[name][field.name]
            if field.type in {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES} or field.is_repeated:
                assert limit.max_len is not None, f"{name}.{field.name}"
            if field.type in {
                FieldDescriptor.TYPE_INT32,
                FieldDescriptor.TYPE_INT64,
                FieldDescriptor.TYPE_UINT32,
                FieldDescriptor.TYPE_UINT64,
                FieldDescriptor.TYPE_FLOAT,
            }:
                assert limit.minimum is not None, f"{name}.{field.name}"
                assert limit.maximum is not None, f"{name}.{field.name}"


def test_the_document_holds_the_table_as_generated() -> None:
    text = (ROOT / "docs" / "platform-limits.md").read_text(encoding="utf-8")
    between = text.split("<!-- BEGIN limits table -->\n", 1)[1].split("<!-- END limits table -->", 1)[0]
    assert between == limits.markdown_table(), "run: .venv/bin/python -m platform_server.grpc_api.limits"


def test_configured_limits_follow_the_configuration() -> None:
    config = PlatformConfig(
        server=ServerSection(max_message_bytes=1_000_000), rules=RulesSection(max_signature_bytes=2048)
    )
    table = limits.configured(config)
    assert table["expertcheckin.v1.CompleteCheckInRequest"]["signature_png"].max_len == 2048
    assert table["expertcheckin.v1.FaceCapture"]["image_jpeg"].max_len == 1_000_000
    request = kiosk_pb2.CompleteCheckInRequest(signature_png=b"\x89PNG" + bytes(2048))
    assert [v.field for v in limits.violations(request, table) if v.field == "signature_png"] == ["signature_png"]
    defaults = limits.configured(PlatformConfig())
    assert defaults == limits.LIMITS  # the table's own numbers are the configuration's defaults


def test_violations_name_the_path_of_nested_and_repeated_fields() -> None:
    request = kiosk_pb2.HeartbeatRequest(kiosk_id="K1")
    request.devices.add(device="arm", state=1)
    request.devices.add(device="camera", state=42, detail="x" * 201)
    found = {v.field: v.description for v in limits.violations(request)}
    assert set(found) == {"devices[1].state", "devices[1].detail"}
    assert "unknown DeviceState value 42" in found["devices[1].state"]
    assert "201 characters, the limit is 200" in found["devices[1].detail"]


def test_the_status_carries_bad_request_details_and_no_value() -> None:
    request = organiser_pb2.CreateBatchRequest(request_id="r", batch={"code": "秘密" * 1000, "name": "n"})
    status = limits.invalid_argument_status("CreateBatchRequest", limits.violations(request))
    assert "batch.code" in status.details
    assert "秘密" not in status.details
    assert len(status.trailing_metadata[0][1]) < 2000


@given(st.text(max_size=200))
def test_any_echo_text_is_either_within_its_limit_or_named(text: str) -> None:
    found = limits.violations(diagnostics_pb2.EchoRequest(message=text))
    controls = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert bool(found) == controls
    assert all(v.field == "message" for v in found)


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (946_684_800, 0, True),
        (946_684_799, 0, False),
        (4_102_444_799, 999_999_999, True),
        (4_102_444_800, 0, False),
        (1_800_000_000, -1, False),
    ],
)
def test_timestamps_are_bounded(seconds: int, nanos: int, ok: bool) -> None:
    request = kiosk_pb2.ReportKioskEventRequest(request_id="r", kiosk_id="K1", event="e")
    request.occurred_at.seconds = seconds
    request.occurred_at.nanos = nanos
    assert (not limits.violations(request)) == ok


def test_a_field_missing_from_the_table_still_gets_a_bound() -> None:
    """A field a .proto gains before LIMITS does is bounded anyway (the completeness test above names it)."""
    table = {name: dict(fields) for name, fields in limits.LIMITS.items()}
    del table["expertcheckin.v1.EchoRequest"]
    assert limits.violations(diagnostics_pb2.EchoRequest(message="ok"), table) == []
    found = limits.violations(diagnostics_pb2.EchoRequest(message="x" * (limits.UNLISTED_TEXT + 1)), table)
    assert [v.field for v in found] == ["message"]
    del table["expertcheckin.v1.HeartbeatRequest"]["devices"]
    request = kiosk_pb2.HeartbeatRequest(kiosk_id="K1")
    for _ in range(limits.UNLISTED_ITEMS + 1):
        request.devices.add(device="d", state=1)
    assert [v.field for v in limits.violations(request, table)] == ["devices"]


def _walked(message: Any, table: dict[str, dict[str, limits.Limit]], prefix: str = "") -> list[limits.Violation]:
    """The limits read straight off the descriptors, field by field: what the compiled checker must answer."""
    fields = table.get(message.DESCRIPTOR.full_name, {})
    found: list[limits.Violation] = []
    for field in message.DESCRIPTOR.fields:
        limit = fields.get(field.name) or limits._unlisted(field)
        path, value = prefix + field.name, getattr(message, field.name)
        if field.is_repeated and limit.max_len is not None and len(value) > limit.max_len:
            found.append(limits.Violation(path, f"{len(value)} items, the limit is {limit.max_len}"))
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            items = (
                list(enumerate(value)) if field.is_repeated else [(None, value)] if message.HasField(field.name) else []
            )
            for index, item in items:
                where = path if index is None else f"{path}[{index}]"
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    problem = limits._timestamp_problem(item.seconds, item.nanos)
                    found += [limits.Violation(where, problem)] if problem else []
                else:
                    found += _walked(item, table, where + ".")
            continue
        for index, item in enumerate(value) if field.is_repeated else [(None, value)]:
            problem = limits._scalar_problem(field, item, limit)
            if problem:
                found.append(limits.Violation(path if index is None else f"{path}[{index}]", problem))
    return found


# Values near each kind of bound: well-formed and malformed text, numbers at and past the ranges.
_TEXTS = st.one_of(
    st.text(max_size=24),
    st.from_regex(r"[0-9]{17}[0-9X]|[0-9]{8}|[A-Za-z0-9._:-]{1,70}|长期|[0-9A-F:]{1,40}", fullmatch=True),
    st.sampled_from(["", "x" * 65, "a\x00b", "K1", "\x7f"]),
)
_NUMBERS = st.one_of(
    st.integers(-5, 5), st.sampled_from([-1, 0, 10, 11, 100_000, 100_001, 3_600_000, 3_600_001, 2**31 - 1])
)
_FLOATS = st.one_of(st.floats(-2, 2), st.sampled_from([float("nan"), float("inf"), 1.0, 1.0000001]))


def _fill(data: st.DataObject, message: Any, depth: int = 0) -> None:  # noqa: C901  # one branch per field type
    """Set every field of `message` (and of its nested messages) to a drawn value, or leave it unset."""
    for field in message.DESCRIPTOR.fields:
        if not data.draw(st.booleans()):
            continue
        count = data.draw(st.integers(0, 3)) if field.is_repeated else 1
        for _ in range(count):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2:
                    continue
                target = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    target.seconds = data.draw(st.sampled_from([0, 946_684_800, 1_800_000_000, 4_102_444_800]))
                    target.nanos = data.draw(st.sampled_from([0, 999_999_999]))
                else:
                    target.SetInParent()
                    _fill(data, target, depth + 1)
                continue
            if field.type == FieldDescriptor.TYPE_STRING:
                value: Any = data.draw(_TEXTS)
            elif field.type == FieldDescriptor.TYPE_BYTES:
                value = bytes(data.draw(st.integers(0, 10)))
            elif field.type == FieldDescriptor.TYPE_BOOL:
                value = data.draw(st.booleans())
            elif field.type in {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}:
                value = data.draw(_FLOATS)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                value = data.draw(st.integers(0, 12))
            else:
                value = data.draw(_NUMBERS)
                if field.type in {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64}:
                    value = abs(value)
            if field.is_repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)


# Small bounds for bytes and repeated fields, so drawn requests cross them (the real ones are 512 kB).
_SMALL = {
    message: {
        name: dataclasses.replace(limit, max_len=min(limit.max_len, 2 if name in {"faces", "devices", "frames"} else 8))
        if limit.max_len is not None
        and (name.endswith(("_png", "_jpeg", "image")) or name in {"faces", "devices", "frames"})
        else limit
        for name, limit in fields.items()
    }
    for message, fields in limits.LIMITS.items()
}


@given(st.data(), st.sampled_from(sorted(limits.request_types())), st.booleans())
def test_the_compiled_checker_answers_as_the_descriptors_read_field_by_field(
    data: st.DataObject, method: str, small: bool
) -> None:
    """Every request type, every field drawn near its bounds: the same violations, words and order."""
    table = _SMALL if small else limits.LIMITS
    request = message_factory.GetMessageClass(limits.request_types()[method])()
    _fill(data, request)
    assert limits.RequestChecker(table).violations(request) == _walked(request, table)


class _CallDetails(grpc.HandlerCallDetails):
    """What the server hands an interceptor: the method's path (no metadata needed here)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_a_services_handler_is_wrapped_once_and_a_handler_made_per_call_each_time() -> None:
    """The limits' wrapping is kept per method while the inner handler is the same object (no work per call)."""
    interceptor = limits.RequestLimitsInterceptor()
    details = _CallDetails("/expertcheckin.v1.DiagnosticsService/Echo")
    served = grpc.unary_unary_rpc_method_handler(lambda request, _context: request)
    first = interceptor.intercept_service(lambda _d: served, details)
    assert first is not None
    assert first is not served  # wrapped: the request is checked first
    assert interceptor.intercept_service(lambda _d: served, details) is first
    made_per_call = grpc.unary_unary_rpc_method_handler(lambda request, _context: request)
    again = interceptor.intercept_service(lambda _d: made_per_call, details)
    assert again is not first
    assert again is not None
    assert again.unary_unary is not None
    echo = diagnostics_pb2.EchoRequest(message="ok")
    no_context = cast("grpc.ServicerContext", None)  # a request within its limits never touches it
    assert again.unary_unary(echo, no_context) is echo  # the new inner handler is the one that serves
