"""KioskService: translate requests to service commands and results to responses; nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc

from platform_server.grpc_api import convert
from platform_server.grpc_api.auth import check_kiosk_identity, client_certificate_sha256
from platform_server.grpc_api.status_mapping import maps_errors
from platform_server.services import check_in, identify, kiosk_access, kiosks
from platform_server.services.refusals import Reason

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    import grpc

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.batches import BatchView
    from platform_server.services.context import ServiceContext

_Identify = kiosk_pb2.IdentifyExpertResponse
_Complete = kiosk_pb2.CompleteCheckInResponse
_Annul = kiosk_pb2.AnnulCheckInResponse


def _dispense(value: int) -> str:
    """The proto's DispenseState as the service's word (an unknown number is the service's to refuse)."""
    if value == kiosk_pb2.DISPENSE_STATE_UNSPECIFIED:
        return "LIVE"
    try:
        return kiosk_pb2.DispenseState.Name(value).removeprefix("DISPENSE_STATE_")
    except ValueError:
        return f"UNKNOWN_VALUE_{value}"


class KioskServicer(kiosk_pb2_grpc.KioskServiceServicer):  # type: ignore[misc]  # generated base is untyped
    """The calls a check-in kiosk makes."""

    def __init__(self, new_uow: Callable[[], UnitOfWork], ctx: ServiceContext, *, require_certificate: bool) -> None:
        self._new_uow = new_uow
        self._ctx = ctx
        self._require_certificate = require_certificate

    def _caller(
        self,
        context: grpc.ServicerContext,
        kiosk_id: str,
        *,
        batch_code: str | None = None,
        token: str | None = None,
        identify: bool = False,
    ) -> kiosk_access.Admission:
        """The caller is the kiosk it names, registered, enabled, with its certificate, for its batch."""
        check_kiosk_identity(context, kiosk_id, require_certificate=self._require_certificate)
        return kiosk_access.admit(
            self._new_uow(),
            self._ctx,
            kiosk_id,
            certificates_required=self._require_certificate,
            presented_sha256=client_certificate_sha256(context) if self._require_certificate else None,
            batch_code=batch_code,
            token=token,
            identify=identify,
        )

    @maps_errors
    def GetKioskContext(  # noqa: N802
        self, request: kiosk_pb2.GetKioskContextRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.GetKioskContextResponse:
        """The open batch for the kiosk's home screen, and whether to send the liveness challenge's frames."""
        self._caller(context, request.kiosk_id)
        return self._kiosk_context(request.kiosk_id)

    def _kiosk_context(self, kiosk_id: str) -> kiosk_pb2.GetKioskContextResponse:
        """GetKioskContext's answer."""
        return self._context_response(*kiosks.kiosk_context(self._new_uow(), self._ctx, kiosk_id))

    def _context_response(self, batch: BatchView | None, now: dt.datetime) -> kiosk_pb2.GetKioskContextResponse:
        """The kiosk's context as GetKioskContext answers it, also carried by every Heartbeat's answer."""
        response = kiosk_pb2.GetKioskContextResponse(
            server_time=convert.timestamp(now),
            # [face] liveness = "kiosk": no checker reads the frames, so the kiosk need not upload them.
            liveness_frames_unchecked=self._ctx.liveness_checker is None,
        )
        if batch is not None:
            response.batch.CopyFrom(convert.batch(batch))
        return response

    @maps_errors
    def IdentifyExpert(  # noqa: N802
        self, request: kiosk_pb2.IdentifyExpertRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.IdentifyExpertResponse:
        """Decide whether the ID card (and face) may check in: invited, the person on file, earlier check-in."""
        admission = self._caller(context, request.kiosk_id, batch_code=request.batch_code, identify=True)
        result = identify.identify(
            self._new_uow(),
            self._ctx,
            identify.IdentifyCommand(
                request_id=request.request_id,
                kiosk_id=request.kiosk_id,
                batch_code=request.batch_code,
                id_number=request.id_card.id_number,
                valid_to=request.id_card.valid_to,
                faces=tuple(f.image_jpeg for f in request.faces),
                liveness_passed=request.liveness_passed,
                face_attempt=request.face_attempt,
                liveness=convert.liveness_evidence(request.liveness) if request.HasField("liveness") else None,
                busy_waited_s=request.busy_waited_ms / 1000,
            ),
        )
        if not result.replayed:
            kiosk_access.note_identify(
                self._new_uow(),
                self._ctx,
                request.kiosk_id,
                admission,
                result.refusal.reason if result.refusal else None,
            )
        # What a kiosk may learn about the expert on file: everything once the person is verified (the
        # face matched, or the batch takes the ID card alone); after a refusal nothing beyond the
        # refusal, so a kiosk (or a stolen kiosk certificate) holding only an ID number cannot read the
        # expert's name, employer or room. ALREADY_CHECKED_IN is decided only for a verified person.
        disclose = result.verified or (
            result.refusal is not None and result.refusal.reason is Reason.ALREADY_CHECKED_IN
        )
        response = _Identify(
            outcome=_Identify.OUTCOME_VERIFIED if result.verified else _Identify.OUTCOME_REFUSED,
            identification_token=result.identification_token,
            expert_name=result.expert_name if disclose else "",
            id_number_masked=result.id_number_masked,
            organisation=result.organisation if disclose else "",
            face_attempts_left=result.face_attempts_left,
        )
        if result.refusal is not None:
            response.refusal.CopyFrom(convert.refusal(result.refusal))
        if result.face is not None:
            response.face.CopyFrom(
                kiosk_pb2.FaceMatch(
                    distance=result.face.distance, threshold=result.face.threshold, matched=result.face.matched
                )
            )
        if result.card_on_file_masked:
            response.bank_card_on_file.CopyFrom(
                kiosk_pb2.BankCardOnFile(pan_masked=result.card_on_file_masked, bank_name=result.card_on_file_bank)
            )
        if result.previous_check_in is not None and disclose:
            response.previous_check_in.CopyFrom(convert.check_in(result.previous_check_in))
        return response

    @maps_errors
    def CompleteCheckIn(  # noqa: N802
        self, request: kiosk_pb2.CompleteCheckInRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.CompleteCheckInResponse:
        """Bind band, store card and signature, assign room."""
        live = request.dispense == kiosk_pb2.DISPENSE_STATE_UNSPECIFIED
        # A replay of a band already handed out passes the batch check: its token proves where it began.
        self._caller(context, request.kiosk_id, token=request.identification_token if live else None)
        new_card = request.new_card if request.WhichOneof("bank_card") == "new_card" else None
        result = check_in.complete_check_in(
            self._new_uow(),
            self._ctx,
            check_in.CompleteCommand(
                request_id=request.request_id,
                kiosk_id=request.kiosk_id,
                identification_token=request.identification_token,
                use_card_on_file=request.WhichOneof("bank_card") == "use_card_on_file" and request.use_card_on_file,
                new_card_pan=new_card.pan if new_card is not None else "",
                card_source=common_pb2.CardSource.Name(new_card.source).removeprefix("CARD_SOURCE_")
                if new_card is not None
                else "ON_FILE",
                signature_png=request.signature_png,
                band_uid=request.band_uid,
                dispense=_dispense(request.dispense),
            ),
        )
        response = _Complete(
            outcome=_Complete.OUTCOME_COMPLETED if result.refusal is None else _Complete.OUTCOME_REFUSED,
            replayed=result.replayed,
            needs_staff_case_id=result.needs_staff_case_id,
        )
        if result.refusal is not None:
            response.refusal.CopyFrom(convert.refusal(result.refusal))
        if result.check_in is not None:
            response.check_in.CopyFrom(convert.check_in(result.check_in))
        return response

    @maps_errors
    def AnnulCheckIn(  # noqa: N802
        self, request: kiosk_pb2.AnnulCheckInRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.AnnulCheckInResponse:
        """Undo a check-in this kiosk just made."""
        self._caller(context, request.kiosk_id)
        result = check_in.annul_check_in(
            self._new_uow(),
            self._ctx,
            check_in.AnnulCommand(
                request_id=request.request_id,
                kiosk_id=request.kiosk_id,
                check_in_id=request.check_in_id,
                reason=kiosk_pb2.AnnulReason.Name(request.reason).removeprefix("ANNUL_REASON_"),
                detail=request.detail,
            ),
        )
        response = _Annul(outcome=_Annul.OUTCOME_ANNULLED if result.refusal is None else _Annul.OUTCOME_REFUSED)
        if result.refusal is not None:
            response.refusal.CopyFrom(convert.refusal(result.refusal))
        return response

    @maps_errors
    def Heartbeat(  # noqa: N802
        self, request: kiosk_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.HeartbeatResponse:
        """Store device health and stock; answer with the kiosk's context, so a beat is one call."""
        self._caller(context, request.kiosk_id)
        answer = kiosks.heartbeat(
            self._new_uow(),
            self._ctx,
            kiosks.HeartbeatCommand(
                kiosk_id=request.kiosk_id,
                devices=tuple(
                    kiosks.DeviceHealth(
                        d.device[:40], kiosk_pb2.DeviceState.Name(d.state).removeprefix("DEVICE_STATE_"), d.detail[:200]
                    )
                    for d in request.devices
                ),
                band_stock=request.band_stock,
                pending_check_ins=request.pending_check_ins,
                out_of_service=request.out_of_service,
                software_version=request.software_version,
                kiosk_time=convert.from_timestamp(request.kiosk_time, request.HasField("kiosk_time")),
                printer_paper=convert.printer_paper(request.printer_paper),
            ),
        )
        return kiosk_pb2.HeartbeatResponse(
            server_time=convert.timestamp(answer.server_time),
            stock_low=answer.stock_low,
            # Read with the stored beat, in the beat's one read transaction (no second one for it).
            context=self._context_response(answer.batch, answer.server_time),
        )

    @maps_errors
    def ReportKioskEvent(  # noqa: N802
        self, request: kiosk_pb2.ReportKioskEventRequest, context: grpc.ServicerContext
    ) -> kiosk_pb2.ReportKioskEventResponse:
        """Kiosk-side step or failure into the audit log (once per request_id, however often retried)."""
        self._caller(context, request.kiosk_id)
        kiosks.report_event(
            self._new_uow(),
            self._ctx,
            request_id=request.request_id,
            kiosk_id=request.kiosk_id,
            event=request.event,
            outcome=request.outcome,
            detail=request.detail,
            id_hint=request.id_number_hash_hint,
            kiosk_time=convert.from_timestamp(request.occurred_at, request.HasField("occurred_at")),
        )
        return kiosk_pb2.ReportKioskEventResponse()
