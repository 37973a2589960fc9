"""The gRPC server: `create_server` (tests bind port 0) split from `serve` (signals, graceful stop)."""

from __future__ import annotations

import datetime as dt
import faulthandler
import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from expertcheckin.v1 import (
    diagnostics_pb2,
    diagnostics_pb2_grpc,
    kiosk_pb2,
    kiosk_pb2_grpc,
    organiser_pb2,
    organiser_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from platform_server import bootstrap, rpc_metrics, uwb_process
from platform_server.audit_chainer import AuditChainer
from platform_server.config import check_for_serving, check_kiosk_identity_setting
from platform_server.db.engine import write_gate
from platform_server.errors import ConfigError
from platform_server.grpc_api.kiosk import KioskServicer
from platform_server.grpc_api.limits import RequestLimitsInterceptor, configured
from platform_server.grpc_api.organiser import DiagnosticsServicer, OrganiserServicer
from platform_server.grpc_api.organiser_auth import OrganiserAuthInterceptor
from platform_server.health_http import HealthEndpoint

if TYPE_CHECKING:
    from platform_server.bootstrap import Platform
    from platform_server.config import PlatformConfig, SecuritySection
    from platform_server.uwb_process import UwbWorkerProcess

log = logging.getLogger(__name__)
#: How often the main thread wakes to run a signal's handler that another thread received.
SIGNAL_CHECK_S = 0.25
SERVICE_NAMES = (
    kiosk_pb2.DESCRIPTOR.services_by_name["KioskService"].full_name,
    organiser_pb2.DESCRIPTOR.services_by_name["OrganiserService"].full_name,
    diagnostics_pb2.DESCRIPTOR.services_by_name["DiagnosticsService"].full_name,
)
INSECURE_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!!! DEVELOPMENT SWITCH [security] insecure_kiosks = true: kiosks are served over %s and the\n"
    "!!! kiosk_id of each request is TRUSTED WITHOUT A CERTIFICATE. Anyone who reaches this port can act\n"
    "!!! as any kiosk. Never like this with real experts; production mode refuses it.\n" + "!" * 78
)
CERTIFICATE_WARNING = dt.timedelta(days=30)  # log a warning at start-up when the server certificate ends sooner


def _read_pem(option: str, path: str) -> bytes:
    """The bytes of one TLS file, or a ConfigError naming the option and the file."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"Option '{option}' in section 'security': cannot read {path}: {err.strerror}") from err


def _check_tls_files(cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None, sec: SecuritySection) -> None:
    """Parse the TLS files and check the key belongs to the certificate, so a mistake fails at start-up.

    gRPC itself would accept the files and fail every handshake later with a message no one connects
    to the configuration.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as err:
        raise ConfigError(f"Option 'tls_cert' in section 'security': {sec.tls_cert} holds no PEM certificate") from err
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"Option 'tls_key' in section 'security': {sec.tls_key} is not an unencrypted PEM private key"
        ) from err
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != chain[0].public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise ConfigError(f"Option 'tls_key' in section 'security': {sec.tls_key} is not the key of {sec.tls_cert}")
    now = dt.datetime.now(dt.UTC)
    ends = chain[0].not_valid_after_utc
    if ends < now:
        raise ConfigError(f"Option 'tls_cert' in section 'security': {sec.tls_cert} expired on {ends:%Y-%m-%d}")
    if ends < now + CERTIFICATE_WARNING:
        log.warning("server certificate %s expires on %s", sec.tls_cert, f"{ends:%Y-%m-%d}")
    if ca_pem is not None:
        try:
            x509.load_pem_x509_certificates(ca_pem)
        except ValueError as err:
            raise ConfigError(
                f"Option 'client_ca' in section 'security': {sec.client_ca} holds no PEM certificate"
            ) from err


def server_credentials(config: PlatformConfig) -> grpc.ServerCredentials | None:
    """TLS server credentials (client certificates required when client_ca is set), or None for plaintext.

    Raises:
        ConfigError: an incomplete TLS setting (a key without a certificate, a client CA without TLS),
            an unreadable file, or a key that does not belong to the certificate.

    """
    sec = config.security
    if not sec.tls_cert and not sec.tls_key:
        if sec.client_ca:
            # Without TLS there is no client certificate to check: every kiosk call would be refused,
            # or worse, a later change would silently serve kiosks unauthenticated.
            raise ConfigError("Option 'client_ca' in section 'security' needs tls_cert and tls_key as well")
        return None
    if not (sec.tls_cert and sec.tls_key):
        raise ConfigError("Options 'tls_cert' and 'tls_key' in section 'security' must be set together")
    cert = _read_pem("tls_cert", sec.tls_cert)
    key = _read_pem("tls_key", sec.tls_key)
    ca = _read_pem("client_ca", sec.client_ca) if sec.client_ca else None
    _check_tls_files(cert, key, ca, sec)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def create_server(
    config: PlatformConfig,
    platform: Platform | None = None,
    *,
    listen: str | None = None,
    metrics: rpc_metrics.RpcMetrics | None = None,
) -> tuple[grpc.Server, int]:
    """Build and start a server for the platform (built from config unless given); return it and its port.

    Calls, face checks and liveness checks are timed into `metrics` (the process's by default).
    """
    credentials = server_credentials(config)  # first: a TLS mistake fails before the database is touched
    check_kiosk_identity_setting(config)
    if not config.security.client_ca:
        log.warning(INSECURE_BANNER, "plaintext" if credentials is None else "TLS without client certificates")
    if platform is None:
        platform = bootstrap.build(config)
    max_bytes = config.server.max_message_bytes
    metrics = metrics or rpc_metrics.DEFAULT
    metrics.watch_write_gate(write_gate(platform.engine))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.server.max_workers, thread_name_prefix="rpc"),
        # Limits first: a malformed request is refused before anything is written, the audit of an
        # organiser's read included; the limits are public (docs/platform-limits.md), so checking them
        # before authentication tells a caller nothing.
        interceptors=[
            rpc_metrics.RpcMetricsInterceptor(metrics),  # outermost: refused calls are timed too
            RequestLimitsInterceptor(configured(config)),
            OrganiserAuthInterceptor(platform.new_uow, platform.ctx.clock),
        ],
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            # gRPC sets SO_REUSEPORT by default: a second server on a port already served would then
            # start "fine" and the kernel would split the kiosks' connections between the two. Off, it
            # fails to start with "cannot listen on ..." instead.
            ("grpc.so_reuseport", 0),
        ],
    )
    kiosk_pb2_grpc.add_KioskServiceServicer_to_server(
        KioskServicer(
            platform.new_uow, metrics.instrument(platform.ctx), require_certificate=bool(config.security.client_ca)
        ),
        server,
    )
    organiser_pb2_grpc.add_OrganiserServiceServicer_to_server(
        OrganiserServicer(platform.new_uow, platform.ctx, platform.stopping), server
    )
    diagnostics_pb2_grpc.add_DiagnosticsServiceServicer_to_server(DiagnosticsServicer(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = listen or config.server.listen
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:
        raise ConfigError(f"cannot listen on {address}: {err}") from err
    server.start()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.health_servicer = health_servicer  # type: ignore[attr-defined]
    return server, port


def _health_endpoint(listen: str) -> HealthEndpoint | None:
    """The HTTP health endpoint for load balancers, or None when [server] health_listen is empty."""
    if not listen:
        return None
    try:
        return HealthEndpoint(
            listen, serving=False, metrics=rpc_metrics.DEFAULT.render
        )  # 503 until the gRPC server takes calls
    except (OSError, ValueError) as err:
        raise ConfigError(f"Option 'health_listen' in section 'server': cannot listen on {listen}: {err}") from err


def _transport_words(config: PlatformConfig) -> str:
    """How kiosks reach this server, for the start-up line (the development switch said loudly)."""
    if config.security.client_ca:
        return "TLS, kiosk client certificates required"
    transport = "TLS without client certificates" if config.security.tls_cert else "plaintext"
    return transport + ", INSECURE development switch: kiosk ids are not checked"


def _build_serving(config: PlatformConfig) -> Platform:
    """The platform for serving: face workers, the UWB process, on PostgreSQL the audit chainer.

    The UWB delivery process (platform_server/uwb_process.py) runs when [uwb] port is set. It starts
    first: it imports while this process migrates, and opens the database once told to, so after a
    crash it is ready about when calls are. The audit chainer (platform_server/audit_chainer.py) places
    the audit entries that writers sealed.
    """
    uwb: UwbWorkerProcess | None = None
    if config.uwb.port:
        uwb = uwb_process.UwbWorkerProcess(config).start()
    try:
        platform = bootstrap.build(config, face_workers=True, start_uwb_worker=False)
    except BaseException:
        if uwb is not None:
            uwb.stop()
        raise
    if uwb is not None:
        platform.uwb_worker = uwb.go()
    if platform.engine.dialect.name == "postgresql":  # where writers seal their audit entries
        platform.audit_chainer = AuditChainer(platform.engine).start()
    return platform


def serve(config: PlatformConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully: NOT_SERVING, finish calls in flight, close."""
    check_for_serving(config)
    if config.security.organiser_token:
        log.warning(
            "[security] organiser_token is no longer used: organisers call with their own token "
            "(platform-server accounts add / token); remove it from the configuration"
        )
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping gracefully (grace %.0f s)", signum, config.server.grace_s)
        stop_requested.set()

    # Installed before anything starts: a supervisor may send SIGTERM as soon as it sees the process,
    # and the default action would kill it without the graceful stop.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>`: every thread's stack to stderr (the log), to see what a stuck stop waits for.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server_credentials(config)  # a TLS mistake is reported before the database is migrated
    health_http = _health_endpoint(config.server.health_listen)
    platform = _build_serving(config)
    try:
        server, port = create_server(config, platform)
    except BaseException:
        platform.close()  # the UWB worker thread would otherwise keep a failed process alive
        if health_http is not None:
            health_http.close()
        raise
    if health_http is not None:
        health_http.serving()
    host = config.server.listen.rpartition(":")[0]
    log.info("platform serving on %s:%d (%s), database %s", host, port, _transport_words(config), platform.engine.url)
    # In slices: Python runs a signal's handler only in the main thread, and only once that thread
    # wakes. The kernel may hand SIGTERM to any thread (gRPC's among them); a main thread blocked in
    # one endless wait would then never see it, and the supervisor's SIGKILL would cut calls off.
    while not stop_requested.wait(SIGNAL_CHECK_S):
        pass
    server.health_servicer.enter_graceful_shutdown()  # type: ignore[attr-defined]
    if health_http is not None:
        health_http.draining()
    if config.server.drain_s:
        # Still serving every call that arrives while the balancer notices the health change.
        log.info("draining: health NOT_SERVING, still serving for %.1f s", config.server.drain_s)
        time.sleep(config.server.drain_s)
    platform.stopping.set()  # ends event streams so they do not hold the grace period
    server.stop(config.server.grace_s).wait()
    if health_http is not None:
        health_http.close()
    platform.close()
    log.info("platform stopped")
