"""The gRPC server's own Prometheus figures: RPC latency per method and code, face and liveness latency.

On SQLite also the one write lock's use (db.engine.WriteGate): transactions, time held and queued.
The process's own figures (`process_cpu_seconds_total`, memory, open files) and the CPU time of its
child processes (the face workers, the UWB delivery process): what a call costs the machine.

Face verification is also split into its two parts, as the verifier measured them (in a worker
process or not): `platform_face_checks_seconds` (decoding the captures, finding one face in each)
and `platform_face_descriptors_seconds` (the descriptors); the scenario runner reads their _sum and
_count around each check-in.

A server interceptor times every call (unary and streaming) and reads the status code the handler
set; the face verifier and the liveness checker are wrapped where the server is built, so the
services stay unaware of metrics. The figures are this process's (each replica is scraped on its
health port, `GET /metrics`); the console's /metrics holds the database-wide ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily

from platform_server.face.api import FaceImageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from platform_server.db.engine import WriteGate
    from platform_server.face.api import FaceVerdict, FaceVerifier, LivenessChecker, LivenessEvidence, LivenessVerdict
    from platform_server.services.context import ServiceContext

#: From 1 ms (a refused call) to 30 s (a face check under load); face checks take 0.1-2 s on a laptop.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FACE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class RpcMetrics:
    """The histograms of one server process, in their own registry (rendered by the health endpoint)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc_seconds = Histogram(
            "platform_rpc_duration_seconds",
            "gRPC call latency at the server, by method and status code",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self.face_seconds = Histogram(
            "platform_face_verification_duration_seconds",
            "Face verification latency (captures against the reference set), by outcome",
            ["outcome"],
            buckets=FACE_BUCKETS,
            registry=self.registry,
        )
        self.face_checks_seconds = Histogram(
            "platform_face_checks_seconds",
            "Face verification: decoding the captures and finding their faces (as the verifier measured it)",
            buckets=FACE_BUCKETS,
            registry=self.registry,
        )
        self.face_descriptors_seconds = Histogram(
            "platform_face_descriptors_seconds",
            "Face verification: computing the captures' descriptors (as the verifier measured it)",
            buckets=FACE_BUCKETS,
            registry=self.registry,
        )
        self.liveness_seconds = Histogram(
            "platform_liveness_check_duration_seconds",
            "Liveness check latency (the kiosk's challenge frames), by outcome",
            ["outcome"],
            buckets=FACE_BUCKETS,
            registry=self.registry,
        )
        self.write_gate: WriteGate | None = None  # the SQLite platform's, read at each scrape
        self.registry.register(_WriteGateCollector(self))
        ProcessCollector(registry=self.registry)
        self.registry.register(_ChildProcessesCollector())

    def watch_write_gate(self, gate: WriteGate | None) -> None:
        """Report this SQLite write gate's figures (None, as on PostgreSQL: none reported)."""
        self.write_gate = gate

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def instrument(self, ctx: ServiceContext) -> ServiceContext:
        """The context with its face verifier and liveness checker timed (unchanged where None)."""
        verifier = TimedFaceVerifier(ctx.face_verifier, self) if ctx.face_verifier is not None else None
        checker = TimedLivenessChecker(ctx.liveness_checker, self) if ctx.liveness_checker is not None else None
        return dataclasses.replace(ctx, face_verifier=verifier, liveness_checker=checker)


class _WriteGateCollector:
    """The SQLite write lock's use as counters: rate(held seconds) near 1 means the platform is at its limit."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """Counters from the gate's figures now (nothing without a SQLite gate)."""
        gate = self._metrics.write_gate
        if gate is None:
            return
        f = gate.figures()
        for name, text, value in (
            ("platform_sqlite_write_transactions", "Write transactions of this process (SQLite)", f.transactions),
            (
                "platform_sqlite_write_lock_held_seconds",
                "Time this process's writers held the SQLite write lock (as a rate: its busy share)",
                f.held_s,
            ),
            ("platform_sqlite_write_lock_wait_seconds", "Time this process's writers queued for it", f.waited_s),
            (
                "platform_sqlite_write_lock_timeouts",
                "Writers that stopped queueing after the busy timeout and went on to SQLite's own wait",
                f.timeouts,
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)


class _ChildProcessesCollector:
    """The CPU time of this process's live children: the face workers and the UWB delivery process."""

    def collect(self) -> Iterator[Metric]:
        """One counter, read from /proc now (nothing where there is no /proc)."""
        seconds = children_cpu_seconds(os.getpid())
        if seconds is None:
            return
        yield CounterMetricFamily(
            "platform_child_processes_cpu_seconds",
            "User and system CPU time of this process's live child processes (face workers, UWB delivery);"
            " a child that is replaced takes its count with it",
            value=seconds,
        )


def children_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the live children of `pid`, from /proc (None without /proc)."""
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    children: set[str] = set()
    for thread in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            children.update((thread / "children").read_text(encoding="ascii").split())
    seconds = 0.0
    for child in children:
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            seconds += cpu_seconds_of(proc_stat_fields(int(child)))
    return seconds


def proc_stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ..., utime at 11, stime at 12)."""
    # The command name may hold any bytes (a thread or process may name itself); the numbers are ASCII.
    return Path(f"/proc/{pid}/stat").read_bytes().decode("ascii", errors="replace").rsplit(")", 1)[1].split()


def cpu_seconds_of(fields: list[str]) -> float:
    """User + system CPU seconds from a process's stat fields (all its threads)."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SideBySide = tuple["LivenessVerdict", "FaceVerdict | FaceImageError"]

#: The process's metrics: one server per process (serve), shared by the interceptor and the health port.
DEFAULT = RpcMetrics()


class TimedFaceVerifier:
    """A FaceVerifier that times verify(); everything else goes to the wrapped verifier."""

    def __init__(self, inner: FaceVerifier, metrics: RpcMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        """Compare as the wrapped verifier does, timed by outcome (matched, not_matched, image_error)."""
        started = time.perf_counter()
        outcome = "image_error"
        try:
            verdict = self._inner.verify(reference_encoding, captures)
            outcome = "matched" if verdict.matched else "not_matched"
            if verdict.checks_s is not None:
                self._metrics.face_checks_seconds.observe(verdict.checks_s)
            if verdict.descriptors_s is not None:
                self._metrics.face_descriptors_seconds.observe(verdict.descriptors_s)
        except FaceImageError:
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            self._metrics.face_seconds.labels(outcome).observe(time.perf_counter() - started)
        return verdict

    def __getattr__(self, name: str) -> Any:
        """encode_reference, max_image_bytes, close ...: the wrapped verifier's."""
        return getattr(self._inner, name)


class TimedLivenessChecker:
    """A LivenessChecker that times check() by outcome (passed, refused)."""

    def __init__(self, inner: LivenessChecker, metrics: RpcMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def check(self, evidence: LivenessEvidence, faces: Sequence[bytes]) -> LivenessVerdict:
        """Check as the wrapped checker does, timed."""
        started = time.perf_counter()
        outcome = "error"
        try:
            verdict = self._inner.check(evidence, faces)
            outcome = "passed" if verdict.passed else "refused"
        finally:
            self._metrics.liveness_seconds.labels(outcome).observe(time.perf_counter() - started)
        return verdict

    def __getattr__(self, name: str) -> Any:
        """Anything else: the wrapped checker's (check_and_verify timed, where the checker has it)."""
        inner = getattr(self._inner, name)
        if name != "check_and_verify":
            return inner
        return functools.partial(self._timed_check_and_verify, inner)

    def _timed_check_and_verify(
        self,
        inner: Callable[[LivenessEvidence, Sequence[bytes], bytes], _SideBySide],
        evidence: LivenessEvidence,
        faces: Sequence[bytes],
        reference_encoding: bytes,
    ) -> _SideBySide:
        """The check and the comparison side by side (face/pool.py), each recorded as if run alone."""
        started = time.perf_counter()
        outcome = "error"
        try:
            verdict, compared = inner(evidence, faces, reference_encoding)
            outcome = "passed" if verdict.passed else "refused"
        finally:
            took = time.perf_counter() - started
            self._metrics.liveness_seconds.labels(outcome).observe(took)
        if isinstance(compared, FaceImageError):
            self._metrics.face_seconds.labels("image_error").observe(took)
            return verdict, compared
        self._metrics.face_seconds.labels("matched" if compared.matched else "not_matched").observe(took)
        if compared.checks_s is not None:
            self._metrics.face_checks_seconds.observe(compared.checks_s)
        if compared.descriptors_s is not None:
            self._metrics.face_descriptors_seconds.observe(compared.descriptors_s)
        return verdict, compared


def _code_of(context: grpc.ServicerContext, *, failed: bool) -> str:
    """The status code the handler ended with: what it set (abort included), else OK or UNKNOWN."""
    code = context.code()  # type: ignore[attr-defined]  # grpcio has it since 1.38; the stubs lack it
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class RpcMetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Times each call from handler start to its last response, labelled by method and final status code."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the handler's behaviour with the timer (unknown methods pass through untimed)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _timed(handler, str(handler_call_details.method), self._metrics.rpc_seconds)


def _timed(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, seconds: Histogram
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler with its behaviour timed (request and response (de)serialisers kept)."""
    de, ser = handler.request_deserializer, handler.response_serializer

    def observe(context: grpc.ServicerContext, started: float, *, failed: bool) -> None:
        seconds.labels(method, _code_of(context, failed=failed)).observe(time.perf_counter() - started)

    def unary(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                answer = behaviour(request, context)
                failed = False
            finally:
                observe(context, started, failed=failed)
            return answer

        return timed

    def streaming(
        behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started, failed = time.perf_counter(), True
            try:
                yield from behaviour(request, context)
                failed = False
            finally:
                observe(context, started, failed=failed)

        return timed

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary), request_deserializer=de, response_serializer=ser
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            streaming(handler.unary_stream), request_deserializer=de, response_serializer=ser
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            unary(handler.stream_unary), request_deserializer=de, response_serializer=ser
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            streaming(handler.stream_stream), request_deserializer=de, response_serializer=ser
        )
    return handler
