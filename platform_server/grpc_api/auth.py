"""Kiosk identity from the client certificate (organisers: grpc_api.organiser_auth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platform_server.errors import PermissionDeniedError
from platform_server.services.kiosk_access import certificate_sha256

if TYPE_CHECKING:
    import grpc


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
