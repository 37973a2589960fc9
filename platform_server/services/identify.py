"""Identify an expert for a batch: invited?, the person on file?, any earlier check-in; issue a token.

The cheap path (ID-only batch, no face, no earlier check-in) is one Session-free transaction: one
joined read and two inserts (audit row, stored answer); the token is signed, not stored
(services.identification_token). With a face, that transaction takes the identify's places in the
face workers and reads the expert's reference encodings instead of writing; the comparison (tens of
milliseconds of CPU) runs after it, outside any transaction, and a second one writes the answer. An
identify answered busy has not read the reference and has written nothing; under load most are
answered before the database is asked anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data import id_number
from personal_data.crypto import decrypt, decrypt_text, encrypt_text, lookup_hash
from platform_server.db.models import Invitation
from platform_server.db.unit_of_work import (
    DriverTransaction,
    SqlTransaction,
    commit_without_flush,
    run_driver_transaction,
    run_transaction,
    utc_read,
)
from platform_server.errors import InvalidRequestError
from platform_server.face.api import FaceImageError, FaceImageProblem, LivenessEvidence, LivenessVerdict
from platform_server.log_masking import mask_sensitive
from platform_server.services import audit, audit_chain, events, idempotency, identification_token
from platform_server.services.refusals import Reason, Refusal
from platform_server.services.views import CheckInView, check_in_view

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.face.api import FaceVerifier
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
    liveness: LivenessEvidence | None = None  # the challenge's frames; the platform checks them itself
    # The kiosk's waits after busy answers to this identify (0: its first send): above 0 it may take
    # the face workers' places kept for identifies sent again (face/pool.py). Not part of the request's
    # content: every send of one identify is the same request.
    busy_waited_s: float = 0.0

    @property
    def sent_again(self) -> bool:
        """Sent again after a busy answer: it may take the face workers' places kept for that."""
        return self.busy_waited_s > 0


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
    expert_id: int | None = None
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


# The ID-only path is the kiosk's busiest call: one joined read (which also finds a stored answer to a
# retried request) and two inserts, through the driver's own connection (db.unit_of_work.DriverTransaction
# on the quick path, the unit of work's connection otherwise). SQLAlchemy's statement layer and Session
# cost more than the database work here; the statements are fixed text with bound parameters.
_LOOKUP = """
    SELECT b.id, b.closed, b.check_in_opens, b.evaluation_end, b.allow_id_only,
           k.id, i.id, i.face_failures, e.name, e.organisation, e.bank_card_masked, e.bank_name, p.id,
           (SELECT max(c.id) FROM check_ins c WHERE c.invitation_id = i.id),
           q.method, q.payload_hash, q.response_encrypted, e.id
    FROM (SELECT 1 AS one) AS anchor
    LEFT JOIN batches b ON b.code = :batch_code
    LEFT JOIN kiosks k ON k.kiosk_id = :kiosk_id
    LEFT JOIN experts e ON e.id_hash = :id_hash
    LEFT JOIN invitations i ON i.batch_id = b.id AND i.expert_id = e.id
    LEFT JOIN reference_photos p ON p.expert_id = e.id
    LEFT JOIN requests q ON q.kiosk_id = :kiosk_id AND q.request_id = :request_id
"""
# The expert's reference encodings in the verifier's order: the first photo's, then ID_2.jpg, ID_3.jpg ...
_REFERENCES = """
    SELECT encoding_encrypted, 1 AS position FROM reference_photos WHERE id = :photo_id
    UNION ALL
    SELECT encoding_encrypted, position FROM extra_reference_photos WHERE expert_id = :expert_id
    ORDER BY 2
"""
_INSERT_ANSWER = (
    "INSERT INTO requests (kiosk_id, request_id, method, payload_hash, response_encrypted, created_at) "
    "VALUES (:kiosk_id, :request_id, :method, :payload_hash, :response_encrypted, :created_at)"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class _SessionSql:
    """A SqlTransaction over the unit of work's open transaction (the paths that also use the Session)."""

    def __init__(self, u: UnitOfWork) -> None:
        connection = u.session.connection()  # begins the transaction (BEGIN IMMEDIATE on SQLite)
        self._u = u
        self._driver = DriverTransaction(connection.engine)
        self._driver.raw = connection.connection.driver_connection
        self.engine = connection.engine
        self.postgres = self._driver.postgres
        self.timestamp = self._driver.timestamp

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement on the Session's connection."""
        return self._driver.execute(sql, params)

    def commit(self) -> None:
        """Commit the unit of work."""
        self._u.commit()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after the unit of work commits."""
        self._u.after_commit(callback)


def _unflushed(ctx: ServiceContext, d: SqlTransaction, *, counts_a_try: bool = False) -> None:
    """An identify's transaction commits without waiting for the disk, unless configured to wait.

    On this machine one commit in a hundred waited 10-60 ms for PostgreSQL's WAL flush behind the
    other writers', and on SQLite the fsync of each commit held the one write lock (docs/performance.md).
    What an identify writes is its stored answer, its audit entry and, when refused, an event; its
    token is signed, not stored, so a completion does not depend on it. A crash of the database's
    machine can lose only the last moment's identifies, and the next synchronous commit (a completion,
    the audit chainer's) makes them durable first. A face that did not match is counted against the
    expert's tries: that transaction (`counts_a_try`), like any face refusal, waits. This is the
    Session paths' way (PostgreSQL only: on SQLite they wait); the driver paths open their
    transactions with `flushed=ctx.identify_synchronous_commit`, on both databases.
    """
    if not ctx.identify_synchronous_commit and not counts_a_try:
        commit_without_flush(d)


def _lookup(
    d: SqlTransaction, kiosk_id: str, request_id: str, batch_code: str, id_hash: str
) -> tuple[_Found, tuple[str, str, bytes] | None]:
    """One joined read: batch, kiosk, invitation, expert, photo, newest check-in and any stored answer."""
    row = d.execute(
        _LOOKUP, {"kiosk_id": kiosk_id, "request_id": request_id, "id_hash": id_hash, "batch_code": batch_code}
    ).fetchone()
    stored = (str(row[14]), str(row[15]), bytes(row[16])) if row[14] is not None else None
    if row[0] is None:
        return _Found(kiosk_registered=row[5] is not None), stored
    return (
        _Found(
            batch_id=row[0],
            batch_closed=bool(row[1]),
            check_in_opens=utc_read(row[2]),
            evaluation_end=utc_read(row[3]),
            allow_id_only=bool(row[4]),
            kiosk_registered=row[5] is not None,
            invitation_id=row[6],
            expert_id=row[17],
            face_failures=row[7] or 0,
            expert_name=row[8] or "",
            organisation=row[9] or "",
            card_masked=row[10],
            bank_name=row[11],
            photo_id=row[12],
            latest_check_in=row[13],
        ),
        stored,
    )


def _replay(ctx: ServiceContext, cmd: IdentifyCommand, content: str, stored: tuple[str, str, bytes]) -> IdentifyResult:
    """The first answer to a retried request; a reused request id with other content is refused."""
    method, payload, blob = stored
    if method != METHOD or payload != content:
        raise InvalidRequestError(
            f"request_id {cmd.request_id} was already used for a different {method} call; use a new id per call"
        )
    answer = json.loads(decrypt_text(ctx.data_key, blob, associated=f"{cmd.kiosk_id}/{cmd.request_id}"))
    return IdentifyResult.from_dict(answer, replayed=True)


def identify(uow: UnitOfWork, ctx: ServiceContext, cmd: IdentifyCommand) -> IdentifyResult:
    """Decide whether this ID card (and face) may check in to the batch; record the step either way."""
    idempotency.check_request_id(cmd.request_id)
    if len(cmd.faces) > MAX_FACES:
        raise InvalidRequestError(f"at most {MAX_FACES} face captures per identify call")
    if cmd.faces and cmd.liveness_passed:
        _refuse_if_face_workers_full(ctx, sent_again=cmd.sent_again)
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
        *_evidence_digest(cmd.liveness),
    )

    face_next: dict[str, Any] = {}  # set by `quick` when a face is to be compared: found, encoding
    with contextlib.ExitStack() as held:
        places = _Places(ctx, held, sent_again=cmd.sent_again)

        def quick(d: DriverTransaction) -> IdentifyResult | None:
            """Everything but a face comparison or an earlier check-in to show (None: compare, or the Session path).

            For a face to compare it takes the face workers' places (or is refused, having read only the
            expert's row) and reads the reference encodings in the same transaction, so the comparison
            needs no further read (`face_next`).
            """
            face_next.clear()
            now = ctx.clock()
            found, stored = _lookup(d, cmd.kiosk_id, cmd.request_id, cmd.batch_code, id_hash or "")
            if stored is not None:
                return _replay(ctx, cmd, content, stored)
            if found.latest_check_in is not None:
                return None  # the answer describes the earlier check-in: built through the Session
            refusal = _refusal_before_face(ctx, cmd, found, id_value, now)
            if refusal is None and _face_needed(cmd, found):
                places.take()
                face_next.update(found=found, encoding=_reference_encodings(d, ctx, found))
                return None
            return _finish(d, None, ctx, cmd, found, refusal, None, id_hash, id_masked, content, now)

        result = run_driver_transaction(uow, quick, flushed=ctx.identify_synchronous_commit)
        if result is not None:
            return result
        if not face_next:
            return _identify_full(
                uow, ctx, cmd, places, id_value=id_value, id_hash=id_hash, id_masked=id_masked, content=content
            )
        found: _Found = face_next["found"]
        encoding: bytes = face_next["encoding"]
        return _compare_and_answer(
            uow, ctx, cmd, found, encoding, id_hash=id_hash, id_masked=id_masked, content=content
        )


class _Places:
    """An identify's places in the face workers (`_face_admission`), taken once, held until the identify ends.

    Taken inside the transaction that reads the reference, before it is read: a rerun of that
    transaction does not take them again.
    """

    def __init__(self, ctx: ServiceContext, held: contextlib.ExitStack, *, sent_again: bool) -> None:
        self._ctx = ctx
        self._held = held
        self._sent_again = sent_again
        self._taken = False

    def take(self) -> None:
        """Take the places now, or raise OverloadedError (nothing taken)."""
        if not self._taken:
            self._held.enter_context(_face_admission(self._ctx, sent_again=self._sent_again))
            self._taken = True


def _reference_encodings(d: SqlTransaction, ctx: ServiceContext, found: _Found) -> bytes:
    """The expert's reference encodings, decrypted and joined in order (the first photo's, then the extra ones)."""
    rows = d.execute(_REFERENCES, {"photo_id": found.photo_id, "expert_id": found.expert_id}).fetchall()
    return b"".join(decrypt(ctx.data_key, bytes(row[0]), associated=b"face-encoding") for row in rows)


def _identify_full(
    uow: UnitOfWork,
    ctx: ServiceContext,
    cmd: IdentifyCommand,
    places: _Places,
    *,
    id_value: str,
    id_hash: str | None,
    id_masked: str,
    content: str,
) -> IdentifyResult:
    """The Session path (an earlier check-in to show): the read, then any face comparison and the answer."""
    pending: dict[str, Any] = {}

    def first_pass(u: UnitOfWork) -> IdentifyResult | None:
        now = ctx.clock()
        d = _SessionSql(u)
        _unflushed(ctx, d)
        found, stored = _lookup(d, cmd.kiosk_id, cmd.request_id, cmd.batch_code, id_hash or "")
        if stored is not None:
            return _replay(ctx, cmd, content, stored)
        refusal = _refusal_before_face(ctx, cmd, found, id_value, now)
        if refusal is not None or not _face_needed(cmd, found):
            return _finish(d, u, ctx, cmd, found, refusal, None, id_hash, id_masked, content, now)
        places.take()
        pending["found"] = found
        pending["encoding"] = _reference_encodings(d, ctx, found)
        return None

    result = run_transaction(uow, first_pass)
    if result is not None:
        return result
    return _compare_and_answer(
        uow, ctx, cmd, pending["found"], pending["encoding"], id_hash=id_hash, id_masked=id_masked, content=content
    )


def _compare_and_answer(
    uow: UnitOfWork,
    ctx: ServiceContext,
    cmd: IdentifyCommand,
    found: _Found,
    encoding: bytes,
    *,
    id_hash: str | None,
    id_masked: str,
    content: str,
) -> IdentifyResult:
    """The face checked outside any transaction, then the answer written in a second one.

    A match with no earlier check-in to show is answered by a Session-free transaction like the cheap
    path; a refusal (a mismatch counts against the expert's tries) or an earlier check-in through the Session.
    """
    # The platform's own liveness check first (outside any transaction, like the comparison): a face
    # that is not shown live is not compared, and does not use up one of the expert's tries.
    live, face, face_refusal = _check_face(ctx, cmd, encoding)

    if face is not None and face.matched and face_refusal is None and found.latest_check_in is None:

        def answer(d: DriverTransaction) -> IdentifyResult:
            now = ctx.clock()
            _again, stored = _lookup(d, cmd.kiosk_id, cmd.request_id, cmd.batch_code, id_hash or "")
            if stored is not None:
                return _replay(ctx, cmd, content, stored)
            return _finish(d, None, ctx, cmd, found, None, face, id_hash, id_masked, content, now, live)

        return run_driver_transaction(uow, answer, flushed=ctx.identify_synchronous_commit)

    def second_pass(u: UnitOfWork) -> IdentifyResult:
        now = ctx.clock()
        d = _SessionSql(u)
        _unflushed(ctx, d, counts_a_try=face_refusal is not None or face is None or not face.matched)
        _again, stored = _lookup(d, cmd.kiosk_id, cmd.request_id, cmd.batch_code, id_hash or "")
        if stored is not None:
            return _replay(ctx, cmd, content, stored)
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
            refusal = _mismatch_refusal(u, ctx, found, cmd.kiosk_id, now)
        return _finish(d, u, ctx, cmd, found, refusal, face, id_hash, id_masked, content, now, live)

    return run_transaction(uow, second_pass)


def _mismatch_refusal(u: UnitOfWork, ctx: ServiceContext, found: _Found, kiosk_id: str, now: dt.datetime) -> Refusal:
    """FACE_MISMATCH with the attempt count, or FACE_ATTEMPTS_EXHAUSTED after the last one.

    The kiosk that used the last attempt is recorded with the time: staff see it when they reset
    (services.face_attempts).
    """
    max_attempts = ctx.rules.face_max_attempts
    if found.face_failures < max_attempts:
        return Refusal(Reason.FACE_MISMATCH, {"attempt": str(found.face_failures), "max_attempts": str(max_attempts)})
    u.execute(
        sa.update(Invitation)
        .where(Invitation.id == found.invitation_id, Invitation.face_locked_by.is_(None))
        .values(face_locked_by=kiosk_id[:64], face_locked_at=now)
    )
    return Refusal(Reason.FACE_ATTEMPTS_EXHAUSTED)


def _evidence_digest(evidence: LivenessEvidence | None) -> list[str]:
    """What of the challenge evidence a retried request must repeat (for the idempotency check)."""
    if evidence is None:
        return []
    challenge = evidence.challenge.value if evidence.challenge else ""
    frames = [f"{hashlib.sha256(f.image).hexdigest()}@{f.captured_at_ms}" for f in evidence.frames]
    return [challenge, evidence.challenge_id, *frames]


def _check_face(
    ctx: ServiceContext, cmd: IdentifyCommand, encoding: bytes
) -> tuple[LivenessVerdict | None, FaceResult | None, Refusal | None]:
    """The liveness verdict, then the comparison (only for a face shown live) and its refusal.

    With face worker processes both run at once (`check_and_verify`, face/pool.py): the comparison of
    a face found not live is thrown away unread, so it uses up none of the expert's tries.
    """
    checker = ctx.liveness_checker
    side_by_side = getattr(checker, "check_and_verify", None)
    if checker is not None and side_by_side is not None and ctx.face_verifier is not None:
        evidence = cmd.liveness or LivenessEvidence(challenge=None, challenge_id="", frames=())
        live, compared = side_by_side(evidence, cmd.faces, encoding)
        if not live.passed:
            return live, None, Refusal(Reason.NOT_LIVE)
        if isinstance(compared, FaceImageError):
            return live, None, _image_refusal(ctx.face_verifier, compared)
        return live, FaceResult(compared.distance, compared.threshold, compared.matched), None
    live = _check_liveness(ctx, cmd)
    if live is not None and not live.passed:
        return live, None, Refusal(Reason.NOT_LIVE)
    face, refusal = _compare_faces(ctx, encoding, cmd.faces)
    return live, face, refusal


def _check_liveness(ctx: ServiceContext, cmd: IdentifyCommand) -> LivenessVerdict | None:
    """The platform's verdict on the challenge frames; None when no checker is configured (test fakes)."""
    checker = ctx.liveness_checker
    if checker is None:
        return None
    evidence = cmd.liveness or LivenessEvidence(challenge=None, challenge_id="", frames=())
    return checker.check(evidence, cmd.faces)


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


def _face_workers(ctx: ServiceContext) -> tuple[object, dict[str, int]] | None:
    """What holds an identify's places in the face workers (face/pool.py), and how many it asks for.

    With the platform's liveness check, the checker: the pair of the check and the comparison side
    by side; without it ([face] liveness = kiosk), the verifier: the comparison's one place. None
    without a verifier. A holder that does not run in the face workers has no places (no `admission`).
    """
    if ctx.face_verifier is None:
        return None
    if ctx.liveness_checker is not None:
        return ctx.liveness_checker, {}
    return ctx.face_verifier, {"places": 1}


def _face_admission(ctx: ServiceContext, *, sent_again: bool) -> contextlib.AbstractContextManager[object]:
    """The face workers' places for this identify's face work, or OverloadedError now.

    `sent_again`: the kiosk sends it again after a busy answer (it may take the places kept for that).
    """
    workers = _face_workers(ctx)
    admission = getattr(workers[0], "admission", None) if workers is not None else None
    if workers is None or admission is None:
        return contextlib.nullcontext()
    taken: contextlib.AbstractContextManager[object] = admission(**workers[1], sent_again=sent_again)
    return taken


def _refuse_if_face_workers_full(ctx: ServiceContext, *, sent_again: bool) -> None:
    """OverloadedError before the database is asked anything, when the face workers have no room now.

    Under load most identifies with a face are answered busy and sent again; this keeps those answers
    off the database (on a cluster, the one every replica shares). An identify that would have needed
    no face work (a replay, a refusal) is answered busy too while the workers are full: the kiosk
    sends it again after the advised wait. `_face_admission` still decides for the others.
    """
    workers = _face_workers(ctx)
    check_room = getattr(workers[0], "check_room", None) if workers is not None else None
    if workers is not None and check_room is not None:
        check_room(**workers[1], sent_again=sent_again)


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
        return None, _image_refusal(verifier, err)
    return FaceResult(verdict.distance, verdict.threshold, verdict.matched), None


def _image_refusal(verifier: FaceVerifier, err: FaceImageError) -> Refusal:
    """An unusable capture's refusal (the size limit named when it was too large)."""
    reason = _IMAGE_REFUSALS.get(err.problem, Reason.FACE_NOT_USABLE)
    params = {"max_bytes": str(getattr(verifier, "max_image_bytes", ""))} if reason is Reason.IMAGE_TOO_LARGE else {}
    return Refusal(reason, params)


def _finish(  # noqa: PLR0917
    d: SqlTransaction,
    u: UnitOfWork | None,
    ctx: ServiceContext,
    cmd: IdentifyCommand,
    found: _Found,
    refusal: Refusal | None,
    face: FaceResult | None,
    id_hash: str | None,
    id_masked: str,
    content: str,
    now: dt.datetime,
    live: LivenessVerdict | None = None,
) -> IdentifyResult:
    """Sign the token (if verified); write the audit row, a refusal event and the stored answer; commit.

    `u` (the unit of work whose transaction `d` is) is needed only to show an earlier check-in.
    """
    previous = None
    if found.latest_check_in is not None:
        assert u is not None, "an earlier check-in is shown through the Session path"
        previous = check_in_view(u, found.latest_check_in, ctx.rules.annul_window_s)
    if refusal is None and previous is not None and not previous.annulled:
        refusal = Refusal(
            Reason.ALREADY_CHECKED_IN,
            {"time": china_time(previous.checked_in_at), "kiosk": previous.kiosk_id, "room": previous.room_number},
        )
    token = ""
    if refusal is None:
        assert found.invitation_id is not None
        assert found.expert_id is not None
        assert found.batch_id is not None
        expires = now + dt.timedelta(seconds=ctx.rules.identification_ttl_s)
        token = identification_token.issue(
            ctx.data_key,
            identification_token.Identification(
                kiosk_id=cmd.kiosk_id,
                invitation_id=found.invitation_id,
                expert_id=found.expert_id,
                batch_id=found.batch_id,
                face_distance=face.distance if face else None,
                face_threshold=face.threshold if face else None,
                expires_at_us=(expires - _EPOCH) // _MICROSECOND,
                last_check_in_id=found.latest_check_in or 0,
            ),
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
    # Every outcome is audited in the same commit; the row is audit.record()'s, written directly.
    detail: dict[str, Any] = {
        "faces": len(cmd.faces),
        "liveness": cmd.liveness_passed,
        "distance": round(face.distance, 4) if face else None,
        "attempt": cmd.face_attempt,
    }
    if live is None and face is not None:
        detail["liveness_check"] = "kiosk"  # compared on the kiosk's word alone ([face] liveness = kiosk)
    if live is not None:
        # The platform's own liveness result and why, with the challenge the kiosk says it ran.
        evidence = cmd.liveness
        detail["liveness_check"] = live.reason
        detail["challenge"] = evidence.challenge.value if evidence and evidence.challenge else None
        detail["challenge_id"] = evidence.challenge_id[:64] if evidence else None
    stamp = d.timestamp(now)
    entry = {
        "occurred_at": now,
        "kiosk_time": None,
        "actor": cmd.kiosk_id[:64],
        "action": "identify",
        "outcome": ("verified" if refusal is None else refusal.reason.value.lower())[:40],
        "batch_code": cmd.batch_code,
        "id_hash": id_hash,
        "id_masked": id_masked,
        "check_in_public_id": None,
        "detail": mask_sensitive(json.dumps(detail, ensure_ascii=False, sort_keys=True))[: audit.MAX_DETAIL_CHARS],
    }
    if found.kiosk_registered:
        d.execute(
            _INSERT_ANSWER,
            {
                "kiosk_id": cmd.kiosk_id,
                "request_id": cmd.request_id,
                "method": METHOD,
                "payload_hash": content,
                "response_encrypted": encrypt_text(
                    ctx.data_key,
                    json.dumps(result.to_dict(), ensure_ascii=False),
                    associated=f"{cmd.kiosk_id}/{cmd.request_id}",
                ),
                "created_at": stamp,
            },
        )
    if refusal is not None and found.batch_id is not None:
        events.append_sql(
            d,
            ctx,
            batch_id=found.batch_id,
            kind=events.EventKind.REFUSED,
            at=now,
            kiosk_id=cmd.kiosk_id,
            refusal_reason=refusal.reason.value,
        )
    # The audit entry last, as on every kiosk path (on PostgreSQL it is sealed here and placed in the
    # chain by the audit chainer: no writer waits for another's commit; see services.audit_chain).
    audit_chain.append(
        d.execute, audit_chain.key_for(d.engine), entry, {**entry, "occurred_at": stamp}, postgres=d.postgres
    )
    d.commit()
    return result
