"""What staff do about a needs-staff case from the console: each action ends the case with its reason.

A case names an invitation and often a check-in, never a full ID number, so the actions here work from
the case: annul its check-in, give its expert new face attempts, queue a given-up band write once
more, record the band handed over at the desk or returned. Every action is audited with the person
(by the services it calls, and by the resolution); the case is resolved only after the action itself
succeeded, so a refused action leaves the case open for another try.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn, Expert, Invitation, NeedsStaffCase, UwbDelivery
from platform_server.db.unit_of_work import run_transaction
from platform_server.errors import InvalidRequestError
from platform_server.services import audit, cases, face_attempts, staff

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_REASON_CHARS = 200


class Outcome(StrEnum):
    """How staff closed a case without another action; the words go in front of their reason."""

    RESOLVED = "resolved"
    HANDED_OVER = "handed_over"
    BAND_RETURNED = "band_returned"


OUTCOME_TEXT = {
    Outcome.RESOLVED: "已处理 / resolved",
    Outcome.HANDED_OVER: "服务台交付手环 / band handed over at the desk",
    Outcome.BAND_RETURNED: "手环已归还 / band returned",
}


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidRequestError("reason: 请填写原因 / say what was done and why (required)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidRequestError(f"reason: at most {MAX_REASON_CHARS} characters, got {len(text)}")
    return text


def _open_case(uow: UnitOfWork, case_id: str, batch_code: str) -> cases.CaseView:
    case = cases.get_case(uow, case_id)
    if case.batch_code != batch_code:
        raise InvalidRequestError(f"case {case_id} does not belong to batch {batch_code}")
    if case.state != cases.CaseState.OPEN:
        raise InvalidRequestError(f"case {case_id} was already resolved by {case.resolved_by}")
    return case


def resolve(
    uow: UnitOfWork,
    ctx: ServiceContext,
    *,
    batch_code: str,
    case_id: str,
    outcome: str,
    reason: str,
    actor: str,
) -> cases.CaseView:
    """Resolve a case as handled, band handed over or band returned; the outcome's words lead the reason."""
    try:
        chosen = Outcome(outcome)
    except ValueError as err:
        raise InvalidRequestError(f"outcome: one of {', '.join(o.value for o in Outcome)}, got {outcome!r}") from err
    text = _reason(reason)
    _open_case(uow, case_id, batch_code)
    return cases.resolve_case(uow, ctx, case_id, reason=f"{OUTCOME_TEXT[chosen]}: {text}", actor=actor)


def annul_check_in(
    uow: UnitOfWork, ctx: ServiceContext, *, batch_code: str, case_id: str, reason: str, actor: str
) -> cases.CaseView:
    """Annul the case's check-in (room and band freed, band clear queued), then resolve the case."""
    text = _reason(reason)
    case = _open_case(uow, case_id, batch_code)
    if not case.check_in_id:
        raise InvalidRequestError(f"case {case_id} names no check-in: nothing to annul")
    staff.annul_by_staff(uow, ctx, case.check_in_id, text, actor=actor)
    return cases.resolve_case(uow, ctx, case_id, reason=f"撤销签到 / check-in annulled: {text}", actor=actor)


def resend_to_band(
    uow: UnitOfWork, ctx: ServiceContext, *, batch_code: str, case_id: str, reason: str, actor: str
) -> cases.CaseView:
    """Queue the room write the UWB worker gave up on once more (a new outbox row), then resolve the case.

    A new row, not the failed one revived: if this write fails too, its own case opens (the failed
    row's case is deduplicated by the row's id).
    """
    text = _reason(reason)
    case = _open_case(uow, case_id, batch_code)
    if case.kind != cases.CaseKind.UWB_DELIVERY_FAILED.value or not case.check_in_id:
        raise InvalidRequestError(f"case {case_id} is not a failed band write: nothing to re-send")

    def work(u: UnitOfWork) -> None:
        now = ctx.clock()
        row = u.execute(
            sa.select(UwbDelivery, CheckIn.annulled_at)
            .join(CheckIn, CheckIn.id == UwbDelivery.check_in_id)
            .where(CheckIn.public_id == case.check_in_id)
            .order_by(UwbDelivery.id.desc())
            .limit(1)
        ).first()
        if row is None or row[0].state != "failed" or row[0].kind != "assign":
            raise InvalidRequestError("the band's newest write is not a failed room assignment: nothing to re-send")
        if row[1] is not None:
            raise InvalidRequestError("the check-in is annulled: its room must not be written to the band")
        failed: UwbDelivery = row[0]
        u.execute(
            sa.insert(UwbDelivery).values(
                check_in_id=failed.check_in_id,
                tag_id=failed.tag_id,
                kind="assign",
                batch_code=failed.batch_code,
                hotel_code=failed.hotel_code,
                room_number=failed.room_number,
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        audit.record(
            u,
            at=now,
            actor=actor,
            action="uwb_resend",
            outcome="queued",
            batch_code=batch_code,
            check_in_public_id=case.check_in_id,
            detail={"case": case_id, "reason": text, "tag": failed.tag_id, "room": failed.room_number},
        )
        u.commit()

    run_transaction(uow, work)
    return cases.resolve_case(uow, ctx, case_id, reason=f"重新写入手环 / re-sent to the band: {text}", actor=actor)


def reset_face_attempts(
    uow: UnitOfWork, ctx: ServiceContext, *, batch_code: str, case_id: str, reason: str, actor: str
) -> cases.CaseView:
    """Give the case's expert new face attempts (audited like the by-ID reset), then resolve the case."""
    text = _reason(reason)
    case = _open_case(uow, case_id, batch_code)
    with uow:
        row = uow.execute(
            sa.select(
                Invitation.id, Invitation.face_failures, Invitation.face_locked_by, Expert.id_hash, Expert.id_masked
            )
            .join(Expert, Expert.id == Invitation.expert_id)
            .join(Batch, Batch.id == Invitation.batch_id)
            .join(NeedsStaffCase, NeedsStaffCase.invitation_id == Invitation.id)
            .where(NeedsStaffCase.public_id == case_id, Batch.code == batch_code)
        ).first()
        if row is None:
            raise InvalidRequestError(f"case {case_id} names no expert: no face attempts to reset")
        if row.face_failures == 0:
            raise InvalidRequestError(f"{row.id_masked} has no failed face attempts: nothing to reset")
        face_attempts.clear_attempts(
            uow,
            ctx,
            row.id,
            batch_code=batch_code,
            id_hash=row.id_hash,
            id_masked=row.id_masked,
            actor=actor,
            detail={"reason": text, "previous_failures": row.face_failures, "locked_by": row.face_locked_by},
        )
        uow.commit()
    return cases.resolve_case(
        uow, ctx, case.case_id, reason=f"人脸次数已重置 / face attempts reset: {text}", actor=actor
    )
