"""The limit of every request field of KioskService, OrganiserService and DiagnosticsService, in one table.

`LIMITS` names, per request message and field, the longest string (characters), the largest byte
field (bytes), the most items of a repeated field, the range of a number and, where it matters, the
characters allowed. Enum fields must hold a value the .proto declares; Timestamps must be well formed
and fall within TIME_RANGE. `RequestLimitsInterceptor` checks every request against the table before a
servicer runs, so a request over a limit is answered INVALID_ARGUMENT naming the field and the limit
(also as google.rpc.BadRequest details) and nothing of it is written or logged. docs/platform-limits.md
holds the table as `markdown_table()` prints it (a test keeps the two equal).

The services keep their own checks (the CLI calls them without gRPC); this table is the wire's bound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from expertcheckin.v1 import diagnostics_pb2, kiosk_pb2, organiser_pb2
from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from platform_server.services.batches import BATCH_CODE, HOTEL_CODE
from platform_server.services.idempotency import MAX_REQUEST_ID_CHARS
from platform_server.services.identification_token import MAX_TOKEN_CHARS
from platform_server.services.kiosks import KIOSK_ID

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from google.protobuf.descriptor import Descriptor
    from google.protobuf.message import Message

    from platform_server.config import PlatformConfig

# Times any request may carry: a kiosk clock or a batch outside these is a bug or an attack.
TIME_RANGE = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_LOW, _TIME_HIGH = ((t - _EPOCH).total_seconds() for t in TIME_RANGE)
_TIMESTAMP = "google.protobuf.Timestamp"
MAX_VIOLATIONS = 20  # named in one answer; a request can break many limits at once


@dataclass(frozen=True, slots=True)
class Limit:
    """The bound of one field. `max_len`: characters, bytes or items; `pattern`: the whole value, if non-empty."""

    max_len: int | None = None
    min_len: int = 0
    pattern: re.Pattern[str] | None = None
    allowed: str = ""  # the pattern in words, for messages and docs
    minimum: float | None = None
    maximum: float | None = None
    option: str = ""  # the configuration option that sets max_len (its default is in the table)
    note: str = ""


def _text(max_len: int, *, min_len: int = 0, note: str = "") -> Limit:
    """Free text: at most `max_len` characters, no control characters."""
    return Limit(max_len, min_len, _NO_CONTROLS, "no control characters", note=note)


def _shape(pattern: str, allowed: str, max_len: int, *, min_len: int = 0, note: str = "") -> Limit:
    """A value of a fixed shape (the pattern must match the whole value when it is not empty)."""
    return Limit(max_len, min_len, re.compile(pattern), allowed, note=note)


_NO_CONTROLS = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")
_FLAG = Limit(note="true or false")
_REQUEST_ID = _shape(r"[A-Za-z0-9._:-]+", "ASCII letters, digits, '.', '_', ':', '-'", MAX_REQUEST_ID_CHARS, min_len=1)
_KIOSK_ID = Limit(64, 1, KIOSK_ID, "ASCII letters, digits, '.', '_', '-', starting with a letter or digit")
_BATCH_CODE = Limit(16, 1, BATCH_CODE, "ASCII letters, digits, '_', '-', starting with a letter or digit")
_DATE = _shape(r"[0-9]{8}", "YYYYMMDD", 8)
_TIME = Limit(note="Timestamp from 2000-01-01 up to 2100-01-01 UTC (TIME_RANGE), nanos 0-999999999")
_ENUM = Limit(note="a value the .proto declares (unknown numbers refused)")

# Per request message (and the messages nested in them), per field. A test checks that every field of
# every request message has its entry, so a field added to a .proto needs its limit here.
LIMITS: dict[str, dict[str, Limit]] = {
    "expertcheckin.v1.GetKioskContextRequest": {"kiosk_id": _KIOSK_ID},
    "expertcheckin.v1.IdentifyExpertRequest": {
        "request_id": _REQUEST_ID,
        "kiosk_id": _KIOSK_ID,
        "batch_code": _BATCH_CODE,
        "id_card": Limit(note="IdCardData"),
        "faces": Limit(3, note="FaceCapture items; empty only for ID-only batches"),
        "liveness_passed": _FLAG,
        "liveness": Limit(note="LivenessEvidence; checked by the platform: NOT_LIVE refusal when it fails"),
        "face_attempt": Limit(minimum=0, maximum=10),
        # A kiosk gives up after [platform] busy_wait_s (60 s) of busy waits; an hour is far beyond any.
        "busy_waited_ms": Limit(
            minimum=0,
            maximum=3_600_000,
            note="ms since the first busy answer to this identify (0: its first send); above 0 it may take"
            " the face queue's places kept for identifies sent again",
        ),
    },
    "expertcheckin.v1.IdCardData": {
        "id_number": _shape(
            r"[0-9]{17}[0-9Xx]", "17 digits and a digit or X", 18, note="check digit: ID_CARD_INVALID refusal"
        ),
        "name": _text(64),
        "sex_code": _shape(r"[0-9]", "one digit", 1),
        "nation_code": _shape(r"[0-9]{1,2}", "1 or 2 digits", 2),
        "birth_date": _DATE,
        "address": _text(128),
        "issuing_authority": _text(64),
        "valid_from": _DATE,
        "valid_to": _shape(r"[0-9]{8}|长期", "YYYYMMDD or 长期", 8),
    },
    "expertcheckin.v1.LivenessEvidence": {
        "challenge": _ENUM,
        "challenge_id": _shape(r"[A-Za-z0-9_.:-]+", "ASCII letters, digits, '.', '_', ':', '-'", 64),
        # More frames than the check reads are refused here; fewer are the checker's NOT_LIVE.
        "frames": Limit(6, note="ChallengeFrame items; 3 to 6 for a checkable challenge"),
    },
    "expertcheckin.v1.ChallengeFrame": {
        "image": Limit(512 * 1024, note="JPEG or PNG"),
        "captured_at_ms": Limit(minimum=0, maximum=120_000, note="ms since the challenge was shown"),
    },
    "expertcheckin.v1.FaceCapture": {
        "image_jpeg": Limit(
            8 * 1024 * 1024,
            option="[server] max_message_bytes",
            note="over [face] max_image_bytes: IMAGE_TOO_LARGE refusal, the kiosk retakes the picture",
        ),
        "quality": Limit(minimum=0.0, maximum=1.0),
    },
    "expertcheckin.v1.CompleteCheckInRequest": {
        "request_id": _REQUEST_ID,
        "kiosk_id": _KIOSK_ID,
        "identification_token": _shape(
            r"[A-Za-z0-9_.-]+", "base64url letters and '.'", MAX_TOKEN_CHARS, note="unknown: IDENTIFICATION_EXPIRED"
        ),
        "use_card_on_file": _FLAG,
        "new_card": Limit(note="NewBankCard"),
        "signature_png": Limit(
            512 * 1024,
            option="[rules] max_signature_bytes",
            note="PNG only, within SIGNATURE_LIMITS, checked after the token: SIGNATURE_INVALID refusal",
        ),
        "band_uid": _shape(
            r"[0-9A-Fa-f:\s-]+", "hex digits, ':', '-', spaces", 32, note="unknown UID: BAND_UNKNOWN refusal"
        ),
        "dispense": _ENUM,
    },
    "expertcheckin.v1.NewBankCard": {
        "pan": _shape(r"[0-9 -]+", "digits, spaces, '-'", 32, note="length and Luhn: BANK_CARD_INVALID refusal"),
        "expiry_yymm": _shape(r"[0-9]{4}", "YYMM", 4),
        "holder_name": _text(64),
        "source": _ENUM,
    },
    "expertcheckin.v1.AnnulCheckInRequest": {
        "request_id": _REQUEST_ID,
        "kiosk_id": _KIOSK_ID,
        "check_in_id": _shape(r"[A-Za-z0-9_]+", "ASCII letters, digits, '_'", 32, min_len=1),
        "reason": _ENUM,
        "detail": _text(500),
    },
    "expertcheckin.v1.HeartbeatRequest": {
        "kiosk_id": _KIOSK_ID,
        "kiosk_time": _TIME,
        "devices": Limit(16, note="DeviceHealth items"),
        "band_stock": Limit(minimum=0, maximum=100_000),
        "pending_check_ins": Limit(minimum=0, maximum=1_000_000),
        "out_of_service": _FLAG,
        "software_version": _shape(r"[\x20-\x7e]+", "printable ASCII", 64),
        "printer_paper": _ENUM,
    },
    "expertcheckin.v1.DeviceHealth": {
        "device": _shape(r"[A-Za-z0-9_.-]+", "ASCII letters, digits, '.', '_', '-'", 40),
        "state": _ENUM,
        "detail": _text(200),
    },
    "expertcheckin.v1.ReportKioskEventRequest": {
        "request_id": _REQUEST_ID,
        "kiosk_id": _KIOSK_ID,
        "event": _shape(r"[A-Za-z0-9_.:-]+", "ASCII letters, digits, '.', '_', ':', '-'", 34, min_len=1),
        "outcome": _text(40),
        "detail": _text(1000),
        "id_number_hash_hint": _shape(r"[0-9Xx]{1,4}", "the last 1 to 4 characters of the ID number", 4),
        "occurred_at": _TIME,
    },
    "expertcheckin.v1.ListBatchesRequest": {"include_closed": _FLAG},
    "expertcheckin.v1.CreateBatchRequest": {"request_id": _REQUEST_ID, "batch": Limit(note="Batch")},
    "expertcheckin.v1.Batch": {
        "code": _BATCH_CODE,
        "name": _text(200, min_len=1),
        "venue": _text(400),
        "hotel_name": _text(200),
        "hotel_address": _text(400),
        "evaluation_start": _TIME,
        "evaluation_end": _TIME,
        "check_in_opens": _TIME,
        "closed": _FLAG,
        "allow_id_only": _FLAG,
        "hotel_code": Limit(8, 0, HOTEL_CODE, "ASCII letters and digits", note="empty: H1"),
    },
    "expertcheckin.v1.CloseBatchRequest": {"request_id": _REQUEST_ID, "code": _BATCH_CODE},
    "expertcheckin.v1.GetBatchStatisticsRequest": {"code": _BATCH_CODE},
    "expertcheckin.v1.StreamCheckInEventsRequest": {
        "batch_code": _BATCH_CODE,
        "after_event_id": Limit(minimum=0, maximum=2**63 - 1),
    },
    "expertcheckin.v1.ResetFaceAttemptsRequest": {
        "batch_code": _BATCH_CODE,
        "id_number": _shape(r"[0-9]{17}[0-9Xx]", "17 digits and a digit or X", 18),
        "reason": _text(200, min_len=1),
    },
    "expertcheckin.v1.ExportFeesRequest": {"batch_code": _BATCH_CODE, "full_numbers": _FLAG},
    "expertcheckin.v1.WhoAmIRequest": {},
    "expertcheckin.v1.EchoRequest": {"message": _text(4096)},
}
# A field not (yet) in LIMITS, say one just added to a .proto, still gets a bound (a unit test names
# it, so it gets its own line): free text of at most this many characters, this many items.
UNLISTED_TEXT = 1024
UNLISTED_ITEMS = 100


def _unlisted(field: Any) -> Limit:
    """The bound of a field missing from LIMITS (bytes: only the message size bounds them)."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return _text(UNLISTED_TEXT, note="not listed")
    return Limit(UNLISTED_ITEMS if field.is_repeated else None, note="not listed")


# The limits that follow the configuration: (message, field) -> reads the value from the config.
CONFIGURED: dict[tuple[str, str], Callable[[PlatformConfig], int]] = {
    ("expertcheckin.v1.FaceCapture", "image_jpeg"): lambda c: c.server.max_message_bytes,
    ("expertcheckin.v1.CompleteCheckInRequest", "signature_png"): lambda c: c.rules.max_signature_bytes,
}
SERVICES = (
    kiosk_pb2.DESCRIPTOR.services_by_name["KioskService"],
    organiser_pb2.DESCRIPTOR.services_by_name["OrganiserService"],
    diagnostics_pb2.DESCRIPTOR.services_by_name["DiagnosticsService"],
)


def request_types() -> dict[str, Descriptor]:
    """Method path ("/expertcheckin.v1.KioskService/IdentifyExpert") to its request message descriptor."""
    return {f"/{s.full_name}/{m.name}": m.input_type for s in SERVICES for m in s.methods}


def configured(config: PlatformConfig) -> dict[str, dict[str, Limit]]:
    """LIMITS with the configuration's values for the configured fields."""
    table = {message: dict(fields) for message, fields in LIMITS.items()}
    for (message, field), value in CONFIGURED.items():
        table[message][field] = dataclasses.replace(table[message][field], max_len=value(config))
    return table


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken limit: the field's path in the request (faces[1].image_jpeg) and what is wrong."""

    field: str
    description: str


def _number(value: float | None) -> str:
    """A bound as written in the docs: whole numbers without a decimal point."""
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bound(limit: Limit) -> str:
    """The limit in words, for the docs: '1-64; ASCII letters, ...'."""
    parts = []
    if limit.max_len is not None:
        parts.append(f"{limit.min_len}-{limit.max_len}" if limit.min_len else f"≤ {limit.max_len}")
    if limit.minimum is not None or limit.maximum is not None:
        parts.append(f"{_number(limit.minimum)} to {_number(limit.maximum)}")
    if limit.allowed:
        parts.append(limit.allowed)
    return "; ".join(parts)


def _scalar_problem(field: Any, value: Any, limit: Limit) -> str:  # noqa: C901, PLR0911
    """What is wrong with one scalar value ("" if nothing)."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        if enum.values_by_number.get(value) is None:
            return f"unknown {enum.name} value {value}"
        return ""
    if field.type == FieldDescriptor.TYPE_STRING:
        if limit.max_len is not None and len(value) > limit.max_len:
            return f"{len(value)} characters, the limit is {limit.max_len} characters"
        if len(value) < limit.min_len:
            return f"{len(value)} characters, needs at least {limit.min_len}"
        if value and limit.pattern is not None and limit.pattern.fullmatch(value) is None:
            return f"characters outside the allowed set: {limit.allowed}"
        return ""
    if field.type == FieldDescriptor.TYPE_BYTES:
        if limit.max_len is not None and len(value) > limit.max_len:
            return f"{len(value)} bytes, the limit is {limit.max_len} bytes"
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if limit.minimum is not None and value < limit.minimum:
        return f"{value} is below the minimum {_number(limit.minimum)}"
    if limit.maximum is not None and value > limit.maximum:
        return f"{value} is above the maximum {_number(limit.maximum)}"
    return ""


def _timestamp_problem(seconds: int, nanos: int) -> str:
    """What is wrong with a Timestamp ("" if nothing)."""
    if not 0 <= nanos < 1_000_000_000:
        return f"nanos {nanos} outside 0..999999999"
    if not _TIME_LOW <= seconds < _TIME_HIGH:
        return f"seconds {seconds} outside {TIME_RANGE[0]:%Y-%m-%d} .. {TIME_RANGE[1]:%Y-%m-%d} (exclusive)"
    return ""


def violations(message: Message, table: dict[str, dict[str, Limit]] | None = None, prefix: str = "") -> list[Violation]:
    """Every broken limit in a request (and its nested messages), in field order."""
    checker = _DEFAULT_CHECKER if table is None else RequestChecker(table)
    return checker.violations(message, prefix)


# What a field's check does, decided once per field when its message is first checked.
_SKIP, _STRING, _BYTES, _ENUM_VALUE, _NUMBER, _FLOAT, _TIMESTAMP_VALUE, _MESSAGE = range(8)


@dataclass(frozen=True, slots=True)
class _FieldCheck:
    """One field's check, compiled: the descriptor walk, the table look-up and the kind decided once."""

    name: str
    field: Any  # its FieldDescriptor, for the words of a violation
    limit: Limit
    kind: int
    repeated: bool
    enum_numbers: frozenset[int] = frozenset()


class RequestChecker:
    """The table compiled per message type: the same answers as walking the descriptors, far less work a call.

    Every request of every call is checked, so the walk over descriptors (their attributes, the table's
    look-ups, each field's kind) is done once per message type and kept; a call reads its fields and
    compares. The words of a violation still come from `_scalar_problem`, so they cannot drift.
    """

    def __init__(self, table: dict[str, dict[str, Limit]]) -> None:
        self._table = table
        self._plans: dict[str, tuple[_FieldCheck, ...]] = {}

    def violations(self, message: Message, prefix: str = "") -> list[Violation]:
        """Every broken limit in `message` (and its nested messages), in field order."""
        found: list[Violation] = []
        self._walk(message, prefix, found)
        return found

    def _plan(self, descriptor: Any) -> tuple[_FieldCheck, ...]:
        """The message type's compiled checks, made on its first request."""
        plan = self._plans.get(descriptor.full_name)
        if plan is None:
            fields = self._table.get(descriptor.full_name, {})
            plan = tuple(_compile(field, fields.get(field.name) or _unlisted(field)) for field in descriptor.fields)
            self._plans[descriptor.full_name] = plan
        return plan

    def _walk(self, message: Message, prefix: str, found: list[Violation]) -> None:
        """Append the violations of `message`'s fields to `found`, in field order (paths under `prefix`)."""
        for check in self._plan(message.DESCRIPTOR):
            kind = check.kind
            if kind == _SKIP:
                continue
            if check.repeated:
                items = getattr(message, check.name)
                if not items:
                    continue
                limit = check.limit
                if limit.max_len is not None and len(items) > limit.max_len:
                    found.append(Violation(prefix + check.name, f"{len(items)} items, the limit is {limit.max_len}"))
                    continue
                for index, item in enumerate(items):
                    self._check_one(check, item, f"{prefix}{check.name}[{index}]", found)
            elif kind in {_MESSAGE, _TIMESTAMP_VALUE}:
                if message.HasField(check.name):
                    self._check_one(check, getattr(message, check.name), prefix + check.name, found)
            else:
                value = getattr(message, check.name)
                if not _scalar_ok(check, value):
                    found.append(Violation(prefix + check.name, _scalar_problem(check.field, value, check.limit)))

    def _check_one(self, check: _FieldCheck, value: Any, path: str, found: list[Violation]) -> None:
        """One value of a field: a nested message walked, a Timestamp bounded, a scalar compared."""
        if check.kind == _MESSAGE:
            self._walk(value, path + ".", found)
        elif check.kind == _TIMESTAMP_VALUE:
            problem = _timestamp_problem(value.seconds, value.nanos)
            if problem:
                found.append(Violation(path, problem))
        elif not _scalar_ok(check, value):
            found.append(Violation(path, _scalar_problem(check.field, value, check.limit)))


def _compile(field: Any, limit: Limit) -> _FieldCheck:
    """A field's check: what kind of value it holds and whether anything about it is bounded at all."""
    repeated = bool(field.is_repeated)
    kind = _NUMBER
    enum_numbers: frozenset[int] = frozenset()
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        kind = _TIMESTAMP_VALUE if message_type is not None and message_type.full_name == _TIMESTAMP else _MESSAGE
    elif field.type == FieldDescriptor.TYPE_ENUM:
        kind = _ENUM_VALUE
        enum_numbers = frozenset(field.enum_type.values_by_number)
    elif field.type == FieldDescriptor.TYPE_STRING:
        kind = _STRING
    elif field.type == FieldDescriptor.TYPE_BYTES:
        kind = _BYTES if limit.max_len is not None or repeated else _SKIP
    elif field.type in {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}:
        kind = _FLOAT
    elif limit.minimum is None and limit.maximum is None and not repeated:
        kind = _SKIP  # a flag, or a number without a range: nothing to compare
    return _FieldCheck(field.name, field, limit, kind, repeated, enum_numbers)


def _scalar_ok(check: _FieldCheck, value: Any) -> bool:  # noqa: PLR0911
    """Whether one scalar value is within its limit (the fast path; `_scalar_problem` words a failure)."""
    kind, limit = check.kind, check.limit
    if kind == _STRING:
        size = len(value)
        if size < limit.min_len or (limit.max_len is not None and size > limit.max_len):
            return False
        return not value or limit.pattern is None or limit.pattern.fullmatch(value) is not None
    if kind == _BYTES:
        return limit.max_len is None or len(value) <= limit.max_len
    if kind == _ENUM_VALUE:
        return value in check.enum_numbers
    if kind == _FLOAT and not math.isfinite(value):
        return False
    if limit.minimum is not None and value < limit.minimum:
        return False
    return limit.maximum is None or value <= limit.maximum


_DEFAULT_CHECKER = RequestChecker(LIMITS)


def invalid_argument_status(request_name: str, found: list[Violation]) -> grpc.Status:
    """INVALID_ARGUMENT naming each broken limit in the message and as google.rpc.BadRequest details."""
    shown = found[:MAX_VIOLATIONS]
    text = "; ".join(f"{v.field}: {v.description}" for v in shown)
    more = f" (and {len(found) - len(shown)} more)" if len(found) > len(shown) else ""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in shown
            ]
        )
    )
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT,
            message=f"请求字段超出限制 / {request_name} over its limits: {text}{more}",
            details=[detail],
        )
    )


@dataclass(frozen=True, slots=True)
class _Malformed:
    """What the wrapped deserializer returns for bytes that are not a request (bad UTF-8, truncated)."""

    error: str


class RequestLimitsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Checks every request of the platform's services against the table before the servicer sees it."""

    def __init__(self, table: dict[str, dict[str, Limit]] | None = None) -> None:
        self._checker = RequestChecker(LIMITS if table is None else table)
        self._requests = request_types()
        # Per method, the handler last wrapped and its wrapping: the services' handlers are the same
        # objects call after call, so each is wrapped once (an interceptor that builds a handler per
        # call, as the organisers' does, gets its handler wrapped per call).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the platform's unary-request handlers; pass health, reflection and unknown methods through."""
        handler = continuation(handler_call_details)
        descriptor = self._requests.get(handler_call_details.method)
        if handler is None or descriptor is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _checked(handler, descriptor.name, self._checker)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _checked(
    handler: grpc.RpcMethodHandler[Any, Any], name: str, checker: RequestChecker
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler with its request checked first; undecodable bytes reach it as _Malformed, not as an error."""
    deserialize = handler.request_deserializer

    def lenient(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize is not None else data
        except DecodeError as err:
            return _Malformed(str(err))

    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        if isinstance(request, _Malformed):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"请求无法解析 / {name} is not a well-formed message (invalid UTF-8 or truncated): {request.error}",
            )
        found = checker.violations(request)
        if found:
            context.abort_with_status(invalid_argument_status(name, found))

    if handler.unary_unary is not None:
        unary = handler.unary_unary

        def checked_unary(request: Any, context: grpc.ServicerContext) -> Any:
            refuse(request, context)
            return unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked_unary, request_deserializer=lenient, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None:
        stream = handler.unary_stream

        def checked_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            refuse(request, context)
            return stream(request, context)

        return grpc.unary_stream_rpc_method_handler(
            checked_stream, request_deserializer=lenient, response_serializer=handler.response_serializer
        )
    return handler


def markdown_table(table: dict[str, dict[str, Limit]] | None = None) -> str:
    """The limits as the Markdown table in docs/platform-limits.md."""
    table = LIMITS if table is None else table
    lines = [
        "| Message | Field | Limit (characters, bytes or items; range; allowed) | Notes |",
        "|---|---|---|---|",
    ]
    for message, fields in table.items():
        short = message.rsplit(".", 1)[-1]
        for field, limit in fields.items():
            bound = _bound(limit)
            if limit.option:
                bound += f" ({limit.option}, default)"
            lines.append(f"| {short} | {field} | {bound or '-'} | {limit.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerates the table in docs/platform-limits.md
    import sys

    sys.stdout.write(markdown_table())
