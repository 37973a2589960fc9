"""The append-only audit log: one row per step and failure, personal numbers only masked or hashed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from platform_server.log_masking import mask_sensitive
from platform_server.services import audit_chain

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from platform_server.db.unit_of_work import SqlTransaction, UnitOfWork

MAX_DETAIL_CHARS = 2000
_cli_actor = "cli"


def use_cli_actor(name: str) -> None:
    """Name the CLI's direct-mode user (OS account and host) wherever a service records actor "cli"."""
    global _cli_actor  # noqa: PLW0603  (one CLI process, one user)
    _cli_actor = name


def record(
    uow: UnitOfWork,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    outcome: str,
    batch_code: str | None = None,
    id_hash: str | None = None,
    id_masked: str | None = None,
    check_in_public_id: str | None = None,
    detail: dict[str, object] | str = "",
    kiosk_time: dt.datetime | None = None,
) -> None:
    """Append one chained audit row in the caller's transaction (so it commits or rolls back with the step)."""
    audit_chain.append_uow(
        uow,
        entry(
            at=at,
            actor=actor,
            action=action,
            outcome=outcome,
            batch_code=batch_code,
            id_hash=id_hash,
            id_masked=id_masked,
            check_in_public_id=check_in_public_id,
            detail=detail,
            kiosk_time=kiosk_time,
        ),
    )


def record_many(uow: UnitOfWork, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append several entries (each built by entry()) in the caller's transaction, in their order."""
    audit_chain.append_many_uow(uow, entries)


def record_sql(
    d: SqlTransaction,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    outcome: str,
    batch_code: str | None = None,
    id_hash: str | None = None,
    id_masked: str | None = None,
    check_in_public_id: str | None = None,
    detail: dict[str, object] | str = "",
) -> None:
    """record() in a Session-free transaction (the kiosk's hot paths): the same row, chained the same way."""
    values = entry(
        at=at,
        actor=actor,
        action=action,
        outcome=outcome,
        batch_code=batch_code,
        id_hash=id_hash,
        id_masked=id_masked,
        check_in_public_id=check_in_public_id,
        detail=detail,
    )
    bound = {**values, "occurred_at": d.timestamp(at)}
    audit_chain.append(d.execute, audit_chain.key_for(d.engine), values, bound, postgres=d.postgres)


def entry(
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    outcome: str,
    batch_code: str | None = None,
    id_hash: str | None = None,
    id_masked: str | None = None,
    check_in_public_id: str | None = None,
    detail: dict[str, object] | str = "",
    kiosk_time: dt.datetime | None = None,
) -> dict[str, Any]:
    """The column values of one audit row (before its place in the chain), masked and cut to size."""
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
    # Free text from kiosks and staff passes the same masking as the logs, in case a number slipped in.
    text = mask_sensitive(text)[:MAX_DETAIL_CHARS]
    return {
        "occurred_at": at,
        "kiosk_time": kiosk_time,
        "actor": (_cli_actor if actor == "cli" else actor)[:64],
        "action": action[:40],
        "outcome": outcome[:40],
        "batch_code": batch_code,
        "id_hash": id_hash,
        "id_masked": id_masked,
        "check_in_public_id": check_in_public_id,
        "detail": text,
    }
