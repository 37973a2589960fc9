"""A fake platform: a small KioskService servicer on a real gRPC server on a real port, with fault switches."""

from __future__ import annotations

import datetime as dt
import faulthandler
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc

from checkin.config import PlatformSettings
from platform_server.errors import OverloadedError
from platform_server.grpc_api.status_mapping import maps_errors


@dataclass
class FakeKioskServicer(kiosk_pb2_grpc.KioskServiceServicer):  # type: ignore[misc]  # generated base is untyped
    """Answers like the platform (idempotent by request id) and fails on demand."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    down: bool = False  # every call: UNAVAILABLE
    fail_next: dict[str, int] = field(default_factory=dict)  # method -> UNAVAILABLE this many times
    hang_next: dict[str, int] = field(default_factory=dict)  # method -> hold past the client's deadline
    status_next: dict[str, grpc.StatusCode] = field(default_factory=dict)
    busy_next: int = 0  # IdentifyExpert: the platform's own "busy" answer this many times
    busy_next_with_frames: int = 0  # the same, for identifies that carry challenge frames
    busy_retry_after_s: float = 0.3
    identify_reply: kiosk_pb2.IdentifyExpertResponse | None = None
    frames_unchecked: bool = False  # GetKioskContext: "this platform does not check the challenge's frames"
    context_in_heartbeat: bool = False  # Heartbeat answers with the context, as the platform does (False: before it)
    checks_frames: bool = False  # IdentifyExpert: faces without challenge frames refused NOT_LIVE, as the platform does
    complete_refusal: common_pb2.RefusalReason | None = None
    answered: dict[str, kiosk_pb2.CompleteCheckInResponse] = field(default_factory=dict)
    annulled: list[kiosk_pb2.AnnulCheckInRequest] = field(default_factory=list)
    events: list[kiosk_pb2.ReportKioskEventRequest] = field(default_factory=list)
    heartbeats: list[kiosk_pb2.HeartbeatRequest] = field(default_factory=list)
    held: list[threading.Event] = field(default_factory=list)  # one per call held past its deadline
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _gate(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((method, request))
            down = self.down
            fail = self.fail_next.get(method, 0) > 0
            if fail:
                self.fail_next[method] -= 1
            hang = self.hang_next.get(method, 0) > 0
            if hang:
                self.hang_next[method] -= 1
            status = self.status_next.pop(method, None)
        if down or fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "platform down (test)")
        if status is not None:
            context.abort(status, "refused by the test")
        if hang:
            # Hold the call until the client gives up on it (its deadline ends the RPC) or the test ends,
            # so the held call does not keep a server thread from the retry.
            ended = threading.Event()
            with self.lock:
                self.held.append(ended)
            if context.add_callback(ended.set):
                ended.wait(60)

    def release_held_calls(self) -> None:
        """End every call still held past its deadline."""
        with self.lock:
            for ended in self.held:
                ended.set()

    def calls_to(self, method: str) -> list[Any]:
        with self.lock:
            return [r for m, r in self.calls if m == method]

    def GetKioskContext(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("GetKioskContext", request, context)
        return self._context()

    def _context(self) -> kiosk_pb2.GetKioskContextResponse:
        reply = kiosk_pb2.GetKioskContextResponse(
            batch=common_pb2.Batch(
                code="B2026-001", name="2026年第1批次", venue="第3评标室", hotel_name="交易中心宾馆"
            ),
            liveness_frames_unchecked=self.frames_unchecked,
        )
        reply.batch.evaluation_start.FromDatetime(dt.datetime(2026, 3, 9, 1, 30, tzinfo=dt.UTC))
        reply.server_time.GetCurrentTime()
        return reply

    @maps_errors
    def _overloaded(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The answer of a platform whose face workers are all taken, through the platform's own mapping."""
        raise OverloadedError("人脸比对繁忙 / face verification is busy", self.busy_retry_after_s)

    def IdentifyExpert(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("IdentifyExpert", request, context)
        with self.lock:
            busy = self.busy_next > 0
            self.busy_next -= int(busy)
            if not busy and request.liveness.frames and self.busy_next_with_frames > 0:
                busy = True
                self.busy_next_with_frames -= 1
        if busy:
            return self._overloaded(request, context)
        if self.checks_frames and request.faces and not request.liveness.frames:
            return kiosk_pb2.IdentifyExpertResponse(
                outcome=kiosk_pb2.IdentifyExpertResponse.OUTCOME_REFUSED,
                refusal=common_pb2.Refusal(reason=common_pb2.REFUSAL_REASON_NOT_LIVE),
                face_attempts_left=3,
            )
        if self.identify_reply is not None:
            return self.identify_reply
        return kiosk_pb2.IdentifyExpertResponse(
            outcome=kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED,
            identification_token="tok-" + request.request_id,
            expert_name="张三",
            id_number_masked=request.id_card.id_number[:4] + "**********" + request.id_card.id_number[-4:],
            bank_card_on_file=kiosk_pb2.BankCardOnFile(pan_masked="622848******1234", bank_name="中国农业银行"),
            face_attempts_left=3,
        )

    def CompleteCheckIn(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("CompleteCheckIn", request, context)
        with self.lock:
            if request.request_id in self.answered:
                first = kiosk_pb2.CompleteCheckInResponse()
                first.CopyFrom(self.answered[request.request_id])
                first.replayed = True
                return first
            if self.complete_refusal is not None:
                reply = kiosk_pb2.CompleteCheckInResponse(
                    outcome=kiosk_pb2.CompleteCheckInResponse.OUTCOME_REFUSED,
                    refusal=common_pb2.Refusal(reason=self.complete_refusal, message_zh="拒绝", message_en="refused"),
                )
            else:
                n = len(self.answered) + 1
                reply = kiosk_pb2.CompleteCheckInResponse(
                    outcome=kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED,
                    check_in=common_pb2.CheckIn(
                        check_in_id=f"ci-{n}",
                        hotel_name="交易中心宾馆",
                        room_number=f"12{n:02d}",
                        band_uid=request.band_uid,
                    ),
                )
            self.answered[request.request_id] = reply
            return reply

    def AnnulCheckIn(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("AnnulCheckIn", request, context)
        with self.lock:
            self.annulled.append(request)
        return kiosk_pb2.AnnulCheckInResponse(outcome=kiosk_pb2.AnnulCheckInResponse.OUTCOME_ANNULLED)

    def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("Heartbeat", request, context)
        with self.lock:
            self.heartbeats.append(request)
        reply = kiosk_pb2.HeartbeatResponse(stock_low=request.band_stock < 10)
        if self.context_in_heartbeat:
            reply.context.CopyFrom(self._context())
        return reply

    def ReportKioskEvent(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._gate("ReportKioskEvent", request, context)
        with self.lock:
            self.events.append(request)
        return kiosk_pb2.ReportKioskEventResponse()


@dataclass
class FakePlatformServer:
    servicer: FakeKioskServicer
    port: int
    server: grpc.Server

    def stop(self) -> None:
        """Stop at once; if the server does not stop within 10 s, print every thread's stack first.

        An in-process server of this kind once answered no call for tens of seconds and took 88 s to
        stop: its thread was finalising Tk fonts another test had dropped (see test_gui.open_window).
        If a stop is slow again, the stacks say where its threads were.
        """
        self.servicer.release_held_calls()
        stopped = self.server.stop(0)
        if not stopped.wait(10):
            print("the fake platform did not stop within 10 s; every thread's stack:", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            stopped.wait()


def start_fake_platform(credentials: grpc.ServerCredentials | None = None) -> FakePlatformServer:
    servicer = FakeKioskServicer()
    # Without SO_REUSEPORT (gRPC's default is on), as the platform: no other server can share its port.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
    kiosk_pb2_grpc.add_KioskServiceServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return FakePlatformServer(servicer, port, server)


def settings_for(port: int, **overrides: Any) -> PlatformSettings:
    values: dict[str, Any] = {
        "address": f"127.0.0.1:{port}",
        "ca_cert": None,
        "client_cert": None,
        "client_key": None,
        "server_name": "",
        # A generous bound: on a loaded 2-core CI machine an in-process answer has been seen to take
        # seconds. A test about deadlines holds a call (hang_next) rather than relying on a short one.
        "call_timeout_s": 10.0,
        "identify_timeout_s": 10.0,
        "max_attempts": 4,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return PlatformSettings(**values)
