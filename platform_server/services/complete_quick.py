"""CompleteCheckIn's common case in one Session-free transaction: fixed SQL text with bound parameters.

The kiosk's busiest write: a live band, a token this platform signed for this kiosk, every rule passed.
Built through SQLAlchemy's ORM it cost about 7 ms of CPU, most of it building, cache-keying and
compiling statements and loading objects; here it is two reads (one joined read of everything the rules
need, then the room: services.room_choice) and the same writes as services.check_in, on a driver connection
(db.unit_of_work.DriverTransaction: BEGIN IMMEDIATE on SQLite, retried on conflicts alike).

Anything else (a refusal, a replayed request id, a band that left the arm) returns None before anything
is written and the caller takes the full path, which decides and records it; so refusals keep one
implementation, and this one only ever writes a completed check-in.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from personal_data import bank_card
from personal_data.crypto import encrypt, encrypt_text
from platform_server.db.unit_of_work import RetryTransactionError, run_driver_transaction, utc_read_set
from platform_server.services import audit, events, idempotency, public_ids, room_choice, slips
from platform_server.services.bank_names import bank_name_for
from platform_server.services.identify import batch_refusal
from platform_server.services.views import CheckInView, UwbState

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import DriverTransaction, UnitOfWork
    from platform_server.services.check_in import CompleteCommand
    from platform_server.services.context import ServiceContext
    from platform_server.services.identification_token import Identification

METHOD = "CompleteCheckIn"  # services.check_in.COMPLETE (that module imports this one)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

# Everything the rules of services.check_in._complete read, in one statement: the kiosk, the token's
# invitation with its batch, expert and the batch's hotel, the invitation's active and newest
# check-ins, the band, the kiosk's newest slip number and any stored answer to this request id.
_LOOKUP = """
    SELECT k.id, i.id, i.room_id,
           b.id, b.code, b.closed, b.check_in_opens, b.evaluation_end, b.venue, b.evaluation_start,
           e.id, e.id_hash, e.id_masked, e.name, e.bank_card_encrypted, e.bank_card_masked, h.code,
           (SELECT min(c.id) FROM check_ins c WHERE c.invitation_id = i.id AND c.annulled_at IS NULL),
           (SELECT max(c.id) FROM check_ins c WHERE c.invitation_id = i.id),
           w.id, w.state, w.rfid_uid, w.uwb_tag_id,
           (SELECT max(c.slip_serial) FROM check_ins c WHERE c.kiosk_id = :kiosk_id),
           q.method
    FROM (SELECT 1 AS one) AS anchor
    LEFT JOIN kiosks k ON k.kiosk_id = :kiosk_id
    LEFT JOIN invitations i ON i.id = :invitation_id
    LEFT JOIN batches b ON b.id = i.batch_id
    LEFT JOIN experts e ON e.id = i.expert_id
    LEFT JOIN hotels h ON h.id = b.hotel_id
    LEFT JOIN wristbands w ON w.rfid_uid = :band_uid
    LEFT JOIN requests q ON q.kiosk_id = :kiosk_id AND q.request_id = :request_id
"""
# Conditional: of two kiosks presenting the same band, exactly one sees a row change.
_BIND_BAND = "UPDATE wristbands SET state = 'bound', updated_at = :now WHERE id = :id AND state = 'in_stock'"
_STORE_CARD = (
    "UPDATE experts SET bank_card_encrypted = :blob, bank_card_hash = :hash, bank_card_masked = :masked,"
    " bank_name = :bank WHERE id = :id"
)
_INSERT_CHECK_IN = (
    "INSERT INTO check_ins (public_id, batch_id, invitation_id, kiosk_id, room_id, wristband_id,"
    " bank_card_encrypted, bank_card_masked, bank_card_source, signature_encrypted, face_distance,"
    " face_threshold, checked_in_at, needs_staff, slip_code, slip_serial)"
    " VALUES (:public_id, :batch_id, :invitation_id, :kiosk_id, :room_id, :wristband_id, :card_blob,"
    " :card_masked, :card_source, :signature, :face_distance, :face_threshold, :now, :needs_staff,"
    " :slip_code, :slip_serial) RETURNING id"
)
_INSERT_DELIVERY = (
    "INSERT INTO uwb_deliveries (check_in_id, tag_id, kind, batch_code, hotel_code, room_number, state,"
    " attempts, next_attempt_at, created_at)"
    " VALUES (:check_in_id, :tag_id, 'assign', :batch_code, :hotel_code, :room_number, 'pending', 0, :now, :now)"
)


def try_complete(  # noqa: PLR0917
    uow: UnitOfWork,
    ctx: ServiceContext,
    cmd: CompleteCommand,
    claims: Identification,
    pan: str,
    card_hash: str,
    uid: str,
    content: str,
) -> CheckInView | None:
    """The completed check-in's view, or None: take the full path.

    The caller has checked what needs no database: a live band, a token signed for this kiosk, a valid
    card (or the card on file), a usable signature and a well-formed band UID.
    """
    return run_driver_transaction(uow, lambda d: _work(d, ctx, cmd, claims, pan, card_hash, uid, content))


def _work(  # noqa: PLR0917
    d: DriverTransaction,
    ctx: ServiceContext,
    cmd: CompleteCommand,
    claims: Identification,
    pan: str,
    card_hash: str,
    uid: str,
    content: str,
) -> CheckInView | None:
    now = ctx.clock().astimezone(dt.UTC)
    row = d.execute(
        _LOOKUP,
        {
            "kiosk_id": cmd.kiosk_id,
            "invitation_id": claims.invitation_id,
            "band_uid": uid,
            "request_id": cmd.request_id,
        },
    ).fetchone()
    if not _passes(row, cmd, claims, now):
        return None  # nothing written: the full path decides (and records) the refusal or replay
    invitation_id, preassigned, batch_id, batch_code = row[1], row[2], row[3], row[4]
    expert_id, id_hash, id_masked, expert_name = row[10], row[11], row[12], row[13]
    band_id, band_uid, tag_id = row[19], row[21], row[22]
    room = room_choice.free_room(
        d.execute, postgres=d.postgres, batch_id=batch_id, invitation_id=invitation_id, preassigned=preassigned
    )
    if room is None:
        return None  # NO_ROOM_LEFT: the full path refuses
    stamp = d.timestamp(now)
    if d.execute(_BIND_BAND, {"now": stamp, "id": band_id}).rowcount != 1:
        raise RetryTransactionError("band bound by a concurrent check-in")
    room_id, room_number, hotel_name, hotel_address = room
    if pan:
        card_blob = encrypt_text(ctx.data_key, pan, associated=id_hash)
        card_masked = bank_card.mask(pan)
        d.execute(
            _STORE_CARD,
            {"blob": card_blob, "hash": card_hash, "masked": card_masked, "bank": bank_name_for(pan), "id": expert_id},
        )
        source = cmd.card_source
    else:
        card_blob, card_masked, source = bytes(row[14]), str(row[15]), "ON_FILE"
    public_id = public_ids.new_public_id("ci_")
    slip_code, slip_serial = slips.new_slip_code(), int(row[23] or 0) + 1
    check_in_pk = int(
        d.execute(
            _INSERT_CHECK_IN,
            {
                "public_id": public_id,
                "batch_id": batch_id,
                "invitation_id": invitation_id,
                "kiosk_id": cmd.kiosk_id,
                "room_id": room_id,
                "wristband_id": band_id,
                "card_blob": card_blob,
                "card_masked": card_masked,
                "card_source": source[:12],
                "signature": encrypt(ctx.data_key, cmd.signature_png, associated=public_id.encode()),
                "face_distance": claims.face_distance,
                "face_threshold": claims.face_threshold,
                "now": stamp,
                "needs_staff": False,
                "slip_code": slip_code,
                "slip_serial": slip_serial,
            },
        ).fetchone()[0]
    )
    room_choice.occupy(d.execute, room_id, check_in_pk)
    d.execute(
        _INSERT_DELIVERY,
        {
            "check_in_id": check_in_pk,
            "tag_id": tag_id,
            "batch_code": batch_code,
            "hotel_code": row[16],
            "room_number": room_number,
            "now": stamp,
        },
    )
    # What check_in_view() would read back: the row just written, its assign write pending.
    view = CheckInView(
        check_in_id=public_id,
        batch_code=batch_code,
        expert_name=expert_name,
        id_number_masked=id_masked,
        kiosk_id=cmd.kiosk_id,
        checked_in_at=now,
        hotel_name=hotel_name,
        hotel_address=hotel_address,
        room_number=room_number,
        band_uid=band_uid,
        uwb_tag_id=tag_id,
        evaluation_venue=row[8],
        evaluation_start=utc_read_set(row[9]),
        uwb_state=UwbState.PENDING,
        annulled=False,
        needs_staff=False,
        annul_until=now + dt.timedelta(seconds=ctx.rules.annul_window_s),
        slip_code=slip_code,
        slip_serial=slip_serial,
    )
    idempotency.store_answer_sql(
        d,
        ctx.data_key,
        kiosk_id=cmd.kiosk_id,
        request_id=cmd.request_id,
        method=METHOD,
        content=content,
        answer={"refusal": None, "check_in": view.to_dict()},  # CompleteResult(None, view).to_dict()
        at=now,
    )
    events.append_sql(  # PostgreSQL: holds the shared event-order lock from here to the commit
        d,
        ctx,
        batch_id=batch_id,
        kind=events.EventKind.CHECKED_IN,
        at=now,
        kiosk_id=cmd.kiosk_id,
        check_in_pk=check_in_pk,
    )
    # The audit entry last, as on every kiosk path (services.audit_chain).
    audit.record_sql(
        d,
        at=now,
        actor=cmd.kiosk_id,
        action="complete_check_in",
        outcome="completed",
        batch_code=batch_code,
        id_hash=id_hash,
        id_masked=id_masked,
        check_in_public_id=public_id,
        detail={
            "room": room_number,
            "band_uid": band_uid,
            "uwb_tag_id": tag_id,
            "card": card_masked,
            "card_source": source,
            "face_distance": claims.face_distance,
        },
    )
    d.commit()
    return view


def _passes(row: Any, cmd: CompleteCommand, claims: Identification, now: dt.datetime) -> bool:  # noqa: PLR0911  (the rules, in order)
    """True when every rule of services.check_in._complete that reads the database lets the check-in through."""
    if row[0] is None or row[1] is None or row[24] is not None:
        return False  # unknown kiosk, unknown invitation, or a retried request id
    if row[3] != claims.batch_id or row[10] != claims.expert_id or claims.kiosk_id != cmd.kiosk_id:
        return False
    if (now - _EPOCH) // _MICROSECOND > claims.expires_at_us:
        return False
    if batch_refusal(bool(row[5]), utc_read_set(row[6]), utc_read_set(row[7]), now) is not None:
        return False
    if row[17] is not None or (row[18] or 0) != claims.last_check_in_id:
        return False  # checked in already, or the token is used up
    if cmd.use_card_on_file and row[14] is None:
        return False
    return row[19] is not None and row[20] == "in_stock"
