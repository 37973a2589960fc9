"""SQLAlchemy 2.0 typed models of the platform's data (the Alembic migrations produce this schema).

Personal data rules: ID numbers, phone numbers and bank card numbers are stored only as SM4-GCM
ciphertext plus a keyed lookup hash and a masked form; photos, face encodings and signatures only as
ciphertext. Active check-ins hold a room and a band through partial unique indexes, which is what keeps
two kiosks from ever getting the same room or band on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Partial-index condition for "this check-in still holds its room and band".
ACTIVE_CHECK_IN = sa.text("annulled_at IS NULL")
ROOM_FREE = sa.text("occupied_by IS NULL")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no zone, so store naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        """Refuse naive datetimes (a zone bug waiting to happen) and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:  # noqa: ARG002
        """Give back aware UTC whatever the database returned."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(so.DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {dt.datetime: UtcDateTime()}  # noqa: RUF012


class Hotel(Base):
    """A hotel whose rooms are given to experts; `code` is the short ASCII code written to bands."""

    __tablename__ = "hotels"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    code: so.Mapped[str] = so.mapped_column(sa.String(8), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    address: so.Mapped[str] = so.mapped_column(sa.String(400), default="")


class Batch(Base):
    """An evaluation batch (评标批次): who is invited, where they evaluate, where they sleep."""

    __tablename__ = "batches"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    code: so.Mapped[str] = so.mapped_column(sa.String(16), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    venue: so.Mapped[str] = so.mapped_column(sa.String(400), default="")
    hotel_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("hotels.id"), index=True)
    evaluation_start: so.Mapped[dt.datetime]
    evaluation_end: so.Mapped[dt.datetime]
    check_in_opens: so.Mapped[dt.datetime]
    closed: so.Mapped[bool] = so.mapped_column(default=False)
    allow_id_only: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[dt.datetime]

    hotel: so.Mapped[Hotel] = so.relationship(lazy="joined")


class PiiPage(Base):
    """A sealed page of experts' personal numbers: SM4-GCM over up to 256 records (ID and phone each).

    Each record is checked on reading against its expert's keyed hash, so a page cannot be swapped
    for another undetected. A record whose expert moved to a newer page is blanked (the page is
    re-sealed), so no stale copy of a personal number outlives its replacement.
    """

    __tablename__ = "pii_pages"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    sealed: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    records: so.Mapped[int]
    created_at: so.Mapped[dt.datetime]


class Expert(Base):
    """A person who may be invited to batches; identity and card kept as ciphertext plus lookup hash."""

    __tablename__ = "experts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    id_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    id_masked: so.Mapped[str] = so.mapped_column(sa.String(18))
    # ID and phone live in a sealed page (pii_page_id, pii_slot): one SM4-GCM envelope per 256 experts of
    # an import. Rows written before pages existed keep their own blob (pii_encrypted, bound to id_hash).
    pii_page_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("pii_pages.id"))
    pii_slot: so.Mapped[int | None]
    pii_encrypted: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    name: so.Mapped[str] = so.mapped_column(sa.String(100))
    organisation: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    specialty: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    bank_card_encrypted: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    bank_card_hash: so.Mapped[str | None] = so.mapped_column(sa.String(64), index=True)
    bank_card_masked: so.Mapped[str | None] = so.mapped_column(sa.String(19))
    bank_name: so.Mapped[str | None] = so.mapped_column(sa.String(100))
    created_at: so.Mapped[dt.datetime]


class ReferencePhoto(Base):
    """The expert's reference photo and its face encoding, both encrypted; one per expert."""

    __tablename__ = "reference_photos"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    expert_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("experts.id"), unique=True)
    # The encoding before the photo: on SQLite a row's columns are stored in this order, and reading
    # a column behind a photo of a few hundred KB walks its overflow pages (migration 0110).
    encoding_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    image_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    image_sha256: so.Mapped[str] = so.mapped_column(sa.String(64))
    updated_at: so.Mapped[dt.datetime]


class ExtraReferencePhoto(Base):
    """An expert's further reference photos (2nd, 3rd, ...) and their encodings, both encrypted.

    The first photo stays in reference_photos; identify compares the captures with all of them.
    """

    __tablename__ = "extra_reference_photos"
    __table_args__ = (
        sa.UniqueConstraint("expert_id", "position", name="uq_extra_reference_photos_expert_id_position"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    expert_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("experts.id"), index=True)
    position: so.Mapped[int]  # 2, 3, ...: the n of ID_n.jpg
    # The encoding before the photo: on SQLite a row's columns are stored in this order, and reading
    # a column behind a photo of a few hundred KB walks its overflow pages (migration 0110).
    encoding_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    image_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    image_sha256: so.Mapped[str] = so.mapped_column(sa.String(64))
    updated_at: so.Mapped[dt.datetime]


class Room(Base):
    """A hotel room in a batch's pool, optionally pre-assigned to one invitation."""

    __tablename__ = "rooms"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "number", name="uq_rooms_batch_id_number"),
        # The free rooms in assignment order (services.check_in._free_room): the lowest free is the first.
        sa.Index(
            "ix_rooms_free",
            "batch_id",
            sa.text("length(number)"),
            "number",
            sqlite_where=ROOM_FREE,
            postgresql_where=ROOM_FREE,
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    batch_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("batches.id"))
    hotel_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("hotels.id"), index=True)
    number: so.Mapped[str] = so.mapped_column(sa.String(16))
    # The active check-in holding the room (no foreign key: check_ins refers to rooms). Kept with every
    # check-in and annulment for the index above; the unique index of active check-ins stays the rule.
    occupied_by: so.Mapped[int | None]


class Invitation(Base):
    """An expert invited to a batch; counts face mismatches (three, then staff must confirm)."""

    __tablename__ = "invitations"
    __table_args__ = (sa.UniqueConstraint("batch_id", "expert_id", name="uq_invitations_batch_id_expert_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    batch_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("batches.id"))
    expert_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("experts.id"), index=True)
    room_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("rooms.id"), unique=True)
    face_failures: so.Mapped[int] = so.mapped_column(default=0)
    created_at: so.Mapped[dt.datetime]
    # The kiosk whose attempt used up the face attempts, and when (cleared by a staff reset).
    face_locked_by: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    face_locked_at: so.Mapped[dt.datetime | None]


class Wristband(Base):
    """An RFID/UWB wristband in the inventory: in_stock, bound, retired or lost."""

    __tablename__ = "wristbands"
    __table_args__ = (sa.CheckConstraint("state IN ('in_stock', 'bound', 'retired', 'lost')", name="state"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    rfid_uid: so.Mapped[str] = so.mapped_column(sa.String(20), unique=True)
    uwb_tag_id: so.Mapped[str] = so.mapped_column(sa.String(4), unique=True)
    state: so.Mapped[str] = so.mapped_column(sa.String(10), default="in_stock", index=True)
    updated_at: so.Mapped[dt.datetime]


class Kiosk(Base):
    """A registered kiosk (kiosk_id = its TLS certificate CN) and its last reported health."""

    __tablename__ = "kiosks"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    kiosk_id: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    location: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    batch_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("batches.id"), index=True)
    last_heartbeat_at: so.Mapped[dt.datetime | None]
    devices_json: so.Mapped[str] = so.mapped_column(sa.Text, default="[]")
    band_stock: so.Mapped[int | None]
    pending_check_ins: so.Mapped[int | None]
    out_of_service: so.Mapped[bool] = so.mapped_column(default=False)
    software_version: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    #: The receipt printer's paper as the last heartbeat said: ok, near_end, out, or "" (no printer / unknown).
    printer_paper: so.Mapped[str] = so.mapped_column(sa.String(10), default="", server_default="")
    # Revocation (services.kiosk_gate): a disabled or removed kiosk is refused on every call; with client
    # certificates on, only the certificate whose SHA-256 is registered here is accepted.
    disabled_at: so.Mapped[dt.datetime | None]
    disabled_reason: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    removed_at: so.Mapped[dt.datetime | None]
    cert_sha256: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    # Refusals in a row (unknown IDs, face mismatches): past a threshold the kiosk is slowed down.
    refusal_streak: so.Mapped[int] = so.mapped_column(default=0)
    throttled_until: so.Mapped[dt.datetime | None]


class CheckIn(Base):
    """A check-in: band, room, card, signature and face score; annulled ones release room and band."""

    __tablename__ = "check_ins"
    __table_args__ = (
        sa.Index(
            "uq_check_ins_active_room",
            "room_id",
            unique=True,
            sqlite_where=ACTIVE_CHECK_IN,
            postgresql_where=ACTIVE_CHECK_IN,
        ),
        sa.Index(
            "uq_check_ins_active_band",
            "wristband_id",
            unique=True,
            sqlite_where=ACTIVE_CHECK_IN,
            postgresql_where=ACTIVE_CHECK_IN,
        ),
        sa.Index(
            "uq_check_ins_active_invitation",
            "invitation_id",
            unique=True,
            sqlite_where=ACTIVE_CHECK_IN,
            postgresql_where=ACTIVE_CHECK_IN,
        ),
        # A kiosk's next slip number is max+1 over its own check-ins: indexed, and never given twice.
        sa.Index("uq_check_ins_kiosk_slip_serial", "kiosk_id", "slip_serial", unique=True),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    public_id: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    batch_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("batches.id"), index=True)
    # Indexed for "the invitation's newest check-in" (identify, token check); the partial unique index
    # over active check-ins cannot answer that.
    invitation_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("invitations.id"), index=True)
    kiosk_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    room_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("rooms.id"))
    wristband_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("wristbands.id"))
    bank_card_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    bank_card_masked: so.Mapped[str] = so.mapped_column(sa.String(19))
    bank_card_source: so.Mapped[str] = so.mapped_column(sa.String(12))
    signature_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    face_distance: so.Mapped[float | None]
    face_threshold: so.Mapped[float | None]
    checked_in_at: so.Mapped[dt.datetime]
    annulled_at: so.Mapped[dt.datetime | None]
    annul_reason: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    needs_staff: so.Mapped[bool] = so.mapped_column(default=False)
    #: The printed slip's verification code (its QR code): random, no personal data; NULL before migration 0040.
    slip_code: so.Mapped[str | None] = so.mapped_column(sa.String(12), unique=True)
    #: The kiosk's running number of this check-in, printed on the slip beside the kiosk id.
    slip_serial: so.Mapped[int | None]


class UwbDelivery(Base):
    """Outbox row: a room assignment (or a clear) the UWB worker must write to a band."""

    __tablename__ = "uwb_deliveries"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('assign', 'clear')", name="kind"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed', 'superseded')", name="state"),
        sa.Index("ix_uwb_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        # "A newer row for this tag?" before each send (services.uwb): one index range, not a scan.
        sa.Index("ix_uwb_deliveries_tag_id_id", "tag_id", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    check_in_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("check_ins.id"), index=True)
    tag_id: so.Mapped[str] = so.mapped_column(sa.String(4))
    kind: so.Mapped[str] = so.mapped_column(sa.String(8))
    batch_code: so.Mapped[str] = so.mapped_column(sa.String(16))
    hotel_code: so.Mapped[str] = so.mapped_column(sa.String(8))
    room_number: so.Mapped[str] = so.mapped_column(sa.String(16))
    state: so.Mapped[str] = so.mapped_column(sa.String(12), default="pending")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    next_attempt_at: so.Mapped[dt.datetime]
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(400))
    created_at: so.Mapped[dt.datetime]
    delivered_at: so.Mapped[dt.datetime | None]


class KioskRequest(Base):
    """Idempotency record: the first answer to (kiosk, request id), encrypted, replayed on retries."""

    __tablename__ = "requests"
    __table_args__ = (sa.PrimaryKeyConstraint("kiosk_id", "request_id", name="pk_requests"),)

    kiosk_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    request_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    method: so.Mapped[str] = so.mapped_column(sa.String(32))
    payload_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    response_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    created_at: so.Mapped[dt.datetime]


class CheckInEvent(Base):
    """Organiser-facing event stream (checked in, annulled, refused, UWB delivered, needs staff)."""

    __tablename__ = "check_in_events"
    __table_args__ = (sa.Index("ix_check_in_events_batch_id_id", "batch_id", "id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    batch_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("batches.id"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    kiosk_id: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    check_in_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("check_ins.id"))
    refusal_reason: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    occurred_at: so.Mapped[dt.datetime]
    needs_staff_case_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("needs_staff_cases.id"))


class AuditEntry(Base):
    """Append-only audit log: every step and failure, with masked ID / keyed hash only.

    No code path updates or deletes rows; database triggers refuse it on both engines.
    """

    __tablename__ = "audit_log"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    occurred_at: so.Mapped[dt.datetime] = so.mapped_column(index=True)
    kiosk_time: so.Mapped[dt.datetime | None]
    actor: so.Mapped[str] = so.mapped_column(sa.String(64))  # kiosk id, "organiser", "cli", "uwb"
    action: so.Mapped[str] = so.mapped_column(sa.String(40))
    outcome: so.Mapped[str] = so.mapped_column(sa.String(40))
    batch_code: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    id_hash: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    id_masked: so.Mapped[str | None] = so.mapped_column(sa.String(18))
    check_in_public_id: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    detail: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    # Place in the hash chain and HMAC over the previous entry's mac and this entry (services.audit_chain).
    seq: so.Mapped[int | None] = so.mapped_column(sa.BigInteger, unique=True, index=True)
    mac: so.Mapped[str | None] = so.mapped_column(sa.String(64))


class AuditChain(Base):
    """The audit chain's tip (one row): last seq and mac, authenticated by tip_mac so it cannot be rolled back."""

    __tablename__ = "audit_chain"

    id: so.Mapped[int] = so.mapped_column(primary_key=True, autoincrement=False)
    seq: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    mac: so.Mapped[str] = so.mapped_column(sa.String(64))
    tip_mac: so.Mapped[str] = so.mapped_column(sa.String(64))


class PlatformKeys(Base):
    """One row: the data key's fingerprint, the audit chain key sealed under it, a rotation in progress."""

    __tablename__ = "platform_keys"

    id: so.Mapped[int] = so.mapped_column(primary_key=True, autoincrement=False)
    fingerprint: so.Mapped[str] = so.mapped_column(sa.String(32))
    audit_key_encrypted: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    rotating_to: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    created_at: so.Mapped[dt.datetime]
    rotated_at: so.Mapped[dt.datetime | None]


class Account(Base):
    """An organiser person: role, scrypt password hash (optional), disabled flag (services.accounts)."""

    __tablename__ = "accounts"
    __table_args__ = (sa.CheckConstraint("role IN ('viewer', 'organiser', 'finance', 'admin')", name="role"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    display_name: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    role: so.Mapped[str] = so.mapped_column(sa.String(16))
    password_hash: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    disabled: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[dt.datetime]
    updated_at: so.Mapped[dt.datetime]


class AccountToken(Base):
    """A person's API or session token, stored only as its SHA-256 (tokens are 256-bit random)."""

    __tablename__ = "account_tokens"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("accounts.id"), index=True)
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    label: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    created_at: so.Mapped[dt.datetime]
    expires_at: so.Mapped[dt.datetime | None]
    revoked_at: so.Mapped[dt.datetime | None]


class NeedsStaffCase(Base):
    """Something a person must look at: a band whose check-in cannot be honoured, a kiosk under attack, ...

    Open until staff resolve it with a reason; `dedupe_key` keeps a retried signal from opening a second
    case. Personal data is not copied here: `invitation_id` leads to the expert, shown masked.
    """

    __tablename__ = "needs_staff_cases"
    __table_args__ = (
        sa.CheckConstraint("state IN ('open', 'resolved')", name="state"),
        sa.Index("ix_needs_staff_cases_state_id", "state", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    public_id: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(40))
    state: so.Mapped[str] = so.mapped_column(sa.String(10), default="open")
    batch_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("batches.id"), index=True)
    kiosk_id: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    invitation_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("invitations.id"))
    check_in_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("check_ins.id"))
    band_uid: so.Mapped[str] = so.mapped_column(sa.String(20), default="")
    reason: so.Mapped[str] = so.mapped_column(sa.String(40), default="")
    detail: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    dedupe_key: so.Mapped[str | None] = so.mapped_column(sa.String(160), unique=True)
    created_at: so.Mapped[dt.datetime]
    created_by: so.Mapped[str] = so.mapped_column(sa.String(64))
    resolved_at: so.Mapped[dt.datetime | None]
    resolved_by: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    resolution: so.Mapped[str | None] = so.mapped_column(sa.Text)


class Alert(Base):
    """An operations alert (kiosk offline, stock low, paper out): open until its cause recovers.

    `open_key` is "rule:subject" while open and NULL once resolved: the unique constraint lets only one
    replica open the same alert (NULLs do not collide), so several console replicas can evaluate rules.
    """

    __tablename__ = "alerts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    rule: so.Mapped[str] = so.mapped_column(sa.String(32))
    subject: so.Mapped[str] = so.mapped_column(sa.String(64))
    open_key: so.Mapped[str | None] = so.mapped_column(sa.String(100), unique=True)
    detail: so.Mapped[str] = so.mapped_column(sa.String(500), default="")
    opened_at: so.Mapped[dt.datetime]
    resolved_at: so.Mapped[dt.datetime | None]
    acknowledged_at: so.Mapped[dt.datetime | None]
    acknowledged_by: so.Mapped[str | None] = so.mapped_column(sa.String(64))


class AlertCause(Base):
    """A rule's cause seen but not yet held for the rule's duration: when it was first seen.

    Deleted when the cause goes away; the alert opens once `first_seen_at` is old enough. In the
    database (not in a console's memory) so replicas and restarts agree on how long a cause has lasted.
    """

    __tablename__ = "alert_causes"

    open_key: so.Mapped[str] = so.mapped_column(sa.String(100), primary_key=True)
    first_seen_at: so.Mapped[dt.datetime]
