"""CompleteCheckIn's Session-free path writes what the full path writes, and steps aside for everything else.

On SQLite and PostgreSQL: the answer equals the check-in read back, the audit chain verifies, the event,
the UWB write, the bound band and the stored card are there; a refusal or a replay leaves nothing behind
from the quick path (the full path then decides, as before).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from personal_data import bank_card
from personal_data.crypto import decrypt, decrypt_text, lookup_hash
from platform_server.db.models import AuditEntry, CheckIn, CheckInEvent, Expert, UwbDelivery, Wristband
from platform_server.services import audit_chain, check_in, complete_quick, identification_token, identify
from platform_server.services.views import check_in_view
from tests.unit.platform_server.support import Seeded, luhn_pan, seed, signature_png

if TYPE_CHECKING:
    from collections.abc import Iterator

SIGNATURE = signature_png()


@pytest.fixture
def seeded(db_url: str) -> Iterator[Seeded]:
    s = seed(db_url, experts=4, rooms=4, bands=6)
    yield s
    s.uow.engine.dispose()


def _token(s: Seeded, n: int, kiosk: str = "K1") -> str:
    result = identify.identify(
        s.new_uow(),
        s.ctx,
        identify.IdentifyCommand(
            request_id=uuid.uuid4().hex, kiosk_id=kiosk, batch_code=s.batch_code, id_number=s.ids[n], valid_to="长期"
        ),
    )
    assert result.verified, result.refusal
    return result.identification_token


def _command(
    token: str, band: str, *, pan: str = "", request_id: str = "", kiosk: str = "K1"
) -> check_in.CompleteCommand:
    return check_in.CompleteCommand(
        request_id=request_id or uuid.uuid4().hex,
        kiosk_id=kiosk,
        identification_token=token,
        use_card_on_file=not pan,
        new_card_pan=pan,
        card_source="CHIP" if pan else "ON_FILE",
        signature_png=SIGNATURE,
        band_uid=band,
    )


def _quick(s: Seeded, cmd: check_in.CompleteCommand) -> object:
    """The quick path alone, as complete_check_in calls it."""
    claims = identification_token.verify(s.ctx.data_key, cmd.identification_token)
    assert claims is not None
    pan = cmd.new_card_pan
    card_hash = lookup_hash(s.ctx.data_key, pan) if pan else ""
    return complete_quick.try_complete(s.new_uow(), s.ctx, cmd, claims, pan, card_hash, cmd.band_uid, "content")


def _count(s: Seeded, table: type) -> int:
    with s.uow.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_completed_check_in_is_written_like_the_full_path(seeded: Seeded) -> None:
    s = seeded
    pan = luhn_pan(n=7)
    cmd = _command(_token(s, 0), s.bands[0][0], pan=pan)
    result = check_in.complete_check_in(s.new_uow(), s.ctx, cmd)
    assert result.refusal is None
    assert result.check_in is not None
    with s.new_uow() as u:
        pk = u.execute(sa.select(CheckIn.id).where(CheckIn.public_id == result.check_in.check_in_id)).scalar_one()
        # The answer is the check-in as it reads back (what the kiosk's replay and the organisers see).
        assert check_in_view(u, pk, s.ctx.rules.annul_window_s) == result.check_in
        row = u.execute(sa.select(CheckIn).where(CheckIn.id == pk)).scalar_one()
        assert decrypt(s.ctx.data_key, row.signature_encrypted, associated=row.public_id.encode()) == SIGNATURE
        expert = u.execute(sa.select(Expert).where(Expert.id_masked == result.check_in.id_number_masked)).scalar_one()
        assert expert.bank_card_encrypted is not None
        assert decrypt_text(s.ctx.data_key, expert.bank_card_encrypted, associated=expert.id_hash) == pan
        assert row.bank_card_masked == expert.bank_card_masked == bank_card.mask(pan)
        band = u.execute(sa.select(Wristband).where(Wristband.rfid_uid == s.bands[0][0])).scalar_one()
        assert band.state == "bound"
        delivery = u.execute(sa.select(UwbDelivery).where(UwbDelivery.check_in_id == pk)).scalar_one()
        assert (delivery.kind, delivery.state, delivery.room_number, delivery.hotel_code) == (
            "assign",
            "pending",
            s.rooms[0],
            "HTL1",
        )
        event = u.execute(sa.select(CheckInEvent).where(CheckInEvent.check_in_id == pk)).scalar_one()
        assert (event.kind, event.kiosk_id) == ("CHECKED_IN", "K1")
        entry = u.execute(
            sa.select(AuditEntry).where(AuditEntry.check_in_public_id == result.check_in.check_in_id)
        ).scalar_one()
        assert (entry.action, entry.outcome, entry.actor) == ("complete_check_in", "completed", "K1")
        assert pan not in entry.detail
    assert audit_chain.verify(s.uow.engine, audit_chain.key_for(s.uow.engine)).ok
    # The stored answer replays the same check-in.
    again = check_in.complete_check_in(s.new_uow(), s.ctx, cmd)
    assert again.replayed
    assert again.check_in == result.check_in


def test_card_on_file_and_slip_numbers(seeded: Seeded) -> None:
    s = seeded
    first = check_in.complete_check_in(s.new_uow(), s.ctx, _command(_token(s, 1), s.bands[1][0], pan=luhn_pan(n=3)))
    assert first.check_in is not None
    annulled = check_in.annul_check_in(
        s.new_uow(),
        s.ctx,
        check_in.AnnulCommand(uuid.uuid4().hex, "K1", first.check_in.check_in_id, "BAND_NOT_TAKEN"),
    )
    assert annulled.refusal is None
    second = _quick(s, _command(_token(s, 1), s.bands[2][0]))  # the card on file this time
    assert second is not None
    assert isinstance(second, type(first.check_in))
    assert second.slip_serial == first.check_in.slip_serial + 1
    assert second.room_number == first.check_in.room_number  # freed by the annulment, lowest again
    with s.uow.engine.connect() as c:
        source, masked = c.execute(
            sa.select(CheckIn.bank_card_source, CheckIn.bank_card_masked).where(CheckIn.public_id == second.check_in_id)
        ).one()
    assert (source, masked) == ("ON_FILE", bank_card.mask(luhn_pan(n=3)))


@pytest.mark.parametrize("case", ["token_used", "band_taken", "replayed_request", "other_kiosk"])
def test_anything_but_a_plain_completion_writes_nothing_and_steps_aside(seeded: Seeded, case: str) -> None:
    s = seeded
    token = _token(s, 2)
    request_id = uuid.uuid4().hex
    done = check_in.complete_check_in(s.new_uow(), s.ctx, _command(token, s.bands[3][0], pan=luhn_pan()))
    assert done.check_in is not None
    if case == "token_used":
        cmd = _command(token, s.bands[4][0], pan=luhn_pan())
    elif case == "band_taken":
        cmd = _command(_token(s, 3), s.bands[3][0], pan=luhn_pan())
    elif case == "replayed_request":
        first = _command(_token(s, 3), s.bands[4][0], pan=luhn_pan(), request_id=request_id)
        assert check_in.complete_check_in(s.new_uow(), s.ctx, first).check_in is not None
        cmd = first
    else:
        cmd = _command(_token(s, 3, kiosk="K2"), s.bands[4][0], pan=luhn_pan())
    counts = [_count(s, table) for table in (CheckIn, AuditEntry, CheckInEvent, UwbDelivery)]
    assert _quick(s, cmd) is None
    assert [_count(s, table) for table in (CheckIn, AuditEntry, CheckInEvent, UwbDelivery)] == counts
