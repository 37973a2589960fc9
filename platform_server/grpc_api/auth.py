"""Caller authentication: organiser bearer token (interceptor) and kiosk identity from the client cert."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import grpc

from platform_server.errors import PermissionDeniedError
from platform_server.services.kiosk_access import certificate_sha256

if TYPE_CHECKING:
    from collections.abc import Callable

ORGANISER_SERVICE = "/expertcheckin.v1.OrganiserService/"


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    def abort(_request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class OrganiserTokenInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Refuses OrganiserService calls without `authorization: Bearer <token>` matching the config."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._configured = bool(token)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Check the metadata of organiser calls; pass every other call through."""
        if not handler_call_details.method.startswith(ORGANISER_SERVICE):
            return continuation(handler_call_details)
        if not self._configured:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "organiser access is disabled: no organiser_token configured")
        metadata = dict(handler_call_details.invocation_metadata or ())
        supplied = str(metadata.get("authorization", "")).encode()
        if not hmac.compare_digest(supplied, self._expected):
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "organiser calls need `authorization: Bearer <token>`")
        return continuation(handler_call_details)


def check_kiosk_identity(context: grpc.ServicerContext, kiosk_id: str, *, require_certificate: bool) -> None:
    """With client certificates on, the kiosk_id in a request must be the certificate's CN."""
    if not require_certificate:
        return
    auth = context.auth_context()
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in auth.get("x509_common_name", [])]
    if kiosk_id not in names:
        raise PermissionDeniedError(f"kiosk_id {kiosk_id!r} does not match the client certificate")


def client_certificate_sha256(context: grpc.ServicerContext) -> str | None:
    """SHA-256 (hex) of the DER client certificate the TLS handshake verified, or None without one."""
    pems: Any = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    pem = pems[0] if isinstance(pems[0], bytes) else str(pems[0]).encode()
    return certificate_sha256(pem)
