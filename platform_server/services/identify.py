"""Identify an expert for a batch: invited?, the person on file?, any earlier check-in; issue a token.

The cheap path (ID-only batch, no face) is one transaction: one joined read and three inserts. A face
comparison (tens of milliseconds of CPU) runs between two transactions, never inside one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data import id_number
from personal_data.crypto import decrypt, lookup_hash
from platform_server.db.models import Invitation, ReferencePhoto, UtcDateTime
from platform_server.db.unit_of_work import run_transaction
from platform_server.face.api import FaceImageError, FaceImageProblem
from platform_server.services import audit, events, idempotency
from platform_server.services.refusals import Reason, Refusal
from platform_server.services.views import CheckInView, check_in_view

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

CHINA_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
MAX_FACES = 3
METHOD = "IdentifyExpert"


@dataclass(frozen=True, slots=True)
class IdentifyCommand:
    """What the kiosk sends: the ID card fields it read and 0..3 face captures."""

    request_id: str
    kiosk_id: str
    batch_code: str
    id_number: str
    valid_to: str = ""
    faces: tuple[bytes, ...] = ()
    liveness_passed: bool = False
    face_attempt: int = 0


@dataclass(frozen=True, slots=True)
class FaceResult:
    """Outcome of the face comparison."""

    distance: float
    threshold: float
    matched: bool


@dataclass(frozen=True, slots=True)
class IdentifyResult:
    """Verified (with a token and display data) or refused (with a reason)."""

    refusal: Refusal | None
    identification_token: str = ""
    expert_name: str = ""
    id_number_masked: str = ""
    organisation: str = ""
    face: FaceResult | None = None
    card_on_file_masked: str = ""
    card_on_file_bank: str = ""
    previous_check_in: CheckInView | None = None
    face_attempts_left: int = 0
    replayed: bool = False

    @property
    def verified(self) -> bool:
        """True when the expert may go on to the bank card step."""
        return self.refusal is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the idempotency record."""
        return {
            "refusal": self.refusal.to_dict() if self.refusal else None,
            "identification_token": self.identification_token,
            "expert_name": self.expert_name,
            "id_number_masked": self.id_number_masked,
            "organisation": self.organisation,
            "face": [self.face.distance, self.face.threshold, self.face.matched] if self.face else None,
            "card_on_file_masked": self.card_on_file_masked,
            "card_on_file_bank": self.card_on_file_bank,
            "previous_check_in": self.previous_check_in.to_dict() if self.previous_check_in else None,
            "face_attempts_left": self.face_attempts_left,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> IdentifyResult:
        """Inverse of to_dict()."""
        face = data["face"]
        previous = data["previous_check_in"]
        return cls(
            refusal=Refusal.from_dict(data["refusal"]) if data["refusal"] else None,
            identification_token=data["identification_token"],
            expert_name=data["expert_name"],
            id_number_masked=data["id_number_masked"],
            organisation=data["organisation"],
            face=FaceResult(float(face[0]), float(face[1]), bool(face[2])) if face else None,
            card_on_file_masked=data["card_on_file_masked"],
            card_on_file_bank=data["card_on_file_bank"],
            previous_check_in=CheckInView.from_dict(previous) if previous else None,
            face_attempts_left=int(data["face_attempts_left"]),
            replayed=replayed,
        )


@dataclass(slots=True)
class _Found:
    """What the first read found (None fields: not there)."""

    batch_id: int | None = None
    batch_closed: bool = False
    check_in_opens: dt.datetime | None = None
    evaluation_end: dt.datetime | None = None
    allow_id_only: bool = False
    kiosk_registered: bool = False
    invitation_id: int | None = None
    face_failures: int = 0
    expert_name: str = ""
    organisation: str = ""
    card_masked: str | None = None
    bank_name: str | None = None
    photo_id: int | None = None
    latest_check_in: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def china_time(value: dt.datetime) -> str:
    """A time as the screen shows it: 2025-06-01 08:12 in China Standard Time."""
    return value.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def card_expired(valid_to: str, today: dt.date) -> bool | None:
    """True if the card's YYYYMMDD end date is before today; None if unreadable; 长期 never expires."""
    text = valid_to.strip()
    if not text or text == "长期":
        return False
    try:
        end = dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    return end < today


def batch_refusal(closed: bool, opens: dt.datetime, end: dt.datetime, now: dt.datetime) -> Refusal | None:
    """BATCH_CLOSED / BATCH_NOT_OPEN, or None while check-in is open."""
    if closed or now > end:
        return Refusal(Reason.BATCH_CLOSED)
    if now < opens:
        return Refusal(Reason.BATCH_NOT_OPEN, {"start": china_time(opens)})
    return None


# One joined read for the whole decision, built once as text: on the ID-only path this read and three
# inserts are all the database work, and building ORM statements per call would cost more than they do.
_LOOKUP = sa.text(
    """
    SELECT b.id AS batch_id, b.closed, b.check_in_opens, b.evaluation_end, b.allow_id_only,
           k.id AS kiosk_pk, i.id AS invitation_id, i.face_failures, e.name, e.organisation,
           e.bank_card_masked, e.bank_name, p.id AS photo_id,
           (SELECT max(c.id) FROM check_ins c WHERE c.invitation_id = i.id) AS latest_check_in
    FROM batches b
    LEFT JOIN kiosks k ON k.kiosk_id = :kiosk_id
    LEFT JOIN experts e ON e.id_hash = :id_hash
    LEFT JOIN invitations i ON i.batch_id = b.id AND i.expert_id = e.id
    LEFT JOIN reference_photos p ON p.expert_id = e.id
    WHERE b.code = :batch_code
    """
).columns(
    sa.column("batch_id", sa.Integer),
    sa.column("closed", sa.Boolean),
    sa.column("check_in_opens", UtcDateTime()),
    sa.column("evaluation_end", UtcDateTime()),
    sa.column("allow_id_only", sa.Boolean),
)
_KIOSK_EXISTS = sa.text("SELECT id FROM kiosks WHERE kiosk_id = :kiosk_id")
_INSERT_IDENTIFICATION = sa.text(
    "INSERT INTO identifications (token_hash, kiosk_id, invitation_id, face_distance, face_threshold, created_at,"
    " expires_at) VALUES (:token_hash, :kiosk_id, :invitation_id, :face_distance, :face_threshold, :created_at,"
    " :expires_at)"
).bindparams(sa.bindparam("created_at", type_=UtcDateTime()), sa.bindparam("expires_at", type_=UtcDateTime()))


def _lookup(uow: UnitOfWork, kiosk_id: str, batch_code: str, id_hash: str) -> _Found:
    """One joined read: batch, kiosk, invitation, expert, photo and newest check-in."""
    row = uow.execute(_LOOKUP, {"kiosk_id": kiosk_id, "id_hash": id_hash, "batch_code": batch_code}).first()
    if row is None:
        kiosk = uow.execute(_KIOSK_EXISTS, {"kiosk_id": kiosk_id}).first()
        return _Found(kiosk_registered=kiosk is not None)
    return _Found(
        batch_id=row[0],
        batch_closed=bool(row[1]),
        check_in_opens=row[2],
        evaluation_end=row[3],
        allow_id_only=bool(row[4]),
        kiosk_registered=row[5] is not None,
        invitation_id=row[6],
        face_failures=row[7] or 0,
        expert_name=row[8] or "",
        organisation=row[9] or "",
        card_masked=row[10],
        bank_name=row[11],
        photo_id=row[12],
        latest_check_in=row[13],
    )


def identify(uow: UnitOfWork, ctx: ServiceContext, cmd: IdentifyCommand) -> IdentifyResult:  # noqa: C901
    """Decide whether this ID card (and face) may check in to the batch; record the step either way."""
    idempotency.check_request_id(cmd.request_id)
    if len(cmd.faces) > MAX_FACES:
        from platform_server.errors import InvalidRequestError  # noqa: PLC0415

        raise InvalidRequestError(f"at most {MAX_FACES} face captures per identify call")
    try:
        id_value = id_number.validate(cmd.id_number)
    except id_number.InvalidIdNumberError:
        id_value = ""
    id_hash = lookup_hash(ctx.data_key, id_value) if id_value else None
    id_masked = id_number.mask(cmd.id_number)
    content = idempotency.payload_hash(
        METHOD,
        cmd.batch_code,
        id_hash or id_masked,
        cmd.valid_to,
        [hashlib.sha256(face).hexdigest() for face in cmd.faces],
        cmd.liveness_passed,
    )
    pending: dict[str, Any] = {}

    def first_pass(u: UnitOfWork) -> IdentifyResult | None:
        now = ctx.clock()
        stored = idempotency.stored_answer(u, ctx.data_key, cmd.kiosk_id, cmd.request_id, METHOD, content)
        if stored is not None:
            return IdentifyResult.from_dict(stored, replayed=True)
        found = _lookup(u, cmd.kiosk_id, cmd.batch_code, id_hash or "")
        refusal = _refusal_before_face(ctx, cmd, found, id_value, now)
        if refusal is not None or not _face_needed(cmd, found):
            return _finish(u, ctx, cmd, found, refusal, None, id_hash, id_masked, content, now)
        encoding_blob = u.execute(
            sa.select(ReferencePhoto.encoding_encrypted).where(ReferencePhoto.id == found.photo_id)
        ).scalar_one()
        pending["found"] = found
        pending["encoding"] = decrypt(ctx.data_key, encoding_blob, associated=b"face-encoding")
        return None

    result = run_transaction(uow, first_pass)
    if result is not None:
        return result
    found: _Found = pending["found"]
    face, face_refusal = _compare_faces(ctx, pending["encoding"], cmd.faces)

    def second_pass(u: UnitOfWork) -> IdentifyResult:
        now = ctx.clock()
        stored = idempotency.stored_answer(u, ctx.data_key, cmd.kiosk_id, cmd.request_id, METHOD, content)
        if stored is not None:
            return IdentifyResult.from_dict(stored, replayed=True)
        refusal = face_refusal
        if face is not None and not face.matched:
            # Atomic increment: two kiosks trying the same expert at once both count.
            failures = u.execute(
                sa.update(Invitation)
                .where(Invitation.id == found.invitation_id)
                .values(face_failures=Invitation.face_failures + 1)
                .returning(Invitation.face_failures)
            ).scalar_one()
            found.face_failures = int(failures)
            max_attempts = ctx.rules.face_max_attempts
            if found.face_failures >= max_attempts:
                refusal = Refusal(Reason.FACE_ATTEMPTS_EXHAUSTED)
            else:
                refusal = Refusal(
                    Reason.FACE_MISMATCH, {"attempt": str(found.face_failures), "max_attempts": str(max_attempts)}
                )
        return _finish(u, ctx, cmd, found, refusal, face, id_hash, id_masked, content, now)

    return run_transaction(uow, second_pass)


def _refusal_before_face(  # noqa: C901, PLR0911  (the rules, in the order the expert hears them)
    ctx: ServiceContext, cmd: IdentifyCommand, found: _Found, id_value: str, now: dt.datetime
) -> Refusal | None:
    """Every rule that needs no face comparison, in the order the expert should hear them."""
    if not found.kiosk_registered:
        return Refusal(Reason.KIOSK_NOT_REGISTERED)
    if found.batch_id is None:
        return Refusal(Reason.NOT_INVITED)
    if not id_value:
        return Refusal(Reason.ID_CARD_INVALID)
    expired = card_expired(cmd.valid_to, now.astimezone(CHINA_TIME).date())
    if expired is None:
        return Refusal(Reason.ID_CARD_INVALID)
    if expired:
        return Refusal(Reason.ID_CARD_EXPIRED)
    assert found.check_in_opens is not None
    assert found.evaluation_end is not None
    batch = batch_refusal(found.batch_closed, found.check_in_opens, found.evaluation_end, now)
    if batch is not None:
        return batch
    if found.invitation_id is None:
        return Refusal(Reason.NOT_INVITED)
    if found.face_failures >= ctx.rules.face_max_attempts:
        return Refusal(Reason.FACE_ATTEMPTS_EXHAUSTED)
    if found.photo_id is None:
        return None if found.allow_id_only else Refusal(Reason.NO_REFERENCE_PHOTO)
    if not cmd.faces:
        return None if found.allow_id_only else Refusal(Reason.FACE_NOT_USABLE)
    if not cmd.liveness_passed:
        return Refusal(Reason.FACE_NOT_USABLE)
    if ctx.face_verifier is None:
        # No verifier configured: a face cannot be checked, so staff must confirm the person.
        return Refusal(Reason.NO_REFERENCE_PHOTO)
    return None


def _face_needed(cmd: IdentifyCommand, found: _Found) -> bool:
    """True when captures came in and there is a reference to compare them with."""
    return bool(cmd.faces) and found.photo_id is not None


_IMAGE_REFUSALS = {
    FaceImageProblem.TOO_LARGE: Reason.IMAGE_TOO_LARGE,
    FaceImageProblem.UNDECODABLE: Reason.IMAGE_UNDECODABLE,
}


def _compare_faces(
    ctx: ServiceContext, encoding: bytes, faces: tuple[bytes, ...]
) -> tuple[FaceResult | None, Refusal | None]:
    """Run the verifier (outside any transaction); an unusable image is a refusal, not a try used up."""
    verifier = ctx.face_verifier
    assert verifier is not None
    try:
        verdict = verifier.verify(encoding, faces)
    except FaceImageError as err:
        reason = _IMAGE_REFUSALS.get(err.problem, Reason.FACE_NOT_USABLE)
        params = (
            {"max_bytes": str(getattr(verifier, "max_image_bytes", ""))} if reason is Reason.IMAGE_TOO_LARGE else {}
        )
        return None, Refusal(reason, params)
    return FaceResult(verdict.distance, verdict.threshold, verdict.matched), None


def _finish(  # noqa: PLR0917
    u: UnitOfWork,
    ctx: ServiceContext,
    cmd: IdentifyCommand,
    found: _Found,
    refusal: Refusal | None,
    face: FaceResult | None,
    id_hash: str | None,
    id_masked: str,
    content: str,
    now: dt.datetime,
) -> IdentifyResult:
    """Write the token (if verified), the audit row, a refusal event and the idempotency record; commit."""
    previous = check_in_view(u, found.latest_check_in, ctx.rules.annul_window_s) if found.latest_check_in else None
    if refusal is None and previous is not None and not previous.annulled:
        refusal = Refusal(
            Reason.ALREADY_CHECKED_IN,
            {"time": china_time(previous.checked_in_at), "kiosk": previous.kiosk_id, "room": previous.room_number},
        )
    token = ""
    if refusal is None:
        token = secrets.token_urlsafe(32)
        u.execute(
            _INSERT_IDENTIFICATION,
            {
                "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                "kiosk_id": cmd.kiosk_id,
                "invitation_id": found.invitation_id,
                "face_distance": face.distance if face else None,
                "face_threshold": face.threshold if face else None,
                "created_at": now,
                "expires_at": now + dt.timedelta(seconds=ctx.rules.identification_ttl_s),
            },
        )
    invited = found.invitation_id is not None
    result = IdentifyResult(
        refusal=refusal,
        identification_token=token,
        expert_name=found.expert_name if invited else "",
        id_number_masked=id_masked,
        organisation=found.organisation if invited else "",
        face=face,
        card_on_file_masked=(found.card_masked or "") if invited and refusal is None else "",
        card_on_file_bank=(found.bank_name or "") if invited and refusal is None else "",
        previous_check_in=previous if invited else None,
        face_attempts_left=max(0, ctx.rules.face_max_attempts - found.face_failures),
    )
    audit.record(
        u,
        at=now,
        actor=cmd.kiosk_id,
        action="identify",
        outcome="verified" if refusal is None else refusal.reason.value.lower(),
        batch_code=cmd.batch_code,
        id_hash=id_hash,
        id_masked=id_masked,
        detail={
            "faces": len(cmd.faces),
            "liveness": cmd.liveness_passed,
            "distance": round(face.distance, 4) if face else None,
            "attempt": cmd.face_attempt,
        },
    )
    if found.kiosk_registered:
        idempotency.store_answer(
            u,
            ctx.data_key,
            kiosk_id=cmd.kiosk_id,
            request_id=cmd.request_id,
            method=METHOD,
            content=content,
            answer=result.to_dict(),
            at=now,
        )
    if refusal is not None and found.batch_id is not None:
        events.append(
            u,
            ctx,
            batch_id=found.batch_id,
            kind=events.EventKind.REFUSED,
            at=now,
            kiosk_id=cmd.kiosk_id,
            refusal_reason=refusal.reason.value,
        )
    u.commit()
    return result
