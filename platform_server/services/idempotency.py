"""Idempotency records: the first answer to (kiosk, request id), replayed to retries of the same call."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa

from personal_data.crypto import decrypt_text, encrypt_text, lookup_hash
from platform_server.db.models import KioskRequest
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import InvalidRequestError, PlatformError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from personal_data.crypto import DataKey
    from platform_server.db.unit_of_work import SqlTransaction, UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_REQUEST_ID_CHARS = 64
# The caller key of organiser calls in the requests table: '@' is not allowed in a kiosk id
# (services.kiosks.KIOSK_ID), so an organiser's request ids can never collide with a kiosk's.
ORGANISER_CALLER: Final = "@organiser"
T = TypeVar("T")

# Prebuilt text statements: on the identify hot path, building and cache-keying ORM statements per
# call costs more than the database work itself.
_SELECT_ANSWER = sa.text(
    "SELECT method, payload_hash, response_encrypted FROM requests "
    "WHERE kiosk_id = :kiosk_id AND request_id = :request_id"
)
_INSERT_ANSWER = sa.text(
    "INSERT INTO requests (kiosk_id, request_id, method, payload_hash, response_encrypted, created_at) "
    "VALUES (:kiosk_id, :request_id, :method, :payload_hash, :response_encrypted, :created_at)"
).bindparams(
    sa.bindparam("created_at", type_=KioskRequest.__table__.c.created_at.type),
    sa.bindparam("response_encrypted", type_=sa.LargeBinary()),
)


def payload_hash(*parts: object) -> str:
    """Digest of a call's content (never hash personal numbers here: pass their keyed hashes)."""
    return hashlib.sha256(json.dumps(parts, default=str, ensure_ascii=False).encode("utf-8")).hexdigest()


def keyed_payload_hash(key: DataKey, *parts: object) -> str:
    """Digest of a call's content keyed with the data key: for calls whose free text may hold personal data.

    An unkeyed digest of a short text around an ID number could be reversed by trying every number.
    """
    return lookup_hash(key, payload_hash(*parts))


def check_request_id(request_id: str) -> None:
    """Refuse empty or oversized request ids (a kiosk bug: every call needs its own id)."""
    if not request_id or len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequestError(f"request_id must be 1 to {MAX_REQUEST_ID_CHARS} characters")


def stored_answer(  # noqa: PLR0917
    uow: UnitOfWork, key: DataKey, kiosk_id: str, request_id: str, method: str, content: str
) -> dict[str, Any] | None:
    """The stored answer for a retried call, or None for a new one; refuse a reused id with new content."""
    row = uow.execute(_SELECT_ANSWER, {"kiosk_id": kiosk_id, "request_id": request_id}).first()
    if row is None:
        return None
    if row[0] != method or row[1] != content:
        raise InvalidRequestError(
            f"request_id {request_id} was already used for a different {row[0]} call; use a new id per call"
        )
    answer: dict[str, Any] = json.loads(decrypt_text(key, row[2], associated=f"{kiosk_id}/{request_id}"))
    return answer


def store_answer(
    uow: UnitOfWork,
    key: DataKey,
    *,
    kiosk_id: str,
    request_id: str,
    method: str,
    content: str,
    answer: dict[str, Any],
    at: dt.datetime,
) -> None:
    """Store the answer in the call's own transaction (encrypted: it holds names and rooms)."""
    uow.execute(_INSERT_ANSWER, _answer_row(key, kiosk_id, request_id, method, content, answer, at))


def store_answer_sql(
    d: SqlTransaction,
    key: DataKey,
    *,
    kiosk_id: str,
    request_id: str,
    method: str,
    content: str,
    answer: dict[str, Any],
    at: dt.datetime,
) -> None:
    """store_answer() in a Session-free transaction (the kiosk's hot paths)."""
    row = _answer_row(key, kiosk_id, request_id, method, content, answer, at)
    d.execute(_INSERT_ANSWER.text, {**row, "created_at": d.timestamp(at)})


def _answer_row(  # noqa: PLR0917  (the stored answer's columns)
    key: DataKey,
    kiosk_id: str,
    request_id: str,
    method: str,
    content: str,
    answer: dict[str, Any],
    at: dt.datetime,
) -> dict[str, Any]:
    """The stored answer's row: the answer encrypted, bound to its kiosk and request."""
    blob = encrypt_text(key, json.dumps(answer, ensure_ascii=False), associated=f"{kiosk_id}/{request_id}")
    return {
        "kiosk_id": kiosk_id,
        "request_id": request_id,
        "method": method,
        "payload_hash": content,
        "response_encrypted": blob,
        "created_at": at,
    }


@dataclass(frozen=True, slots=True)
class Call:
    """One state-changing call as the idempotency record knows it."""

    caller: str  # the kiosk id, or ORGANISER_CALLER
    request_id: str
    method: str  # at most 32 characters (the column)
    content: str  # payload_hash / keyed_payload_hash of what the call asks for


def run_once(
    uow: UnitOfWork,
    ctx: ServiceContext,
    call: Call,
    work: Callable[[UnitOfWork], T],
    *,
    encode: Callable[[T], dict[str, Any]],
    decode: Callable[[dict[str, Any]], T],
    keep: Callable[[T], bool] = lambda _answer: True,
) -> T:
    """Run `work` once per (caller, request id); a retry gets the first answer back and changes nothing.

    `work` writes inside the transaction and does not commit; its effect, the idempotency record and
    the commit are one transaction, so an answer is stored exactly when the effect happened. Two
    copies of one request racing each other: the loser's insert of the record (or of the effect)
    violates a unique key, run_transaction reruns it, and the rerun finds the winner's answer; or the
    loser sees the winner's effect as an error (ALREADY_EXISTS), and then gets the winner's answer.
    `keep(answer)` False leaves no record (an answer with no effect, e.g. an unknown kiosk), so a
    later retry is decided afresh. Errors raised by `work` roll everything back and store nothing.
    """
    check_request_id(call.request_id)

    def attempt(u: UnitOfWork) -> T:
        stored = stored_answer(u, ctx.data_key, call.caller, call.request_id, call.method, call.content)
        if stored is not None:
            return decode(stored)
        answer = work(u)
        if keep(answer):
            store_answer(
                u,
                ctx.data_key,
                kiosk_id=call.caller,
                request_id=call.request_id,
                method=call.method,
                content=call.content,
                answer=encode(answer),
                at=ctx.clock(),
            )
        u.commit()
        return answer

    try:
        return run_transaction(uow, attempt)
    except PlatformError:
        # Under READ COMMITTED (PostgreSQL) each statement sees the newest commits: a copy of this
        # request can commit between our read of the requests table and our read of the data, and its
        # effect (the batch now exists) becomes our error. The copy stored its answer in the same
        # commit, and that answer is ours; an error with no stored answer is a real one.
        stored = run_transaction(
            uow,
            lambda u: stored_answer(u, ctx.data_key, call.caller, call.request_id, call.method, call.content),
        )
        if stored is None:
            raise
        return decode(stored)
