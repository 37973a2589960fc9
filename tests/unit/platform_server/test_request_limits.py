"""The request limits table: complete for every request field, in step with its document, and honest."""

from __future__ import annotations

from pathlib import Path

import pytest
from expertcheckin.v1 import diagnostics_pb2, kiosk_pb2, organiser_pb2
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
