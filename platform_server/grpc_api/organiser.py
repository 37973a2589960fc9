"""OrganiserService and DiagnosticsService servicers (the person and their role checked by the interceptor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expertcheckin.v1 import diagnostics_pb2, diagnostics_pb2_grpc, organiser_pb2, organiser_pb2_grpc

from platform_server.grpc_api import convert
from platform_server.grpc_api.organiser_auth import current_person
from platform_server.grpc_api.status_mapping import maps_errors
from platform_server.services import accounts, batches, events, exports, face_attempts, statistics

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator

    import grpc

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext


class OrganiserServicer(organiser_pb2_grpc.OrganiserServiceServicer):  # type: ignore[misc]  # generated base is untyped
    """Batches, live statistics and the check-in event stream."""

    def __init__(self, new_uow: Callable[[], UnitOfWork], ctx: ServiceContext, stopping: threading.Event) -> None:
        self._new_uow = new_uow
        self._ctx = ctx
        self._stopping = stopping

    @maps_errors
    def ListBatches(  # noqa: N802
        self,
        request: organiser_pb2.ListBatchesRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.ListBatchesResponse:
        """Open batches (and closed ones if asked)."""
        views = batches.list_batches(self._new_uow(), include_closed=request.include_closed)
        return organiser_pb2.ListBatchesResponse(batches=[convert.batch(v) for v in views])

    @maps_errors
    def CreateBatch(  # noqa: N802
        self,
        request: organiser_pb2.CreateBatchRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.CreateBatchResponse:
        """Create a batch (hotel by hotel_code); a retried request_id gets the first answer."""
        b = request.batch
        spec = batches.BatchSpec(
            code=b.code,
            name=b.name,
            venue=b.venue,
            hotel_code=b.hotel_code or "H1",
            hotel_name=b.hotel_name,
            hotel_address=b.hotel_address,
            evaluation_start=convert.from_timestamp(b.evaluation_start, b.HasField("evaluation_start")),
            evaluation_end=convert.from_timestamp(b.evaluation_end, b.HasField("evaluation_end")),
            check_in_opens=convert.from_timestamp(b.check_in_opens, b.HasField("check_in_opens")),
            allow_id_only=b.allow_id_only,
        )
        view = batches.create_batch(
            self._new_uow(), self._ctx, spec, current_person().actor, request_id=request.request_id
        )
        return organiser_pb2.CreateBatchResponse(batch=convert.batch(view))

    @maps_errors
    def CloseBatch(  # noqa: N802
        self,
        request: organiser_pb2.CloseBatchRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.CloseBatchResponse:
        """Close a batch; a retried request_id gets the first answer."""
        return organiser_pb2.CloseBatchResponse(
            batch=convert.batch(
                batches.close_batch(
                    self._new_uow(), self._ctx, request.code, current_person().actor, request_id=request.request_id
                )
            )
        )

    @maps_errors
    def GetBatchStatistics(  # noqa: N802
        self,
        request: organiser_pb2.GetBatchStatisticsRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.GetBatchStatisticsResponse:
        """Invited, arrived, missing, rooms, bands, UWB, kiosks."""
        return convert.statistics(statistics.batch_statistics(self._new_uow(), request.code))

    @maps_errors
    def StreamCheckInEvents(  # noqa: N802
        self, request: organiser_pb2.StreamCheckInEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[organiser_pb2.StreamCheckInEventsResponse]:
        """Past events after `after_event_id`, then live ones until the client leaves or the server stops."""
        uow = self._new_uow()
        with uow:
            batch_id = events.batch_id_of(uow, request.batch_code)
        return self._stream(batch_id, request.after_event_id, context)

    @maps_errors
    def ResetFaceAttempts(  # noqa: N802
        self,
        request: organiser_pb2.ResetFaceAttemptsRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.ResetFaceAttemptsResponse:
        """New face attempts for an expert, with a reason; audited with the person."""
        done = face_attempts.reset_face_attempts(
            self._new_uow(),
            self._ctx,
            batch_code=request.batch_code,
            id_value=request.id_number,
            reason=request.reason,
            actor=current_person().actor,
        )
        response = organiser_pb2.ResetFaceAttemptsResponse(
            previous_failures=done.previous_failures,
            locked_by_kiosk=done.locked_by or "",
            id_number_masked=done.id_masked,
            expert_name=done.expert_name,
        )
        if done.locked_at is not None:
            response.locked_at.FromDatetime(done.locked_at)
        return response

    @maps_errors
    def ExportFees(  # noqa: N802
        self,
        request: organiser_pb2.ExportFeesRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.ExportFeesResponse:
        """Fee-payment rows; full numbers only for a role with see_full_numbers (refusal audited)."""
        person = current_person()
        if request.full_numbers:
            accounts.require(
                self._new_uow(),
                person,
                accounts.Permission.SEE_FULL_NUMBERS,
                what="ExportFees full_numbers",
                at=self._ctx.clock(),
            )
        rows = exports.fee_rows(
            self._new_uow(), self._ctx, request.batch_code, full_numbers=request.full_numbers, actor=person.actor
        )
        return organiser_pb2.ExportFeesResponse(
            rows=[
                organiser_pb2.FeeRow(
                    name=r[0], id_number=r[1], organisation=r[2], bank=r[3], card_number=r[4], checked_in_at=r[5]
                )
                for r in rows
            ]
        )

    def WhoAmI(  # noqa: N802
        self,
        request: organiser_pb2.WhoAmIRequest,  # noqa: ARG002
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> organiser_pb2.WhoAmIResponse:
        """The calling person and what their role allows."""
        person = current_person()
        return organiser_pb2.WhoAmIResponse(
            username=person.username,
            display_name=person.display_name,
            role=person.role.value,
            permissions=sorted(p.value for p in accounts.ROLE_PERMISSIONS[person.role]),
        )

    def _stream(
        self, batch_id: int, after: int, context: grpc.ServicerContext
    ) -> Iterator[organiser_pb2.StreamCheckInEventsResponse]:
        bell = self._ctx.bell
        while context.is_active() and not self._stopping.is_set():
            generation = bell.generation
            uow = self._new_uow().read_only()
            with uow:
                batch_events = events.read_after(uow, self._ctx, batch_id, after)
            for item in batch_events:
                after = item.event_id
                yield convert.event(item)
            if not batch_events:
                # Woken at once by commits in this process; the timeout picks up other replicas' events.
                bell.wait(generation, timeout=self._ctx.rules.event_poll_s)


class DiagnosticsServicer(diagnostics_pb2_grpc.DiagnosticsServiceServicer):  # type: ignore[misc]  # generated base is untyped
    """Echo: the RPC floor the benchmark compares with."""

    def Echo(  # noqa: N802
        self,
        request: diagnostics_pb2.EchoRequest,
        context: grpc.ServicerContext,  # noqa: ARG002
    ) -> diagnostics_pb2.EchoResponse:
        """Return the message unchanged."""
        return diagnostics_pb2.EchoResponse(message=request.message)
