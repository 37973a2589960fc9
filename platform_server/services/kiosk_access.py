"""Which kiosk may act, for which batch, at what pace: the gate every kiosk call passes first.

- Identity: with client certificates on, a kiosk is accepted only with the one certificate whose
  SHA-256 is registered for it (`kiosks cert K FILE`); `kiosks revoke-cert K` unregisters it, and the
  next call is refused, on every replica at once (the registry is the shared database, no CRL to
  distribute or reload).
- State: a disabled or removed kiosk is refused on every call; nothing it sends is written.
- Batch: a kiosk assigned to a batch identifies and completes for that batch only. A completion
  replayed from the kiosk's queue (a band already handed out) is let through: its token proves the
  platform identified the expert at this kiosk for that batch, and the band is out either way.
- Pace: refusals in a row that could be someone probing the invited list (not invited, invalid ID,
  face mismatch) lock IdentifyExpert for a growing time and open a needs-staff case.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from platform_server.db.models import Kiosk, NeedsStaffCase
from platform_server.db.unit_of_work import run_driver_transaction, run_transaction, utc_read
from platform_server.errors import (
    InvalidRequestError,
    KioskCertificateError,
    KioskDisabledError,
    KioskRemovedError,
    KioskThrottledError,
    KioskWrongBatchError,
    NotFoundError,
)
from platform_server.services import audit, cases, identification_token
from platform_server.services.refusals import Reason

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

# Refusals that tell a prober something about the invited list or the faces on file.
STREAK_REASONS = frozenset(
    {Reason.NOT_INVITED, Reason.ID_CARD_INVALID, Reason.FACE_MISMATCH, Reason.FACE_ATTEMPTS_EXHAUSTED}
)
MAX_REASON_CHARS = 200


_ADMIT = (
    "SELECT k.disabled_at, k.disabled_reason, k.removed_at, k.cert_sha256, k.refusal_streak, k.throttled_until,"
    " k.batch_id, b.code,"
    # An unassigned kiosk serves the only open batch (as its home screen shows): which, and how many.
    " (SELECT min(o.code) FROM batches o WHERE k.batch_id IS NULL AND NOT o.closed),"
    " (SELECT count(*) FROM batches o WHERE k.batch_id IS NULL AND NOT o.closed)"
    " FROM kiosks k LEFT JOIN batches b ON b.id = k.batch_id WHERE k.kiosk_id = :kiosk_id"
)


@dataclass(frozen=True, slots=True)
class Admission:
    """A kiosk let through: registered or not (unregistered only without certificates), its refusal streak."""

    registered: bool
    refusal_streak: int = 0


def certificate_sha256(pem_or_der: bytes) -> str:
    """Lower-case hex SHA-256 of a certificate's DER encoding (what `openssl x509 -fingerprint -sha256` shows)."""
    try:
        cert = x509.load_pem_x509_certificate(pem_or_der) if b"-----BEGIN" in pem_or_der else None
    except ValueError as err:
        raise InvalidRequestError("not a PEM certificate") from err
    der = cert.public_bytes(serialization.Encoding.DER) if cert is not None else pem_or_der
    if cert is None:
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as err:
            raise InvalidRequestError("not a PEM or DER certificate") from err
    return hashlib.sha256(der).hexdigest()


def admit(
    uow: UnitOfWork,
    ctx: ServiceContext,
    kiosk_id: str,
    *,
    certificates_required: bool,
    presented_sha256: str | None,
    batch_code: str | None = None,
    token: str | None = None,
    identify: bool = False,
) -> Admission:
    """Let the call through or raise the specific refusal; reads only, so a refused call writes nothing."""
    # Every kiosk call passes here: one statement on a driver connection, no Session, no write lock;
    # a database restarting under it is retried, then UNAVAILABLE (not an internal error).
    row = run_driver_transaction(uow, lambda d: d.execute(_ADMIT, {"kiosk_id": kiosk_id}).fetchone(), read_only=True)
    if row is None:
        if certificates_required:
            raise KioskCertificateError(f"kiosk {kiosk_id} is not registered: no certificate is accepted for it")
        return Admission(registered=False)  # the services answer KIOSK_NOT_REGISTERED
    disabled_reason, registered_sha256, streak = row[1], row[3], row[4]
    disabled_at, removed_at, throttled_until = utc_read(row[0]), utc_read(row[2]), utc_read(row[5])
    if removed_at is not None:
        raise KioskRemovedError(f"kiosk {kiosk_id} was removed on {removed_at:%Y-%m-%d %H:%M} UTC")
    if certificates_required and (registered_sha256 is None or registered_sha256 != presented_sha256):
        why = "no certificate is registered for it" if registered_sha256 is None else "it is revoked or replaced"
        raise KioskCertificateError(f"the client certificate is not the one registered for kiosk {kiosk_id}: {why}")
    if disabled_at is not None:
        suffix = f": {disabled_reason}" if disabled_reason else ""
        raise KioskDisabledError(f"kiosk {kiosk_id} is disabled since {disabled_at:%Y-%m-%d %H:%M} UTC{suffix}")
    now = ctx.clock()
    if identify and throttled_until is not None and throttled_until > now:
        wait = (throttled_until - now).total_seconds()
        raise KioskThrottledError(
            f"kiosk {kiosk_id} is slowed down after {streak} refusals in a row: try again in {wait:.0f} s "
            "(staff: resolve the kiosk_refusal_streak case to lift it)",
            retry_after_s=wait,
        )
    _check_batch(ctx, kiosk_id, row, batch_code, token)
    return Admission(registered=True, refusal_streak=int(streak))


def _check_batch(ctx: ServiceContext, kiosk_id: str, row: Any, batch_code: str | None, token: str | None) -> None:
    """KioskWrongBatchError unless the call is for the kiosk's batch (or, unassigned, the only open one)."""
    batch_id, code = row[6], row[7]
    if batch_id is None:
        only_open, open_count = row[8], int(row[9] or 0)
        if batch_code is not None and (open_count != 1 or batch_code != only_open):
            raise KioskWrongBatchError(
                f"kiosk {kiosk_id} is not assigned to a batch and serves only the one open batch"
                f" ({open_count} are open): assign it with `platform-server kiosks add --batch`"
            )
    else:
        if batch_code is not None and batch_code != code:
            raise KioskWrongBatchError(f"kiosk {kiosk_id} is assigned to batch {code}, not {batch_code[:32]!r}")
        claims = identification_token.verify(ctx.data_key, token) if token else None
        if claims is not None and claims.batch_id != batch_id:
            raise KioskWrongBatchError(f"kiosk {kiosk_id} is assigned to batch {code}: this identification is not")


def note_identify(
    uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, admission: Admission, reason: Reason | None
) -> None:
    """Count a refusal that could be probing, reset the streak on a verified expert; throttle past the limit.

    The streak's first crossing of the limit opens a needs-staff case (one open case per kiosk).
    """
    if not admission.registered:
        return
    if reason is None or reason not in STREAK_REASONS:
        if reason is None and admission.refusal_streak:

            def reset(u: UnitOfWork) -> None:
                u.execute(
                    sa.update(Kiosk).where(Kiosk.kiosk_id == kiosk_id).values(refusal_streak=0, throttled_until=None)
                )
                u.commit()

            run_transaction(uow, reset)
        return
    rules = ctx.rules

    def work(u: UnitOfWork) -> None:
        now = ctx.clock()
        streak, batch_id = u.execute(
            sa.update(Kiosk)
            .where(Kiosk.kiosk_id == kiosk_id)
            .values(refusal_streak=Kiosk.refusal_streak + 1)
            .returning(Kiosk.refusal_streak, Kiosk.batch_id)
        ).one()
        over = int(streak) - rules.kiosk_refusal_streak
        if over < 0:
            u.commit()
            return
        lock_s = min(rules.kiosk_throttle_s * 2 ** min(over, 30), rules.kiosk_throttle_max_s)
        u.execute(
            sa.update(Kiosk)
            .where(Kiosk.kiosk_id == kiosk_id)
            .values(throttled_until=now + dt.timedelta(seconds=lock_s))
        )
        audit.record(
            u,
            at=now,
            actor=kiosk_id,
            action="kiosk_throttled",
            outcome="slowed_down",
            detail={"refusals_in_a_row": int(streak), "locked_s": lock_s, "last": reason.value},
        )
        already = u.execute(
            sa.select(NeedsStaffCase.id).where(
                NeedsStaffCase.kiosk_id == kiosk_id,
                NeedsStaffCase.kind == cases.CaseKind.KIOSK_REFUSAL_STREAK.value,
                NeedsStaffCase.state == cases.CaseState.OPEN.value,
            )
        ).first()
        if already is None:
            cases.open_case(
                u,
                ctx,
                kind=cases.CaseKind.KIOSK_REFUSAL_STREAK,
                at=now,
                created_by="platform",
                kiosk_id=kiosk_id,
                batch_id=batch_id,
                reason=reason.value,
                detail={
                    "refusals_in_a_row": int(streak),
                    "why": "many refused ID cards or faces in a row: someone may be trying numbers or faces at"
                    " this kiosk. Look at who is there; resolving this case lifts the slow-down",
                },
            )
        u.commit()

    run_transaction(uow, work)


# ---- organiser commands ----------------------------------------------------------------------------


def _kiosk(u: UnitOfWork, kiosk_id: str) -> Kiosk:
    kiosk = u.session.execute(sa.select(Kiosk).where(Kiosk.kiosk_id == kiosk_id)).scalar_one_or_none()
    if kiosk is None or kiosk.removed_at is not None:
        raise NotFoundError(f"终端 {kiosk_id} 未登记 / kiosk {kiosk_id} is not registered")
    return kiosk


def _change(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, action: str, actor: str, **values: object) -> None:
    def work(u: UnitOfWork) -> None:
        now = ctx.clock()
        kiosk = _kiosk(u, kiosk_id)
        for name, value in values.items():
            setattr(kiosk, name, now if value is _NOW else value)
        detail = {k: v for k, v in values.items() if k in {"disabled_reason", "cert_sha256"} and v}
        audit.record(u, at=now, actor=actor, action=action, outcome="done", detail={"kiosk": kiosk_id, **detail})
        u.commit()

    run_transaction(uow, work)


_NOW = object()


def disable(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, *, reason: str, actor: str) -> None:
    """Refuse every call of the kiosk from now on (audited, with the reason)."""
    if not reason.strip():
        raise InvalidRequestError("disabling a kiosk needs a reason (--reason)")
    _change(uow, ctx, kiosk_id, "kiosk_disable", actor, disabled_at=_NOW, disabled_reason=reason[:MAX_REASON_CHARS])


def enable(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, *, actor: str) -> None:
    """Serve the kiosk again (its refusal streak starts over)."""
    _change(
        uow,
        ctx,
        kiosk_id,
        "kiosk_enable",
        actor,
        disabled_at=None,
        disabled_reason="",
        refusal_streak=0,
        throttled_until=None,
    )


def remove(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, *, actor: str) -> None:
    """Retire the kiosk for good: refused on every call; its id stays taken, so history keeps one meaning."""
    _change(uow, ctx, kiosk_id, "kiosk_remove", actor, removed_at=_NOW, cert_sha256=None)


def register_certificate(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, certificate: bytes, *, actor: str) -> str:
    """Accept this certificate (and only it) for the kiosk; returns its SHA-256. Replaces any earlier one."""
    fingerprint = certificate_sha256(certificate)
    cert = x509.load_pem_x509_certificate(certificate) if b"-----BEGIN" in certificate else None
    if cert is not None:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        if kiosk_id not in names:
            raise InvalidRequestError(f"the certificate's CN is {names}, not the kiosk id {kiosk_id}")
    _change(uow, ctx, kiosk_id, "kiosk_certificate", actor, cert_sha256=fingerprint)
    return fingerprint


def revoke_certificate(uow: UnitOfWork, ctx: ServiceContext, kiosk_id: str, *, actor: str) -> None:
    """Refuse the kiosk's certificate from the next call on, until a new one is registered."""
    _change(uow, ctx, kiosk_id, "kiosk_certificate_revoke", actor, cert_sha256=None)
