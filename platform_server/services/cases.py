"""Needs-staff cases: what a person must look at, open until someone resolves it with a reason.

Cases come from the platform itself (a handed-out band whose check-in cannot be honoured, a band of
unknown fate, a kiosk refusing ID after ID, a UWB write given up) and from kiosk staff signals
(ReportKioskEvent). Opening one appends a NEEDS_STAFF event to the batch's organiser stream and an
audit row, in the caller's transaction; a `dedupe_key` makes a retried signal land on the same case.
The CLI (`platform-server cases`) and, later, the web console read them through this module only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, Expert, Invitation, Kiosk, NeedsStaffCase
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.log_masking import mask_sensitive
from platform_server.services import audit, events, public_ids

if TYPE_CHECKING:
    import datetime as dt

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_RESOLUTION_CHARS = 1000
MAX_LIST = 1000


class CaseKind(StrEnum):
    """What kind of thing needs a person."""

    QUEUED_CHECK_IN_REFUSED = "queued_check_in_refused"  # a band left the arm; its check-in cannot be made
    DISPENSE_OUTCOME_UNKNOWN = "dispense_outcome_unknown"  # the kiosk died mid-dispense: has the expert the band?
    ANNUL_REFUSED = "annul_refused"  # a band that never left the kiosk, but its check-in could not be undone
    KIOSK_REFUSAL_STREAK = "kiosk_refusal_streak"  # many refusals in a row at one kiosk: someone probing?
    UWB_DELIVERY_FAILED = "uwb_delivery_failed"  # the room never reached the band
    KIOSK_SIGNAL = "kiosk_signal"  # any other kiosk event the kiosk flagged `needs_staff`


class CaseState(StrEnum):
    """Open until resolved."""

    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case with everything staff need: who, which kiosk, which band, why, when, and how it ended."""

    case_id: str
    kind: str
    state: CaseState
    batch_code: str | None
    kiosk_id: str
    id_number_masked: str | None
    expert_name: str | None
    check_in_id: str | None
    band_uid: str
    reason: str
    detail: str
    created_at: dt.datetime
    created_by: str
    resolved_at: dt.datetime | None
    resolved_by: str | None
    resolution: str | None


def open_case(
    u: UnitOfWork,
    ctx: ServiceContext,
    *,
    kind: CaseKind,
    at: dt.datetime,
    created_by: str,
    kiosk_id: str = "",
    batch_id: int | None = None,
    invitation_id: int | None = None,
    check_in_pk: int | None = None,
    band_uid: str = "",
    reason: str = "",
    detail: dict[str, Any] | str = "",
    dedupe_key: str | None = None,
) -> str:
    """Open a case in the caller's transaction (or find the one `dedupe_key` already opened); its public id.

    Appends the NEEDS_STAFF event last (it takes the event-order lock on PostgreSQL until commit).
    """
    if dedupe_key is not None:
        existing = u.execute(
            sa.select(NeedsStaffCase.public_id).where(NeedsStaffCase.dedupe_key == dedupe_key[:160])
        ).scalar_one_or_none()
        if existing is not None:
            return str(existing)
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
    public_id = public_ids.new_public_id("case_")
    case_pk = u.execute(
        sa.insert(NeedsStaffCase)
        .values(
            public_id=public_id,
            kind=kind.value,
            state=CaseState.OPEN.value,
            batch_id=batch_id,
            kiosk_id=kiosk_id[:64],
            invitation_id=invitation_id,
            check_in_id=check_in_pk,
            band_uid=band_uid[:20],
            reason=reason[:40],
            detail=mask_sensitive(text)[: audit.MAX_DETAIL_CHARS],
            dedupe_key=dedupe_key[:160] if dedupe_key else None,
            created_at=at,
            created_by=created_by[:64],
        )
        .returning(NeedsStaffCase.id)
    ).scalar_one()
    batch_code = u.execute(sa.select(Batch.code).where(Batch.id == batch_id)).scalar() if batch_id else None
    audit.record(
        u,
        at=at,
        actor=created_by,
        action="needs_staff_open",
        outcome=kind.value,
        batch_code=batch_code,
        detail={"case": public_id, "kiosk": kiosk_id, "band_uid": band_uid, "reason": reason},
    )
    if batch_id is not None:
        events.append(
            u,
            ctx,
            batch_id=batch_id,
            kind=events.EventKind.NEEDS_STAFF,
            at=at,
            kiosk_id=kiosk_id,
            check_in_pk=check_in_pk,
            refusal_reason=None,
            needs_staff_case_pk=int(case_pk),
        )
    return public_id


def select_cases() -> Any:
    """The case joined to its batch code, the expert (masked) and the check-in's public id."""
    return (
        sa.select(NeedsStaffCase, Batch.code, Expert.id_masked, Expert.name, CheckIn.public_id)
        .outerjoin(Batch, Batch.id == NeedsStaffCase.batch_id)
        .outerjoin(Invitation, Invitation.id == NeedsStaffCase.invitation_id)
        .outerjoin(Expert, Expert.id == Invitation.expert_id)
        .outerjoin(CheckIn, CheckIn.id == NeedsStaffCase.check_in_id)
    )


def view_of_row(row: Any) -> CaseView:
    """A row of select_cases() as a view."""
    case: NeedsStaffCase = row[0]
    return CaseView(
        case_id=case.public_id,
        kind=case.kind,
        state=CaseState(case.state),
        batch_code=row[1],
        kiosk_id=case.kiosk_id,
        id_number_masked=row[2],
        expert_name=row[3],
        check_in_id=row[4],
        band_uid=case.band_uid,
        reason=case.reason,
        detail=case.detail,
        created_at=case.created_at,
        created_by=case.created_by,
        resolved_at=case.resolved_at,
        resolved_by=case.resolved_by,
        resolution=case.resolution,
    )


def list_cases(
    uow: UnitOfWork,
    *,
    state: CaseState | None = CaseState.OPEN,
    batch_code: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[CaseView]:
    """Cases oldest first, open ones by default; filtered by batch and kind."""
    query = select_cases().order_by(NeedsStaffCase.id).limit(max(1, min(limit, MAX_LIST)))
    if state is not None:
        query = query.where(NeedsStaffCase.state == state.value)
    if kind:
        query = query.where(NeedsStaffCase.kind == kind)
    with uow:
        if batch_code:
            query = query.where(NeedsStaffCase.batch_id == events.batch_id_of(uow, batch_code))
        return [view_of_row(row) for row in uow.execute(query).all()]


def get_case(uow: UnitOfWork, case_id: str) -> CaseView:
    """One case by its public id, or NotFoundError."""
    with uow:
        row = uow.execute(select_cases().where(NeedsStaffCase.public_id == case_id)).first()
        if row is None:
            raise NotFoundError(f"工单 {case_id} 不存在 / case {case_id} does not exist")
        return view_of_row(row)


def resolve_case(uow: UnitOfWork, ctx: ServiceContext, case_id: str, *, reason: str, actor: str) -> CaseView:
    """Close a case with the reason staff give; audited. A kiosk-streak case also lifts the kiosk's throttle.

    The check-in a case names loses its needs-staff flag once no open case names it any more.
    """
    text = reason.strip()
    if not text:
        raise InvalidRequestError("a resolution needs a reason (--reason): what was done, by whom")
    if len(text) > MAX_RESOLUTION_CHARS:
        raise InvalidRequestError(f"the reason may hold at most {MAX_RESOLUTION_CHARS} characters")

    def work(u: UnitOfWork) -> None:
        now = ctx.clock()
        case = u.execute(sa.select(NeedsStaffCase).where(NeedsStaffCase.public_id == case_id)).scalar_one_or_none()
        if case is None:
            raise NotFoundError(f"工单 {case_id} 不存在 / case {case_id} does not exist")
        if case.state != CaseState.OPEN.value:
            raise InvalidRequestError(
                f"case {case_id} was already resolved by {case.resolved_by} at {case.resolved_at:%Y-%m-%d %H:%M} UTC"
            )
        changed = u.execute(
            sa.update(NeedsStaffCase)
            .where(NeedsStaffCase.id == case.id, NeedsStaffCase.state == CaseState.OPEN.value)
            .values(state=CaseState.RESOLVED.value, resolved_at=now, resolved_by=actor[:64], resolution=text)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidRequestError(f"case {case_id} was resolved by someone else just now")
        if case.kind == CaseKind.KIOSK_REFUSAL_STREAK.value and case.kiosk_id:
            u.execute(
                sa.update(Kiosk)
                .where(Kiosk.kiosk_id == case.kiosk_id)
                .values(refusal_streak=0, throttled_until=None)
                .execution_options(synchronize_session=False)
            )
        if case.check_in_id is not None:
            still_open = u.execute(
                sa.select(sa.func.count()).where(
                    NeedsStaffCase.check_in_id == case.check_in_id, NeedsStaffCase.state == CaseState.OPEN.value
                )
            ).scalar_one()
            if not still_open:
                u.execute(
                    sa.update(CheckIn)
                    .where(CheckIn.id == case.check_in_id)
                    .values(needs_staff=False)
                    .execution_options(synchronize_session=False)
                )
        batch_code = (
            u.execute(sa.select(Batch.code).where(Batch.id == case.batch_id)).scalar() if case.batch_id else None
        )
        audit.record(
            u,
            at=now,
            actor=actor,
            action="needs_staff_resolve",
            outcome=case.kind,
            batch_code=batch_code,
            detail={"case": case_id, "reason": text},
        )
        u.commit()

    run_transaction(uow, work)
    return get_case(uow, case_id)


def open_case_now(uow: UnitOfWork, ctx: ServiceContext, **fields: Any) -> str:
    """open_case() in a transaction of its own (for callers outside one)."""

    def work(u: UnitOfWork) -> str:
        public_id = open_case(u, ctx, at=ctx.clock(), **fields)
        u.commit()
        return public_id

    return run_transaction(uow, work)


def dedupe(kind: CaseKind | str, kiosk_id: str, key: str) -> str:
    """The dedupe key of a case about one kiosk request (the same on the platform's and the kiosk's path)."""
    return f"{kind}:{kiosk_id}:{key}"
