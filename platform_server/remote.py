"""The CLI's remote mode: organiser commands over the OrganiserService with a person's token.

`--platform HOST:PORT` (or PLATFORM_URL) selects it; the token comes from PLATFORM_TOKEN (or
`--token-file`). TLS when a CA file is given (`--platform-ca` / PLATFORM_CA), with a client certificate
too when the platform requires one (PLATFORM_CLIENT_CERT, PLATFORM_CLIENT_KEY).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import grpc
from expertcheckin.v1 import organiser_pb2_grpc

from platform_server.errors import ConfigError, InvalidRequestError, NotFoundError, PermissionDeniedError, PlatformError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CALL_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Where the platform is and who is calling."""

    address: str
    token: str
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


class Remote:
    """An OrganiserService stub with the person's token on every call; errors as the CLI's own."""

    def __init__(self, settings: RemoteSettings) -> None:
        if not settings.token:
            raise ConfigError("remote mode needs your organiser token: set PLATFORM_TOKEN or give --token-file")
        if settings.ca is not None:
            chain = key = None
            if settings.client_cert and settings.client_key:
                chain, key = settings.client_cert.read_bytes(), settings.client_key.read_bytes()
            credentials = grpc.ssl_channel_credentials(settings.ca.read_bytes(), key, chain)
            self._channel = grpc.secure_channel(settings.address, credentials)
        else:
            self._channel = grpc.insecure_channel(settings.address)
        self.stub = organiser_pb2_grpc.OrganiserServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {settings.token}"),)

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        """One unary call; gRPC statuses become the CLI's errors (and so its exit codes)."""
        try:
            return method(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            raise _error(err) from None

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def _error(err: grpc.RpcError) -> PlatformError:
    code, details = err.code(), err.details() or ""
    if code in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}:
        return PermissionDeniedError(f"{code.name}: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequestError(details)
    return PlatformError(f"platform answered {code.name}: {details}")
