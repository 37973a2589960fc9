"""Complete a check-in (band, card, signature, room in one transaction) and annul one just made.

Race safety: a room or band is held by an active check-in through partial unique indexes; the loser of
a race hits the index, the transaction is rerun from the start (`run_transaction`) and picks another
room. On PostgreSQL the room query also skips rows other kiosks have locked, so losers are rare.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data import bank_card
from personal_data.crypto import encrypt, encrypt_text, lookup_hash
from platform_server.db.models import (
    Batch,
    CheckIn,
    Expert,
    Hotel,
    Invitation,
    Kiosk,
    Room,
    UwbDelivery,
    Wristband,
)
from platform_server.db.unit_of_work import RetryTransactionError, run_transaction
from platform_server.errors import InvalidRequestError
from platform_server.services import (
    audit,
    cases,
    complete_quick,
    events,
    idempotency,
    identification_token,
    public_ids,
    room_choice,
    slips,
)
from platform_server.services.bank_names import bank_name_for
from platform_server.services.identify import batch_refusal, china_time
from platform_server.services.refusals import Reason, Refusal
from platform_server.services.signature_image import signature_problem
from platform_server.services.views import CheckInView, check_in_view

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

COMPLETE = "CompleteCheckIn"
ANNUL = "AnnulCheckIn"
_UID = re.compile(r"^(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})$")  # 4, 7 or 10-byte ISO 14443 UIDs
ANNUL_REASONS = ("BAND_NOT_TAKEN", "DISPENSE_FAILED", "BAND_UNREADABLE", "EXPERT_CANCELLED")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def normalise_uid(raw: str) -> str | None:
    """Upper-case hex without separators, or None if it is not a 4/7/10-byte UID."""
    value = re.sub(r"[\s:\-]", "", raw).upper()
    return value if _UID.match(value) else None


@dataclass(frozen=True, slots=True)
class CompleteCommand:
    """What the kiosk sends once card, signature and band UID are in hand."""

    request_id: str
    kiosk_id: str
    identification_token: str
    use_card_on_file: bool
    new_card_pan: str
    card_source: str
    signature_png: bytes
    band_uid: str
    # LIVE: the band waits at the reader. HANDED_OUT / UNKNOWN: a replay from the kiosk's queue for a
    # band that left the arm (or may have): honoured past the token's expiry, a case when it cannot be.
    dispense: str = "LIVE"


DISPENSE_STATES = ("LIVE", "HANDED_OUT", "UNKNOWN")


@dataclass(frozen=True, slots=True)
class CompleteResult:
    """Completed (with the check-in) or refused (with a reason); the case staff handle, if one was opened."""

    refusal: Refusal | None
    check_in: CheckInView | None = None
    replayed: bool = False
    needs_staff_case_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the idempotency record."""
        return {
            "refusal": self.refusal.to_dict() if self.refusal else None,
            "check_in": self.check_in.to_dict() if self.check_in else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> CompleteResult:
        """Inverse of to_dict()."""
        return cls(
            refusal=Refusal.from_dict(data["refusal"]) if data["refusal"] else None,
            check_in=CheckInView.from_dict(data["check_in"]) if data["check_in"] else None,
            replayed=replayed,
        )


def _free_room(u: UnitOfWork, batch_id: int, invitation_id: int, preassigned: int | None) -> tuple[int, str] | None:
    """The pre-assigned room if free, else the lowest free pool room not reserved for someone else."""
    room = room_choice.free_room(
        room_choice.through(u),
        postgres=u.is_postgres,
        batch_id=batch_id,
        invitation_id=invitation_id,
        preassigned=preassigned,
    )
    return (room[0], room[1]) if room else None


def complete_check_in(uow: UnitOfWork, ctx: ServiceContext, cmd: CompleteCommand) -> CompleteResult:
    """Bind the band, store card and signature, assign the room: one transaction, idempotent.

    A replay for a band that left the arm is never dropped: honoured if the platform signed its token
    (whatever its age, single use still holding), else a needs-staff case, whose id the answer carries.
    """
    idempotency.check_request_id(cmd.request_id)
    if cmd.dispense not in DISPENSE_STATES:
        raise InvalidRequestError(f"dispense must be one of {', '.join(DISPENSE_STATES)}")
    pan = ""
    card_refusal = None
    if not cmd.use_card_on_file:
        try:
            pan = bank_card.validate(cmd.new_card_pan)
        except bank_card.InvalidCardNumberError:
            card_refusal = Refusal(Reason.BANK_CARD_INVALID)
    card_hash = lookup_hash(ctx.data_key, pan) if pan else ""
    uid = normalise_uid(cmd.band_uid)
    # The signature is looked at only for a token this platform signed for this kiosk: nobody else's
    # bytes reach the image decoder. Without one the call is refused before the signature counts.
    claims = identification_token.verify(ctx.data_key, cmd.identification_token)
    signature_issue = (
        signature_problem(cmd.signature_png, ctx.rules.max_signature_bytes)
        if claims is not None and claims.kiosk_id == cmd.kiosk_id
        else "not_checked"
    )
    content = idempotency.payload_hash(
        COMPLETE,
        hashlib.sha256(cmd.identification_token.encode()).hexdigest(),
        cmd.use_card_on_file,
        card_hash or bank_card.mask(cmd.new_card_pan),
        hashlib.sha256(cmd.signature_png).hexdigest(),
        cmd.band_uid,
    )

    # The common case, Session-free; None (nothing written) when a rule refuses or it is a replay.
    clean = card_refusal is None and signature_issue is None
    view = _quick(uow, ctx, cmd, claims, pan, card_hash, uid, content) if clean else None
    if view is not None:
        return CompleteResult(None, view)

    def work(u: UnitOfWork) -> CompleteResult:
        now = ctx.clock()
        stored = idempotency.stored_answer(u, ctx.data_key, cmd.kiosk_id, cmd.request_id, COMPLETE, content)
        if stored is not None:
            answer = CompleteResult.from_dict(stored, replayed=True)
            if cmd.dispense == "LIVE":
                return answer
            # The first answer never reached the kiosk, which then let the band go: a refusal, or a
            # completion whose band may not be with the expert, is now a case (once: deduplicated).
            case_id = _replay_case(u, ctx, cmd, now, uid, answer)
            u.commit()
            return dataclasses.replace(answer, needs_staff_case_id=case_id)
        outcome = _complete(u, ctx, cmd, now, pan, card_hash, card_refusal, uid, signature_issue)
        idempotency.store_answer(
            u,
            ctx.data_key,
            kiosk_id=cmd.kiosk_id,
            request_id=cmd.request_id,
            method=COMPLETE,
            content=content,
            answer=outcome.result.to_dict(),
            at=now,
        )
        if outcome.batch_id is not None:
            kind = events.EventKind.REFUSED if outcome.result.refusal else events.EventKind.CHECKED_IN
            events.append(
                u,
                ctx,
                batch_id=outcome.batch_id,
                kind=kind,
                at=now,
                kiosk_id=cmd.kiosk_id,
                check_in_pk=outcome.check_in_pk,
                refusal_reason=outcome.result.refusal.reason.value if outcome.result.refusal else None,
            )
        result = outcome.result
        if cmd.dispense != "LIVE":
            result = dataclasses.replace(result, needs_staff_case_id=_replay_case(u, ctx, cmd, now, uid, result))
        u.commit()
        return result

    return run_transaction(uow, work)


def _quick(  # noqa: PLR0917
    uow: UnitOfWork,
    ctx: ServiceContext,
    cmd: CompleteCommand,
    claims: identification_token.Identification | None,
    pan: str,
    card_hash: str,
    uid: str | None,
    content: str,
) -> CheckInView | None:
    """complete_quick for a live band with a token signed for this kiosk; None: take the full path."""
    if cmd.dispense != "LIVE" or claims is None or claims.kiosk_id != cmd.kiosk_id or not uid:
        return None
    return complete_quick.try_complete(uow, ctx, cmd, claims, pan, card_hash, uid, content)


def _replay_case(  # noqa: PLR0917
    u: UnitOfWork, ctx: ServiceContext, cmd: CompleteCommand, now: dt.datetime, uid: str | None, result: CompleteResult
) -> str:
    """The case a replayed completion needs ('' if none): refused, or completed with the band's fate unknown."""
    if result.refusal is None and cmd.dispense != "UNKNOWN":
        return ""
    claims = identification_token.verify(ctx.data_key, cmd.identification_token)
    invitation_id = batch_id = None
    if claims is not None:
        found = u.execute(
            sa.select(Invitation.id, Invitation.batch_id).where(Invitation.id == claims.invitation_id)
        ).first()
        if found is not None:
            invitation_id, batch_id = int(found[0]), int(found[1])
    if batch_id is None:  # a token we cannot read: the kiosk's own batch, so the case reaches its organisers
        batch_id = u.execute(sa.select(Kiosk.batch_id).where(Kiosk.kiosk_id == cmd.kiosk_id)).scalar()
    check_in_pk = None
    if result.check_in is not None:
        check_in_pk = u.execute(
            sa.select(CheckIn.id).where(CheckIn.public_id == result.check_in.check_in_id)
        ).scalar_one()
    if result.refusal is not None:
        kind, reason = cases.CaseKind.QUEUED_CHECK_IN_REFUSED, result.refusal.reason.value
        detail: dict[str, Any] = {
            "request_id": cmd.request_id,
            "dispense": cmd.dispense.lower(),
            "why": "a band left the arm but its check-in cannot be made: find the expert, take back or re-issue"
            " the band",
            **result.refusal.params,
        }
    else:
        kind, reason = cases.CaseKind.DISPENSE_OUTCOME_UNKNOWN, "dispense_outcome_unknown"
        detail = {
            "request_id": cmd.request_id,
            "why": "the kiosk stopped mid-dispense: check whether the expert has the band (else annul the"
            " check-in and return the band from the reject bin)",
        }
        u.execute(
            sa.update(CheckIn)
            .where(CheckIn.id == check_in_pk)
            .values(needs_staff=True)
            .execution_options(synchronize_session=False)
        )
    return cases.open_case(
        u,
        ctx,
        kind=kind,
        at=now,
        created_by=cmd.kiosk_id,
        kiosk_id=cmd.kiosk_id,
        batch_id=batch_id,
        invitation_id=invitation_id,
        check_in_pk=check_in_pk,
        band_uid=uid or cmd.band_uid[:20],
        reason=reason,
        detail=detail,
        dedupe_key=cases.dedupe(kind, cmd.kiosk_id, cmd.request_id),
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: CompleteResult
    batch_id: int | None = None
    check_in_pk: int | None = None


def _complete(  # noqa: C901, PLR0911, PLR0912, PLR0915, PLR0917  (the rules, in the order the expert hears them)
    u: UnitOfWork,
    ctx: ServiceContext,
    cmd: CompleteCommand,
    now: dt.datetime,
    pan: str,
    card_hash: str,
    card_refusal: Refusal | None,
    uid: str | None,
    signature_issue: str | None,
) -> _Outcome:
    """The check-in itself, inside the caller's transaction; refusals write only the audit row."""
    claims = identification_token.verify(ctx.data_key, cmd.identification_token)
    row = (
        u.execute(
            sa.select(Invitation, Batch, Expert)
            .join(Batch, Batch.id == Invitation.batch_id)
            .join(Expert, Expert.id == Invitation.expert_id)
            .where(Invitation.id == claims.invitation_id)
        ).first()
        if claims is not None
        else None
    )

    def refuse(refusal: Refusal, batch: Batch | None = None, expert: Expert | None = None, **detail: Any) -> _Outcome:
        audit.record(
            u,
            at=now,
            actor=cmd.kiosk_id,
            action="complete_check_in",
            outcome=refusal.reason.value.lower(),
            batch_code=batch.code if batch else None,
            id_hash=expert.id_hash if expert else None,
            id_masked=expert.id_masked if expert else None,
            detail={"band_uid": uid or "", **detail},
        )
        return _Outcome(CompleteResult(refusal), batch.id if batch else None)

    kiosk_known = u.execute(sa.select(Kiosk.id).where(Kiosk.kiosk_id == cmd.kiosk_id)).first() is not None
    if not kiosk_known:
        return refuse(Refusal(Reason.KIOSK_NOT_REGISTERED))
    if claims is None or row is None:
        return refuse(Refusal(Reason.IDENTIFICATION_EXPIRED), why="token_unknown")
    invitation: Invitation = row[0]
    batch: Batch = row[1]
    expert: Expert = row[2]
    if batch.id != claims.batch_id or expert.id != claims.expert_id:
        # Signed by this platform but not matching the invitation any more: never honoured.
        return refuse(Refusal(Reason.IDENTIFICATION_EXPIRED), batch, expert, why="token_unknown")
    if claims.kiosk_id != cmd.kiosk_id:
        return refuse(Refusal(Reason.IDENTIFICATION_EXPIRED), batch, expert, why="token_of_other_kiosk")
    late_us = (now - _EPOCH) // _MICROSECOND - claims.expires_at_us
    if late_us > 0 and cmd.dispense == "LIVE":
        return refuse(Refusal(Reason.IDENTIFICATION_EXPIRED), batch, expert, why="token_expired")
    closed = batch_refusal(batch.closed, batch.check_in_opens, batch.evaluation_end, now)
    if closed is not None:
        return refuse(closed, batch, expert)
    active = u.execute(
        sa.select(CheckIn.id).where(CheckIn.invitation_id == invitation.id, CheckIn.annulled_at.is_(None))
    ).scalar_one_or_none()
    if active is not None:
        view = check_in_view(u, int(active), ctx.rules.annul_window_s)
        return refuse(
            Refusal(
                Reason.ALREADY_CHECKED_IN,
                {"time": china_time(view.checked_in_at), "kiosk": view.kiosk_id, "room": view.room_number},
            ),
            batch,
            expert,
        )
    # A token checks in once: any check-in of the invitation newer than the token saw (even one since
    # annulled) used it up. Ids, not clocks, so replicas with skewed clocks agree.
    newest = u.execute(sa.select(sa.func.max(CheckIn.id)).where(CheckIn.invitation_id == invitation.id)).scalar()
    if (newest or 0) != claims.last_check_in_id:
        return refuse(Refusal(Reason.IDENTIFICATION_EXPIRED), batch, expert, why="token_used")
    if card_refusal is not None:
        return refuse(card_refusal, batch, expert)
    if cmd.use_card_on_file and expert.bank_card_encrypted is None:
        return refuse(Refusal(Reason.BANK_CARD_INVALID), batch, expert, card="none_on_file")
    if signature_issue is not None:
        return refuse(Refusal(Reason.SIGNATURE_INVALID), batch, expert, signature=signature_issue)
    band = u.execute(sa.select(Wristband).where(Wristband.rfid_uid == (uid or ""))).scalar_one_or_none()
    if band is None:
        return refuse(Refusal(Reason.BAND_UNKNOWN), batch, expert)
    if band.state != "in_stock":
        return refuse(Refusal(Reason.BAND_NOT_AVAILABLE), batch, expert, band_state=band.state)
    room = _free_room(u, batch.id, invitation.id, invitation.room_id)
    if room is None:
        return refuse(Refusal(Reason.NO_ROOM_LEFT), batch, expert)
    # Conditional update: of two kiosks presenting the same band, exactly one sees a row change.
    bound = u.execute(
        sa.update(Wristband)
        .where(Wristband.id == band.id, Wristband.state == "in_stock")
        .values(state="bound", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if bound.rowcount != 1:  # type: ignore[attr-defined]
        raise RetryTransactionError("band bound by a concurrent check-in")
    room_id, room_number = room
    if pan:
        card_blob = encrypt_text(ctx.data_key, pan, associated=expert.id_hash)
        card_masked = bank_card.mask(pan)
        u.execute(
            sa.update(Expert)
            .where(Expert.id == expert.id)
            .values(
                bank_card_encrypted=card_blob,
                bank_card_hash=card_hash,
                bank_card_masked=card_masked,
                bank_name=bank_name_for(pan),
            )
            .execution_options(synchronize_session=False)
        )
        source = cmd.card_source
    else:
        assert expert.bank_card_encrypted is not None
        assert expert.bank_card_masked is not None
        card_blob, card_masked, source = expert.bank_card_encrypted, expert.bank_card_masked, "ON_FILE"
    public_id = public_ids.new_public_id("ci_")
    slip_code, slip_serial = slips.new_slip_code(), slips.next_serial(u, cmd.kiosk_id)
    check_in_pk = u.execute(
        sa.insert(CheckIn)
        .values(
            public_id=public_id,
            batch_id=batch.id,
            invitation_id=invitation.id,
            kiosk_id=cmd.kiosk_id,
            room_id=room_id,
            wristband_id=band.id,
            bank_card_encrypted=card_blob,
            bank_card_masked=card_masked,
            bank_card_source=source[:12],
            signature_encrypted=encrypt(ctx.data_key, cmd.signature_png, associated=public_id.encode()),
            face_distance=claims.face_distance,
            face_threshold=claims.face_threshold,
            checked_in_at=now,
            needs_staff=False,
            slip_code=slip_code,
            slip_serial=slip_serial,
        )
        .returning(CheckIn.id)
    ).scalar_one()
    room_choice.occupy(room_choice.through(u), room_id, check_in_pk)
    hotel_code = u.execute(sa.select(Hotel.code).where(Hotel.id == batch.hotel_id)).scalar_one()
    u.execute(
        sa.insert(UwbDelivery).values(
            check_in_id=check_in_pk,
            tag_id=band.uwb_tag_id,
            kind="assign",
            batch_code=batch.code,
            hotel_code=hotel_code,
            room_number=room_number,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    audit.record(
        u,
        at=now,
        actor=cmd.kiosk_id,
        action="complete_check_in",
        outcome="completed",
        batch_code=batch.code,
        id_hash=expert.id_hash,
        id_masked=expert.id_masked,
        check_in_public_id=public_id,
        detail={
            "room": room_number,
            "band_uid": band.rfid_uid,
            "uwb_tag_id": band.uwb_tag_id,
            "card": card_masked,
            "card_source": source,
            "face_distance": claims.face_distance,
            **({"dispense": cmd.dispense.lower()} if cmd.dispense != "LIVE" else {}),
            **({"late_s": round(late_us / 1e6, 1)} if late_us > 0 else {}),
        },
    )
    view = check_in_view(u, int(check_in_pk), ctx.rules.annul_window_s)
    return _Outcome(CompleteResult(None, view), batch.id, int(check_in_pk))


@dataclass(frozen=True, slots=True)
class AnnulCommand:
    """Undo a check-in this kiosk just made (band not dispensed, not taken or unreadable)."""

    request_id: str
    kiosk_id: str
    check_in_id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AnnulResult:
    """Annulled, or refused with a reason."""

    refusal: Refusal | None
    replayed: bool = False


def annul_check_in(uow: UnitOfWork, ctx: ServiceContext, cmd: AnnulCommand) -> AnnulResult:
    """Annul: free room and band (band back in stock), supersede pending UWB writes, queue a clear."""
    idempotency.check_request_id(cmd.request_id)
    content = idempotency.payload_hash(ANNUL, cmd.check_in_id, cmd.reason)

    def work(u: UnitOfWork) -> AnnulResult:
        now = ctx.clock()
        stored = idempotency.stored_answer(u, ctx.data_key, cmd.kiosk_id, cmd.request_id, ANNUL, content)
        if stored is not None:
            return AnnulResult(Refusal.from_dict(stored["refusal"]) if stored["refusal"] else None, replayed=True)
        refusal, batch_id, check_in_pk = _annul(u, ctx, cmd, now)
        idempotency.store_answer(
            u,
            ctx.data_key,
            kiosk_id=cmd.kiosk_id,
            request_id=cmd.request_id,
            method=ANNUL,
            content=content,
            answer={"refusal": refusal.to_dict() if refusal else None},
            at=now,
        )
        if batch_id is not None and refusal is None:
            events.append(
                u,
                ctx,
                batch_id=batch_id,
                kind=events.EventKind.ANNULLED,
                at=now,
                kiosk_id=cmd.kiosk_id,
                check_in_pk=check_in_pk,
            )
        u.commit()
        return AnnulResult(refusal)

    return run_transaction(uow, work)


def _annul(
    u: UnitOfWork, ctx: ServiceContext, cmd: AnnulCommand, now: dt.datetime
) -> tuple[Refusal | None, int | None, int | None]:
    """The annulment inside the caller's transaction: (refusal, batch id, check-in pk)."""
    row = u.execute(
        sa.select(CheckIn, Batch.code, Expert.id_hash, Expert.id_masked, Wristband, Room.number, Hotel.code)
        .join(Batch, Batch.id == CheckIn.batch_id)
        .join(Invitation, Invitation.id == CheckIn.invitation_id)
        .join(Expert, Expert.id == Invitation.expert_id)
        .join(Wristband, Wristband.id == CheckIn.wristband_id)
        .join(Room, Room.id == CheckIn.room_id)
        .join(Hotel, Hotel.id == Room.hotel_id)
        .where(CheckIn.public_id == cmd.check_in_id)
    ).first()
    base: dict[str, Any] = {"at": now, "actor": cmd.kiosk_id, "action": "annul_check_in"}
    if row is None:
        audit.record(u, **base, outcome="check_in_not_found", detail={"check_in_id": cmd.check_in_id[:40]})
        return Refusal(Reason.CHECK_IN_NOT_FOUND), None, None
    check_in: CheckIn = row[0]
    band: Wristband = row[4]
    who: dict[str, Any] = {
        "batch_code": row[1],
        "id_hash": row[2],
        "id_masked": row[3],
        "check_in_public_id": check_in.public_id,
    }
    why = ""
    if check_in.kiosk_id != cmd.kiosk_id:
        why = "other_kiosk"
    elif check_in.annulled_at is not None:
        why = "already_annulled"
    elif now > check_in.checked_in_at + dt.timedelta(seconds=ctx.rules.annul_window_s):
        why = "window_passed"
    if why:
        audit.record(u, **base, **who, outcome="annul_not_allowed", detail={"why": why})
        return Refusal(Reason.ANNUL_NOT_ALLOWED, {"why": why}), check_in.batch_id, None
    changed = u.execute(
        sa.update(CheckIn)
        .where(CheckIn.id == check_in.id, CheckIn.annulled_at.is_(None))
        .values(annulled_at=now, annul_reason=cmd.reason[:32])
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        # Another annulment of the same check-in committed first; the rerun sees it as already annulled.
        raise RetryTransactionError("check-in annulled by a concurrent call")
    room_choice.vacate(room_choice.through(u), check_in.room_id, check_in.id)
    # The band went to the reject bin; staff return it to the stack, so it counts as stock again.
    release_band_and_clear_it(u, check_in.id, band, batch_code=row[1], hotel_code=row[6], room_number=row[5], now=now)
    audit.record(
        u,
        **base,
        **who,
        outcome="annulled",
        detail={"reason": cmd.reason, "detail": cmd.detail[:500], "room": row[5], "band_uid": band.rfid_uid},
    )
    audit.record(
        u,
        at=now,
        actor=cmd.kiosk_id,
        action="band_returned_to_stock",
        outcome="in_stock",
        batch_code=row[1],
        check_in_public_id=check_in.public_id,
        detail={"band_uid": band.rfid_uid},
    )
    return None, check_in.batch_id, check_in.id


def release_band_and_clear_it(
    u: UnitOfWork,
    check_in_id: int,
    band: Wristband,
    *,
    batch_code: str,
    hotel_code: str,
    room_number: str,
    now: dt.datetime,
) -> None:
    """After an annulment: the band counts as stock again, pending writes to it are superseded, a clear is queued."""
    u.execute(
        sa.update(Wristband)
        .where(Wristband.id == band.id)
        .values(state="in_stock", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    u.execute(
        sa.update(UwbDelivery)
        .where(UwbDelivery.check_in_id == check_in_id, UwbDelivery.state == "pending")
        .values(state="superseded")
        .execution_options(synchronize_session=False)
    )
    u.execute(
        sa.insert(UwbDelivery).values(
            check_in_id=check_in_id,
            tag_id=band.uwb_tag_id,
            kind="clear",
            batch_code=batch_code,
            hotel_code=hotel_code,
            room_number=room_number,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
