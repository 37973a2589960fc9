"""A database with many experts, cards on file, check-ins, photos and kiosk answers, and a reader that
opens every sealed value with one key: for key rotation tests and bench/key_rotation.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from personal_data.crypto import decrypt, decrypt_text, encrypt, encrypt_text, lookup_hash
from platform_server.db.models import (
    CheckIn,
    Expert,
    Invitation,
    KioskRequest,
    PlatformKeys,
    ReferencePhoto,
    Room,
    Wristband,
)
from platform_server.services import keyring, roster
from tests.unit.platform_server.support import luhn_pan, seed, signature_png

if TYPE_CHECKING:
    from personal_data.crypto import DataKey
    from tests.unit.platform_server.support import Seeded

AT = dt.datetime(2025, 6, 1, 1, 0, tzinfo=dt.UTC)


def filled(url: str, experts: int) -> Seeded:
    """Seed `experts` invited experts, each with a card on file and a check-in; a few photos and answers."""
    s = seed(url, experts=experts, rooms=experts, bands=experts, kiosk_ids=["K1"])
    key = s.ctx.data_key
    png = signature_png()
    with s.uow.engine.begin() as c:
        people = c.execute(
            sa.select(Expert.id, Expert.id_hash, Invitation.id).join(Invitation, Invitation.expert_id == Expert.id)
        ).all()
        rooms = list(c.execute(sa.select(Room.id).order_by(Room.id)).scalars())
        bands = list(c.execute(sa.select(Wristband.id).order_by(Wristband.id)).scalars())
        batch_id = c.exec_driver_sql("SELECT id FROM batches").scalar_one()
        check_ins, cards = [], []
        for n, (expert_id, id_hash, invitation_id) in enumerate(people):
            pan = luhn_pan(n=n)
            blob = encrypt_text(key, pan, associated=id_hash)
            cards.append(
                {"eid": expert_id, "blob": blob, "hash": lookup_hash(key, pan), "masked": pan[:6] + "******" + pan[-4:]}
            )
            public_id = f"ci_{n:016x}"
            check_ins.append(
                {
                    "public_id": public_id,
                    "batch_id": batch_id,
                    "invitation_id": invitation_id,
                    "kiosk_id": "K1",
                    "room_id": rooms[n],
                    "wristband_id": bands[n],
                    "bank_card_encrypted": blob,
                    "bank_card_masked": cards[-1]["masked"],
                    "bank_card_source": "CHIP",
                    "signature_encrypted": encrypt(key, png, associated=public_id.encode()),
                    "checked_in_at": AT,
                    "needs_staff": False,
                }
            )
        c.execute(
            sa.update(Expert)
            .where(Expert.id == sa.bindparam("eid"))
            .values(
                bank_card_encrypted=sa.bindparam("blob"),
                bank_card_hash=sa.bindparam("hash"),
                bank_card_masked=sa.bindparam("masked"),
            ),
            cards,
        )
        c.execute(sa.insert(CheckIn), check_ins)
        c.execute(
            sa.insert(ReferencePhoto),
            [
                {
                    "expert_id": people[i][0],
                    "image_encrypted": encrypt(key, b"JPEG" * 100 + bytes([i % 256]), associated=b"reference-photo"),
                    "encoding_encrypted": encrypt(key, b"ENC" + bytes([i % 256]), associated=b"face-encoding"),
                    "image_sha256": f"{i:064x}",
                    "updated_at": AT,
                }
                for i in range(min(50, len(people)))
            ],
        )
        c.execute(
            sa.insert(KioskRequest),
            [
                {
                    "kiosk_id": "K1",
                    "request_id": f"r{i}",
                    "method": "identify",
                    "payload_hash": "x",
                    "response_encrypted": encrypt_text(key, '{"n": %d}' % i, associated=f"K1/r{i}"),  # noqa: UP031
                    "created_at": AT,
                }
                for i in range(50)
            ],
        )
    return s


@dataclass(frozen=True)
class Readable:
    """How many values of each kind opened with the key (and matched their lookup hashes)."""

    experts: int
    cards: int
    check_ins: int
    photos: int
    answers: int


def read_everything(engine: sa.Engine, key: DataKey, ids: list[str]) -> Readable:
    """Open every sealed value with `key`; raise if any does not open or a hash does not match."""
    from platform_server.db.engine import make_session_factory  # noqa: PLC0415
    from platform_server.db.unit_of_work import UnitOfWork  # noqa: PLC0415

    uow = UnitOfWork(make_session_factory(engine))
    with uow:
        experts = uow.execute(
            sa.select(
                Expert.id_hash,
                Expert.pii_page_id,
                Expert.pii_slot,
                Expert.pii_encrypted,
                Expert.bank_card_encrypted,
                Expert.bank_card_hash,
            ).order_by(Expert.id)
        ).all()
        numbers = roster.personal_numbers(uow, key, [roster.StoredPii(e[0], e[1], e[2], e[3]) for e in experts])
        assert sorted(n[0] for n in numbers) == sorted(ids)
        by_hash = {e[0]: e for e in experts}
        assert set(by_hash) == {lookup_hash(key, v) for v in ids}  # every expert is found by its ID number
        cards = 0
        for e in experts:
            if e[4] is not None:
                pan = decrypt_text(key, e[4], associated=e[0])
                assert e[5] == lookup_hash(key, pan)
                cards += 1
        check_ins = 0
        for card, signature, public_id, id_hash in uow.execute(
            sa.select(CheckIn.bank_card_encrypted, CheckIn.signature_encrypted, CheckIn.public_id, Expert.id_hash)
            .join(Invitation, Invitation.id == CheckIn.invitation_id)
            .join(Expert, Expert.id == Invitation.expert_id)
        ).all():
            decrypt_text(key, card, associated=id_hash)
            assert decrypt(key, signature, associated=public_id.encode()).startswith(b"\x89PNG")
            check_ins += 1
        photos = 0
        for image, encoding in uow.execute(
            sa.select(ReferencePhoto.image_encrypted, ReferencePhoto.encoding_encrypted)
        ).all():
            decrypt(key, image, associated=b"reference-photo")
            decrypt(key, encoding, associated=b"face-encoding")
            photos += 1
        answers = 0
        for kiosk_id, request_id, blob in uow.execute(
            sa.select(KioskRequest.kiosk_id, KioskRequest.request_id, KioskRequest.response_encrypted)
        ).all():
            decrypt_text(key, blob, associated=f"{kiosk_id}/{request_id}")
            answers += 1
        sealed = uow.execute(sa.select(PlatformKeys.audit_key_encrypted)).scalar_one()
        decrypt(key, sealed, keyring.AUDIT_KEY_AAD)
    return Readable(len(experts), cards, check_ins, photos, answers)
