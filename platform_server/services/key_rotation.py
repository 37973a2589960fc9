"""`keys rotate`: re-encrypt every sealed value under a new data key, resumable, nothing readable lost.

What the data key protects: sealed pages of ID and phone numbers, per-expert blobs from before pages,
bank cards (on file and per check-in, bound to the expert's ID hash), signatures, reference photos and
face encodings, stored kiosk answers, and the audit chain key. The lookup hashes of ID and card numbers
are keyed by it too, so they are recomputed (and the card blobs re-bound to the new ID hash).

Work goes in chunks of experts, each its own transaction. Every value says by itself which key it is
under (SM4-GCM only authenticates with the right one), and an expert's ID hash says whether it was
moved (it equals the old or the new key's hash of the ID number): so an interrupted rotation is simply
run again with the same new key and carries on; nothing depends on a progress counter. The database
names the rotation's target (platform_keys.rotating_to) and refuses every other start until it is done.

Not carried over: the ID hashes in audit entries stay those of their time (the audit log is never
rewritten; the rotation's own audit entry names both key fingerprints), and kiosk retries of calls
made before the rotation whose content hash was keyed are refused as a reused request id (finish the
kiosks' queues first). Identification tokens signed with the old key expire as usual (10 minutes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from personal_data.crypto import DataKey, DecryptionError, decrypt, encrypt, lookup_hash, open_records, seal_records
from platform_server.db.models import (
    CheckIn,
    Expert,
    ExtraReferencePhoto,
    Invitation,
    Kiosk,
    KioskRequest,
    PiiPage,
    PlatformKeys,
    ReferencePhoto,
)
from platform_server.errors import ConfigError
from platform_server.services import audit, keyring
from platform_server.services.roster import pii_fields
from platform_server.services.spreadsheets import PII_PAGE_AAD

if TYPE_CHECKING:
    from collections.abc import Callable

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

CHUNK = 256
LIVE_WINDOW = dt.timedelta(minutes=2)  # kiosks heartbeat every few seconds while `serve` runs
_EXPERTS = sa.Table("experts", Expert.metadata)  # the mapped table (Core, so executemany needs no ORM sync)
_UPDATE_EXPERT = (
    sa.update(_EXPERTS)
    .where(_EXPERTS.c.id == sa.bindparam("eid"))
    .values(
        id_hash=sa.bindparam("id_hash"),
        pii_encrypted=sa.bindparam("pii_encrypted"),
        bank_card_encrypted=sa.bindparam("bank_card_encrypted"),
        bank_card_hash=sa.bindparam("bank_card_hash"),
    )
)
_CHECK_INS = sa.Table("check_ins", CheckIn.metadata)
_UPDATE_CHECK_IN = (
    sa.update(_CHECK_INS)
    .where(_CHECK_INS.c.id == sa.bindparam("ci"))
    .values(bank_card_encrypted=sa.bindparam("card"), signature_encrypted=sa.bindparam("signature"))
)


@dataclasses.dataclass
class RotationReport:
    """Values moved to the new key in this run (values already under it are not counted)."""

    experts: int = 0
    pages: int = 0
    cards: int = 0
    check_ins: int = 0
    photos: int = 0
    answers: int = 0
    resumed: bool = False
    seconds: float = 0.0


def _rekey(old: DataKey, new: DataKey, blob: bytes, old_aad: bytes, new_aad: bytes) -> bytes | None:
    """The blob sealed under the new key, or None if it already is."""
    try:
        decrypt(new, blob, new_aad)
    except DecryptionError:
        return encrypt(new, decrypt(old, blob, old_aad), new_aad)
    return None


def begin(uow: UnitOfWork, old: DataKey, new: DataKey, *, now: dt.datetime, force: bool = False) -> bool:
    """Name the new key as the rotation's target; True when resuming an interrupted rotation.

    Refused while kiosks are heartbeating (a running `serve` would go on writing under the old key,
    which nothing could read after the rotation), unless `force`.
    """
    old_fp, new_fp = keyring.fingerprint(old), keyring.fingerprint(new)
    if old_fp == new_fp:
        raise ConfigError("the new data key is the same as the current one")
    with uow:
        live = uow.execute(
            sa.select(Kiosk.kiosk_id, Kiosk.last_heartbeat_at)
            .where(Kiosk.last_heartbeat_at > now - LIVE_WINDOW)
            .order_by(Kiosk.last_heartbeat_at.desc())
            .limit(1)
        ).first()
    if live is not None and not force:
        seconds = int((now - live[1]).total_seconds())
        raise ConfigError(
            f"the platform looks live (kiosk {live[0]} heartbeat {seconds} s ago): stop `serve` before rotating "
            "(or --force if it is stopped)"
        )
    with uow:
        fingerprint, target = uow.execute(
            sa.select(PlatformKeys.fingerprint, PlatformKeys.rotating_to).where(PlatformKeys.id == 1)
        ).one()
        if fingerprint != old_fp:
            raise ConfigError(f"the configured (old) key {old_fp} is not this database's key {fingerprint}")
        if target is not None and target != new_fp:
            raise ConfigError(
                f"an interrupted rotation to key {target} must be finished first: give that key as the new key"
            )
        uow.execute(sa.update(PlatformKeys).where(PlatformKeys.id == 1).values(rotating_to=new_fp))
        uow.commit()
    return target is not None


def rotate(
    uow: UnitOfWork,
    ctx: ServiceContext,
    new: DataKey,
    *,
    actor: str,
    on_chunk: Callable[[str, int], None] | None = None,
    force: bool = False,
) -> RotationReport:
    """Move everything to `new` (ctx.data_key is the old key); see the module docstring."""
    started = time.perf_counter()
    old = ctx.data_key
    report = RotationReport(resumed=begin(uow, old, new, now=ctx.clock(), force=force))
    tick = on_chunk or (lambda _what, _n: None)
    last = 0
    while True:
        with uow:
            ids = list(
                uow.execute(sa.select(Expert.id).where(Expert.id > last).order_by(Expert.id).limit(CHUNK)).scalars()
            )
            if not ids:
                break
            _experts(uow, old, new, ids, report)
            uow.commit()
        last = ids[-1]
        tick("experts", len(ids))
    _simple(uow, old, new, report, tick)
    _finish(uow, ctx, old, new, report, actor)
    report.seconds = time.perf_counter() - started
    return report


def _open_page(old: DataKey, new: DataKey, sealed: bytes) -> tuple[list[bytes], bool]:
    """A page's records and whether they are still under the old key."""
    try:
        return open_records(new, sealed, PII_PAGE_AAD), False
    except DecryptionError:
        return open_records(old, sealed, PII_PAGE_AAD), True


def _experts(uow: UnitOfWork, old: DataKey, new: DataKey, ids: list[int], report: RotationReport) -> None:  # noqa: C901
    """One chunk: pages, experts' hashes and blobs, their check-ins' cards and signatures."""
    experts = uow.execute(
        sa.select(
            Expert.id,
            Expert.id_hash,
            Expert.pii_page_id,
            Expert.pii_slot,
            Expert.pii_encrypted,
            Expert.bank_card_encrypted,
            Expert.bank_card_hash,
        ).where(Expert.id.in_(ids))
    ).all()
    moved_experts: list[dict[str, object]] = []
    moved_check_ins: list[dict[str, object]] = []
    check_ins: dict[int, list[tuple[int, str, bytes, bytes]]] = {}
    for row in uow.execute(
        sa.select(
            Invitation.expert_id,
            CheckIn.id,
            CheckIn.public_id,
            CheckIn.bank_card_encrypted,
            CheckIn.signature_encrypted,
        )
        .join(Invitation, Invitation.id == CheckIn.invitation_id)
        .where(Invitation.expert_id.in_(ids))
    ).all():
        check_ins.setdefault(int(row[0]), []).append((int(row[1]), str(row[2]), row[3], row[4]))
    pages: dict[int, list[bytes]] = {}
    for page_id in sorted({int(e.pii_page_id) for e in experts if e.pii_page_id is not None}):
        sealed = uow.execute(sa.select(PiiPage.sealed).where(PiiPage.id == page_id)).scalar_one()
        records, stale = _open_page(old, new, sealed)
        pages[page_id] = records
        if stale:
            uow.execute(
                sa.update(PiiPage).where(PiiPage.id == page_id).values(sealed=seal_records(new, records, PII_PAGE_AAD))
            )
            report.pages += 1
    for e in experts:
        old_hash = str(e.id_hash)
        new_hash, values = _new_hash(e, pages, old, new)
        # Blobs bound to the ID hash were sealed with the old hash if the expert has not moved yet.
        bound_old = old_hash.encode()
        if e.bank_card_encrypted is not None:
            try:
                decrypt(new, e.bank_card_encrypted, new_hash.encode())
            except DecryptionError:
                pan = decrypt(old, e.bank_card_encrypted, bound_old)
                values["bank_card_encrypted"] = encrypt(new, pan, new_hash.encode())
                values["bank_card_hash"] = lookup_hash(new, pan.decode())
                report.cards += 1
        for ci_id, public_id, card, signature in check_ins.get(int(e.id), []):
            new_card = _rekey(old, new, card, bound_old, new_hash.encode())
            new_signature = _rekey(old, new, signature, public_id.encode(), public_id.encode())
            changes = {
                k: v for k, v in (("bank_card_encrypted", new_card), ("signature_encrypted", new_signature)) if v
            }
            if changes:
                moved_check_ins.append({"ci": ci_id, "card": new_card or card, "signature": new_signature or signature})
        if new_hash != old_hash:
            values["id_hash"] = new_hash
        if values:
            current = {
                "id_hash": old_hash,
                "pii_encrypted": e.pii_encrypted,
                "bank_card_encrypted": e.bank_card_encrypted,
                "bank_card_hash": e.bank_card_hash,
            }
            moved_experts.append({"eid": e.id, **current, **values})
    # One statement each, many rows: per-row statements took most of the rotation's time.
    if moved_experts:
        uow.execute(_UPDATE_EXPERT, moved_experts)
    if moved_check_ins:
        uow.execute(_UPDATE_CHECK_IN, moved_check_ins)
    report.experts += len(moved_experts)
    report.check_ins += len(moved_check_ins)


def _new_hash(
    e: sa.Row[Any], pages: dict[int, list[bytes]], old: DataKey, new: DataKey
) -> tuple[str, dict[str, object]]:
    """The expert's ID hash under the new key (the current one if moved already) and a re-sealed pre-page blob."""
    old_hash = str(e.id_hash)
    if e.pii_page_id is not None and e.pii_slot is not None:
        records = pages[int(e.pii_page_id)]
        id_value = pii_fields(records[e.pii_slot].decode())[0] if e.pii_slot < len(records) else ""
        new_hash = lookup_hash(new, id_value) if id_value else old_hash
        if id_value and old_hash not in {new_hash, lookup_hash(old, id_value)}:
            raise DecryptionError(f"expert {e.id}: the sealed record does not belong to it")
        return new_hash, {}
    if e.pii_encrypted is None:
        return old_hash, {}  # no ID number kept: nothing to re-hash
    try:
        decrypt(new, e.pii_encrypted, old_hash.encode())
    except DecryptionError:
        plain = decrypt(old, e.pii_encrypted, old_hash.encode())
        id_value = pii_fields(plain.decode())[0]
        new_hash = lookup_hash(new, id_value) if id_value else old_hash
        return new_hash, {"pii_encrypted": encrypt(new, plain, new_hash.encode())}
    return old_hash, {}  # moved already (blob and hash change in one transaction)


def _photos(  # noqa: PLR0917
    uow: UnitOfWork,
    old: DataKey,
    new: DataKey,
    table: type[ReferencePhoto | ExtraReferencePhoto],
    report: RotationReport,
    tick: Callable[[str, int], None],
) -> None:
    """One table of reference photos and their encodings, moved to the new key chunk by chunk."""
    last = 0
    while True:
        with uow:
            rows = uow.execute(
                sa.select(table.id, table.image_encrypted, table.encoding_encrypted)
                .where(table.id > last)
                .order_by(table.id)
                .limit(CHUNK // 4)
            ).all()
            if not rows:
                break
            for photo_id, image, encoding in rows:
                new_image = _rekey(old, new, image, b"reference-photo", b"reference-photo")
                new_encoding = _rekey(old, new, encoding, b"face-encoding", b"face-encoding")
                if new_image or new_encoding:
                    uow.execute(
                        sa.update(table)
                        .where(table.id == photo_id)
                        .values(image_encrypted=new_image or image, encoding_encrypted=new_encoding or encoding)
                    )
                    report.photos += 1
            uow.commit()
        last = rows[-1][0]
        tick("photos", len(rows))


def _simple(
    uow: UnitOfWork, old: DataKey, new: DataKey, report: RotationReport, tick: Callable[[str, int], None]
) -> None:
    """Photos (first and further ones), face encodings and stored kiosk answers: fixed bindings, chunk by chunk."""
    for table in (ReferencePhoto, ExtraReferencePhoto):
        _photos(uow, old, new, table, report, tick)
    after: tuple[str, str] = ("", "")
    while True:
        with uow:
            answers = uow.execute(
                sa.select(KioskRequest.kiosk_id, KioskRequest.request_id, KioskRequest.response_encrypted)
                .where(sa.tuple_(KioskRequest.kiosk_id, KioskRequest.request_id) > sa.tuple_(*after))
                .order_by(KioskRequest.kiosk_id, KioskRequest.request_id)
                .limit(CHUNK * 4)
            ).all()
            if not answers:
                break
            for kiosk_id, request_id, blob in answers:
                aad = f"{kiosk_id}/{request_id}".encode()
                moved = _rekey(old, new, blob, aad, aad)
                if moved:
                    uow.execute(
                        sa.update(KioskRequest)
                        .where(KioskRequest.kiosk_id == kiosk_id, KioskRequest.request_id == request_id)
                        .values(response_encrypted=moved)
                    )
                    report.answers += 1
            uow.commit()
        after = (answers[-1][0], answers[-1][1])
        tick("answers", len(answers))


def _finish(  # noqa: PLR0917
    uow: UnitOfWork, ctx: ServiceContext, old: DataKey, new: DataKey, report: RotationReport, actor: str
) -> None:
    """Re-seal the audit key, switch the fingerprint and end the rotation, in one transaction."""
    with uow:
        sealed = uow.execute(sa.select(PlatformKeys.audit_key_encrypted).where(PlatformKeys.id == 1)).scalar_one()
        audit_key = decrypt(old, sealed, keyring.AUDIT_KEY_AAD)
        now = ctx.clock()
        uow.execute(
            sa.update(PlatformKeys)
            .where(PlatformKeys.id == 1)
            .values(
                fingerprint=keyring.fingerprint(new),
                audit_key_encrypted=encrypt(new, audit_key, keyring.AUDIT_KEY_AAD),
                rotating_to=None,
                rotated_at=now,
            )
        )
        audit.record(
            uow,
            at=now,
            actor=actor,
            action="key_rotate",
            outcome="rotated",
            detail={
                "from": keyring.fingerprint(old),
                "to": keyring.fingerprint(new),
                "resumed": report.resumed,
                **{k: v for k, v in dataclasses.asdict(report).items() if isinstance(v, int) and k != "resumed"},
            },
        )
        uow.commit()
