"""The one place domain errors become gRPC status codes (decorator on every servicer method)."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from platform_server import errors
from platform_server.db.unit_of_work import as_transient

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
F = TypeVar("F", bound="Callable[..., Any]")

_CODES: list[tuple[type[errors.PlatformError], grpc.StatusCode]] = [
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.KioskCertificateError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.KioskDisabledError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.KioskRemovedError, grpc.StatusCode.NOT_FOUND),
    (errors.KioskThrottledError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ImportRefusedError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.TransientError, grpc.StatusCode.UNAVAILABLE),
    (errors.OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
]
# Trailing metadata of a RESOURCE_EXHAUSTED answer: how long the caller should wait before retrying.
RETRY_AFTER_KEY = "retry-after-ms"


def status_for(err: errors.PlatformError) -> grpc.StatusCode:
    """The status code for a domain error (INTERNAL for anything unexpected)."""
    for cls, code in _CODES:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def maps_errors(method: F) -> F:
    """Abort with the mapped status on a PlatformError; INTERNAL (logged, no details) on anything else.

    A database error that a later call gets past (a lock held past every bound, a lost connection)
    is UNAVAILABLE with "try again", as the transaction loops answer it (db.unit_of_work.as_transient).
    """

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except errors.PlatformError as err:
            if isinstance(err, errors.OverloadedError):
                context.set_trailing_metadata(((RETRY_AFTER_KEY, str(int(err.retry_after_s * 1000))),))
            context.abort(status_for(err), str(err))
        except Exception as err:
            if not context.is_active():
                raise  # the client went away or abort() was already called
            transient = as_transient(err)
            if transient is not None:  # busy or away past the path's own bound: "try again", not INTERNAL
                log.warning("%s: %s (%s)", method.__name__, transient, type(err).__name__)
                context.abort(status_for(transient), str(transient))
            log.exception("unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error; see the platform log")

    return wrapper  # type: ignore[return-value]
