"""The kiosk's gRPC client for the platform: deadlines, bounded retries with the same request id, TLS.

It wraps the generated KioskService stub and speaks plain domain values (checkin.flow.models) to
the rest of the kiosk. Only UNAVAILABLE and DEADLINE_EXCEEDED are retried, with exponential
backoff, and always with the request's own request_id, so the platform answers a retry with its
first answer instead of making a second check-in. After the last attempt the caller gets
PlatformUnavailableError: for a state-changing call that means "outcome unknown", which is what
the durable queue exists for.

A "busy" answer (RESOURCE_EXHAUSTED with the platform's advised wait in `retry-after-ms`: every face
worker taken) is not retried here: it becomes PlatformBusyError at once, and the flow sends the same
request again after the wait, on its own timer, so no worker thread sleeps through it and an expert
who cancels stops the resending. RESOURCE_EXHAUSTED without that advice (a kiosk slowed down after
many refusals) stays a PlatformCallError.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from checkin.flow.models import (
    Annulled,
    AnnulReason,
    BatchInfo,
    CardOnFile,
    CardSource,
    CheckInInfo,
    Completed,
    DeviceState,
    DispenseState,
    HeartbeatAck,
    Identified,
    KioskContext,
    Refusal,
    RefusalCode,
    Refused,
)
from checkin.flow.ports import PlatformBusyError, PlatformUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from checkin.config import PlatformSettings
    from checkin.flow.models import (
        AnnulRequest,
        AnnulResult,
        CompleteRequest,
        CompleteResult,
        HeartbeatReport,
        IdentifyRequest,
        IdentifyResult,
        KioskEvent,
    )

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Trailing metadata of the platform's "busy" answer: the wait it advises, in milliseconds (the
# platform's grpc_api.status_mapping.RETRY_AFTER_KEY; tests/integration/kiosk/test_platform_client.py
# answers through the platform's own mapping, so the two cannot drift apart unnoticed).
RETRY_AFTER_KEY = "retry-after-ms"
# Appended to an identify's request id when it is sent again with the challenge's frames (see identify()).
WITH_FRAMES_SUFFIX = ".frames"
# Identifies whose first busy answer the client remembers (one kiosk sends one at a time).
KEPT_BUSY_IDENTIFIES = 16
# The most `busy_waited_ms` the platform takes (its request limits refuse more): an identify sent
# again hours later (重试 on a kiosk left waiting) says this much, not a value the platform refuses.
MAX_BUSY_WAITED_MS = 3_600_000
R = TypeVar("R")


class PlatformCallError(Exception):
    """The platform answered with an error status that retrying cannot fix (bad request, not allowed)."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed with {code.name}: {details}")
        self.code = code


_CARD_SOURCE = {
    CardSource.CHIP: common_pb2.CARD_SOURCE_CHIP,
    CardSource.CONTACTLESS: common_pb2.CARD_SOURCE_CONTACTLESS,
    CardSource.SWIPE: common_pb2.CARD_SOURCE_SWIPE,
    CardSource.TYPED: common_pb2.CARD_SOURCE_TYPED,
    CardSource.ON_FILE: common_pb2.CARD_SOURCE_ON_FILE,
}
_DISPENSE = {
    DispenseState.LIVE: kiosk_pb2.DISPENSE_STATE_UNSPECIFIED,
    DispenseState.HANDED_OUT: kiosk_pb2.DISPENSE_STATE_HANDED_OUT,
    DispenseState.UNKNOWN: kiosk_pb2.DISPENSE_STATE_UNKNOWN,
}
_ANNUL_REASON = {
    AnnulReason.BAND_NOT_TAKEN: kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
    AnnulReason.DISPENSE_FAILED: kiosk_pb2.ANNUL_REASON_DISPENSE_FAILED,
    AnnulReason.BAND_UNREADABLE: kiosk_pb2.ANNUL_REASON_BAND_UNREADABLE,
    AnnulReason.EXPERT_CANCELLED: kiosk_pb2.ANNUL_REASON_EXPERT_CANCELLED,
}
_DEVICE_STATE = {
    DeviceState.OK: kiosk_pb2.DEVICE_STATE_OK,
    DeviceState.DEGRADED: kiosk_pb2.DEVICE_STATE_DEGRADED,
    DeviceState.FAULT: kiosk_pb2.DEVICE_STATE_FAULT,
    DeviceState.OFFLINE: kiosk_pb2.DEVICE_STATE_OFFLINE,
}


def refusal_from_proto(message: common_pb2.Refusal) -> Refusal:
    """A proto Refusal as the flow's Refusal; codes the kiosk does not know become UNSPECIFIED."""
    name = common_pb2.RefusalReason.Name(message.reason) if message.reason in common_pb2.RefusalReason.values() else ""
    try:
        code = RefusalCode[name.removeprefix("REFUSAL_REASON_")]
    except KeyError:
        code = RefusalCode.UNSPECIFIED
    return Refusal(code, dict(message.params), message.message_zh, message.message_en)


def _time(message: Any, field: str) -> dt.datetime | None:
    if not message.HasField(field):
        return None
    ts: Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=dt.UTC)


#: HeartbeatReport.printer_paper (checkin.flow.printing.PaperState values) to the proto enum.
_PRINTER_PAPER = {
    "ok": kiosk_pb2.PRINTER_PAPER_OK,
    "near_end": kiosk_pb2.PRINTER_PAPER_NEAR_END,
    "out": kiosk_pb2.PRINTER_PAPER_OUT,
}


def _check_in(message: common_pb2.CheckIn) -> CheckInInfo:
    return CheckInInfo(
        check_in_id=message.check_in_id,
        hotel_name=message.hotel_name,
        hotel_address=message.hotel_address,
        room_number=message.room_number,
        evaluation_venue=message.evaluation_venue,
        evaluation_start=_time(message, "evaluation_start"),
        checked_in_at=_time(message, "checked_in_at"),
        kiosk_id=message.kiosk_id,
        needs_staff=message.needs_staff,
        batch_code=message.batch_code,
        id_number_masked=message.id_number_masked,
        uwb_tag_id=message.uwb_tag_id,
        slip_code=message.slip_code,
        slip_serial=message.slip_serial,
    )


def _batch(message: common_pb2.Batch) -> BatchInfo:
    return BatchInfo(
        code=message.code,
        name=message.name,
        venue=message.venue,
        hotel_name=message.hotel_name,
        evaluation_start=_time(message, "evaluation_start"),
        check_in_opens=_time(message, "check_in_opens"),
        closed=message.closed,
        allow_id_only=message.allow_id_only,
    )


def _fit(text: str, limit: int) -> str:
    """Free text within the platform's field limit (docs/platform-limits.md): controls as spaces, cut to `limit`."""
    return "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in text[:limit])


def _timestamp(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(dt.UTC))
    return ts


def build_channel(settings: PlatformSettings) -> grpc.Channel:
    """A channel to the platform: TLS with the kiosk's client certificate when configured, else plaintext.

    checkin.config only allows plaintext for a loopback address (development and tests).
    """
    if settings.ca_cert is None:
        return grpc.insecure_channel(settings.address)
    if settings.client_cert is None or settings.client_key is None:  # pragma: no cover - config refuses
        raise ValueError("TLS needs ca_cert, client_cert and client_key together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=settings.ca_cert.read_bytes(),
        private_key=settings.client_key.read_bytes(),
        certificate_chain=settings.client_cert.read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", settings.server_name)] if settings.server_name else []
    return grpc.secure_channel(settings.address, credentials, options=options)


def advised_wait_s(trailing: Sequence[tuple[str, str | bytes]] | None) -> float | None:
    """The wait a "busy" answer's trailing metadata advises, in seconds; None when it advises none.

    A value that is not a whole number of milliseconds (or is negative) advises nothing.
    """
    for key, value in trailing or ():
        if key == RETRY_AFTER_KEY:
            try:
                millis = int(value)
            except (TypeError, ValueError):
                return None
            return millis / 1000 if millis >= 0 else None
    return None


def busy_advice(err: grpc.RpcError) -> float | None:
    """The advised wait of the platform's "busy" answer (RESOURCE_EXHAUSTED with `retry-after-ms`), or None."""
    if err.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED or not isinstance(err, grpc.Call):
        return None
    return advised_wait_s(err.trailing_metadata())


class PlatformClient:
    """KioskService calls as plain functions returning domain values (thread-safe; one channel)."""

    def __init__(self, settings: PlatformSettings, kiosk_id: str, *, channel: grpc.Channel | None = None) -> None:
        self._settings = settings
        self._kiosk_id = kiosk_id
        self._channel = channel if channel is not None else build_channel(settings)
        self._stub = kiosk_pb2_grpc.KioskServiceStub(self._channel)
        # Backoff waits on this event, so close() ends a retry loop at once instead of after a sleep.
        self._closing = threading.Event()
        # From the last GetKioskContext: the platform does not check the challenge's frames, so an
        # identify leaves them out (about 50 KB each, faces: nothing to upload that nobody reads).
        self._frames_unchecked = False
        # Request ids answered NOT_LIVE without their frames: a later send of the same identify (after
        # a busy answer to the send with frames) goes under the suffixed id as well (a few kept).
        self._refused_without_frames: collections.deque[str] = collections.deque(maxlen=16)
        # When each identify still being sent was first answered busy (monotonic s, by request id; a few
        # kept): every later send says how long the kiosk has waited since, and the platform serves
        # identifies sent again before new ones (IdentifyExpertRequest.busy_waited_ms).
        self._first_busy: collections.OrderedDict[str, float] = collections.OrderedDict()

    def close(self) -> None:
        """Stop retrying and close the channel."""
        self._closing.set()
        self._channel.close()

    # ---- the retry loop ------------------------------------------------------------------------------

    def _call(self, method: str, call: Callable[..., R], request: Any, timeout: float) -> R:
        """Call with a deadline per attempt; retry UNAVAILABLE/DEADLINE_EXCEEDED with the SAME request.

        A "busy" answer with an advised wait raises PlatformBusyError at once (the caller resends).
        """
        s = self._settings
        delay = s.backoff_initial_s
        last: grpc.RpcError | None = None
        for attempt in range(1, s.max_attempts + 1):
            try:
                return call(request, timeout=timeout)
            except grpc.RpcError as err:
                code = err.code()
                advised = busy_advice(err)
                if advised is not None:
                    raise PlatformBusyError(f"{method}: {err.details() or 'busy'}", advised) from err
                if code not in _RETRYABLE:
                    raise PlatformCallError(method, code, err.details() or "") from err
                last = err
                log.warning("%s attempt %d/%d: %s", method, attempt, s.max_attempts, code.name)
            if attempt < s.max_attempts and self._closing.wait(delay):
                break
            delay = min(delay * 2, s.backoff_max_s)
        code_name = last.code().name if last is not None else "CLOSED"
        raise PlatformUnavailableError(f"{method}: no answer after {s.max_attempts} attempts ({code_name})") from last

    # ---- calls -----------------------------------------------------------------------------------------

    def get_context(self) -> KioskContext:
        """The open batch for this kiosk's home screen (None when none is open)."""
        request = kiosk_pb2.GetKioskContextRequest(kiosk_id=self._kiosk_id)
        reply = self._call("GetKioskContext", self._stub.GetKioskContext, request, self._settings.call_timeout_s)
        return self._context(reply)

    def _context(self, reply: kiosk_pb2.GetKioskContextResponse) -> KioskContext:
        """A context answer (GetKioskContext's, or the one a Heartbeat carries), noting the frames rule."""
        batch = _batch(reply.batch) if reply.HasField("batch") and reply.batch.code else None
        self._frames_unchecked = reply.liveness_frames_unchecked  # for the identifies that follow
        return KioskContext(batch=batch, server_time=_time(reply, "server_time"))

    def identify(self, request: IdentifyRequest) -> IdentifyResult:
        """IdentifyExpert: Identified, or Refused (FACE_MISMATCH carries params['attempts_left']).

        The challenge's frames are left out while the platform's last context said it does not check
        them. Should it refuse NOT_LIVE all the same (its [face] liveness changed since), the identify
        is sent once more at once, with the frames, under its request id + WITH_FRAMES_SUFFIX (the
        first answer is stored under the first id), as is every later send of that identify.
        """
        leave_out = self._frames_unchecked and bool(request.challenge_frames)
        message = self._identify_message(request, with_frames=not leave_out)
        if request.request_id in self._refused_without_frames:
            message.request_id = request.request_id + WITH_FRAMES_SUFFIX
        reply = self._send_identify(request.request_id, message)
        if leave_out and reply.refusal.reason == common_pb2.REFUSAL_REASON_NOT_LIVE:
            log.warning("identify refused NOT_LIVE without the challenge's frames: sending them")
            self._frames_unchecked = False
            self._refused_without_frames.append(request.request_id)
            message = self._identify_message(request, with_frames=True)
            message.request_id = request.request_id + WITH_FRAMES_SUFFIX
            reply = self._send_identify(request.request_id, message)
        return _identify_result(reply)

    def _send_identify(self, request_id: str, message: kiosk_pb2.IdentifyExpertRequest) -> Any:
        """IdentifyExpert, saying how long this identify has waited since its first busy answer (if any)."""
        first_busy = self._first_busy.get(request_id)
        if first_busy is not None:
            # At least 1: a send after a busy answer is "sent again" however soon it follows.
            message.busy_waited_ms = min(max(1, round((time.monotonic() - first_busy) * 1000)), MAX_BUSY_WAITED_MS)
        try:
            return self._call("IdentifyExpert", self._stub.IdentifyExpert, message, self._settings.identify_timeout_s)
        except PlatformBusyError:
            if first_busy is None:
                self._first_busy[request_id] = time.monotonic()
                while len(self._first_busy) > KEPT_BUSY_IDENTIFIES:
                    self._first_busy.popitem(last=False)  # the oldest (one call, safe across threads)
            raise

    def _identify_message(self, request: IdentifyRequest, *, with_frames: bool) -> kiosk_pb2.IdentifyExpertRequest:
        """The IdentifyExpertRequest for `request`, the challenge's frames in it or not."""
        card = request.id_card
        message = kiosk_pb2.IdentifyExpertRequest(
            request_id=request.request_id,
            kiosk_id=self._kiosk_id,
            batch_code=request.batch_code,
            id_card=kiosk_pb2.IdCardData(
                id_number=card.id_number,
                name=card.name,
                sex_code=card.sex_code,
                nation_code=card.nation_code,
                birth_date=card.birth_date,
                address=card.address,
                issuing_authority=card.issuing_authority,
                valid_from=card.valid_from,
                valid_to=card.valid_to,
            ),
            faces=[kiosk_pb2.FaceCapture(image_jpeg=img, quality=request.face_quality) for img in request.faces],
            liveness_passed=request.liveness_passed,
            face_attempt=request.face_attempt,
        )
        if request.challenge:
            message.liveness.CopyFrom(
                kiosk_pb2.LivenessEvidence(
                    challenge=f"LIVENESS_CHALLENGE_{request.challenge.upper()}",
                    challenge_id=request.challenge_id,
                    frames=[
                        kiosk_pb2.ChallengeFrame(image=img, captured_at_ms=ms)
                        for img, ms in (request.challenge_frames if with_frames else ())
                    ],
                )
            )
        return message

    def complete_check_in(self, request: CompleteRequest) -> CompleteResult:
        """CompleteCheckIn, idempotent by request id: Completed (maybe replayed) or Refused."""
        message = kiosk_pb2.CompleteCheckInRequest(
            request_id=request.request_id,
            kiosk_id=self._kiosk_id,
            identification_token=request.identification_token,
            signature_png=request.signature_png,
            band_uid=request.band_uid,
            dispense=_DISPENSE[request.dispense],
        )
        if request.new_card is None:
            message.use_card_on_file = True
        else:
            card = request.new_card
            message.new_card.CopyFrom(
                kiosk_pb2.NewBankCard(
                    pan=card.pan,
                    expiry_yymm=card.expiry_yymm or "",
                    holder_name=card.holder_name or "",
                    source=_CARD_SOURCE[card.source],
                )
            )
        reply = self._call("CompleteCheckIn", self._stub.CompleteCheckIn, message, self._settings.call_timeout_s)
        if reply.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED:
            return Completed(
                _check_in(reply.check_in), replayed=reply.replayed, needs_staff_case_id=reply.needs_staff_case_id
            )
        return Refused(refusal_from_proto(reply.refusal), needs_staff_case_id=reply.needs_staff_case_id)

    def annul_check_in(self, request: AnnulRequest) -> AnnulResult:
        """AnnulCheckIn: Annulled or Refused."""
        message = kiosk_pb2.AnnulCheckInRequest(
            request_id=request.request_id,
            kiosk_id=self._kiosk_id,
            check_in_id=request.check_in_id,
            reason=_ANNUL_REASON[request.reason],
            detail=_fit(request.detail, 500),
        )
        reply = self._call("AnnulCheckIn", self._stub.AnnulCheckIn, message, self._settings.call_timeout_s)
        if reply.outcome == kiosk_pb2.AnnulCheckInResponse.OUTCOME_ANNULLED:
            return Annulled()
        return Refused(refusal_from_proto(reply.refusal))

    def heartbeat(self, report: HeartbeatReport) -> HeartbeatAck:
        """Heartbeat with device health, stock and queue depth."""
        message = kiosk_pb2.HeartbeatRequest(
            kiosk_id=self._kiosk_id,
            kiosk_time=_timestamp(report.kiosk_time),
            devices=[
                kiosk_pb2.DeviceHealth(device=d.device, state=_DEVICE_STATE[d.state], detail=_fit(d.detail, 200))
                for d in report.devices
            ],
            band_stock=report.band_stock,
            pending_check_ins=report.pending_check_ins,
            out_of_service=report.out_of_service,
            software_version=report.software_version,
            printer_paper=_PRINTER_PAPER.get(report.printer_paper, kiosk_pb2.PRINTER_PAPER_UNSPECIFIED),
        )
        reply = self._call("Heartbeat", self._stub.Heartbeat, message, self._settings.call_timeout_s)
        return HeartbeatAck(
            server_time=_time(reply, "server_time"),
            stock_low=reply.stock_low,
            # A platform before the field leaves it out: the caller then asks GetKioskContext.
            context=self._context(reply.context) if reply.HasField("context") else None,
        )

    def report_event(self, event: KioskEvent) -> None:
        """ReportKioskEvent for the audit log."""
        message = kiosk_pb2.ReportKioskEventRequest(
            request_id=event.request_id or str(uuid.uuid4()),
            kiosk_id=self._kiosk_id,
            event=event.event,
            outcome=_fit(event.outcome, 40),
            detail=_fit(event.detail, 1000),
            id_number_hash_hint=event.id_number_hint,
            occurred_at=_timestamp(event.occurred_at),
        )
        self._call("ReportKioskEvent", self._stub.ReportKioskEvent, message, self._settings.call_timeout_s)


def _identify_result(reply: kiosk_pb2.IdentifyExpertResponse) -> IdentifyResult:
    """The platform's answer to an identify as the flow takes it."""
    if reply.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED:
        on_file = None
        if reply.HasField("bank_card_on_file") and reply.bank_card_on_file.pan_masked:
            on_file = CardOnFile(reply.bank_card_on_file.pan_masked, reply.bank_card_on_file.bank_name)
        return Identified(
            identification_token=reply.identification_token,
            expert_name=reply.expert_name,
            id_number_masked=reply.id_number_masked,
            organisation=reply.organisation,
            card_on_file=on_file,
            face_attempts_left=reply.face_attempts_left,
        )
    refusal = refusal_from_proto(reply.refusal)
    if refusal.code is RefusalCode.FACE_MISMATCH:
        params = {**refusal.params, "attempts_left": str(reply.face_attempts_left)}
        refusal = Refusal(refusal.code, params, refusal.message_zh, refusal.message_en)
    return Refused(refusal)
