"""Organiser calls: who is calling (a person's token) and whether their role allows the RPC.

The interceptor wraps each OrganiserService handler so the check runs in the RPC's worker thread:
the token must name an enabled person (else UNAUTHENTICATED), the person's role must hold the
permission services.accounts.RPC_PERMISSIONS names for the RPC (else PERMISSION_DENIED, audited with
the person). The servicer reads the person with `current_person()` and names them in the audit.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from platform_server.db.unit_of_work import as_transient, run_transaction
from platform_server.errors import PermissionDeniedError
from platform_server.services import accounts, audit
from platform_server.services.accounts import Person, UnauthenticatedError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from platform_server.db.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")
ORGANISER_SERVICE = "/expertcheckin.v1.OrganiserService/"
BEARER = "Bearer "
_PERSON: contextvars.ContextVar[Person | None] = contextvars.ContextVar("organiser_person", default=None)


def current_person() -> Person:
    """The person the running organiser RPC was authenticated as."""
    person = _PERSON.get()
    if person is None:
        raise PermissionDeniedError("no organiser person for this call")
    return person


class OrganiserAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Authenticates OrganiserService calls by person and authorises them by role."""

    def __init__(self, new_uow: Callable[[], UnitOfWork], clock: Callable[[], dt.datetime]) -> None:
        self._new_uow = new_uow
        self._clock = clock

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap organiser handlers with the check; pass every other call through."""
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or not method.startswith(ORGANISER_SERVICE):
            return handler
        rpc = method.removeprefix(ORGANISER_SERVICE)
        metadata = dict(handler_call_details.invocation_metadata or ())
        supplied = str(metadata.get("authorization", ""))

        def guarded(
            behaviour: Callable[[Any, grpc.ServicerContext], Any],
        ) -> Callable[[Any, grpc.ServicerContext], Any]:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                person = self._authorise(rpc, supplied, context)
                reset = _PERSON.set(person)
                try:
                    return behaviour(request, context)
                finally:
                    _PERSON.reset(reset)

            return run

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                guarded(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                guarded(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler  # no streaming-request organiser RPCs exist

    def _authorise(self, rpc: str, supplied: str, context: grpc.ServicerContext) -> Person:
        now = self._clock()
        if not supplied.startswith(BEARER):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "organiser calls need `authorization: Bearer <your token>`")
        try:
            person = _database_step(
                context, lambda: accounts.authenticate_token(self._new_uow(), supplied.removeprefix(BEARER), at=now)
            )
        except UnauthenticatedError as err:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"{err}; organiser calls need `authorization: Bearer <your token>`"
            )
        permission = accounts.RPC_PERMISSIONS.get(rpc)
        try:
            _database_step(context, lambda: accounts.require(self._new_uow(), person, permission, what=rpc, at=now))
        except PermissionDeniedError as err:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        if rpc in accounts.RPCS_READING_PERSONAL_DATA:

            def record_read(u: UnitOfWork) -> None:
                audit.record(u, at=now, actor=person.actor, action="organiser_read", outcome=rpc[:40])
                u.commit()

            # The read is audited before it happens: no audit entry, no read.
            _database_step(context, lambda: run_transaction(self._new_uow(), record_read))
        return person


def _database_step(context: grpc.ServicerContext, step: Callable[[], T]) -> T:
    """One database step of the check; the database busy or away past its bound is UNAVAILABLE "try again".

    The interceptor runs outside the servicers' maps_errors: without this, a lock error would reach
    the caller as UNKNOWN with the SQL in its details.
    """
    try:
        return step()
    except Exception as err:
        transient = as_transient(err)
        if transient is None:
            raise
        log.warning("organiser call check: %s (%s)", transient, type(err).__name__)
        context.abort(grpc.StatusCode.UNAVAILABLE, str(transient))
