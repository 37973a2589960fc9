"""Signed identification tokens: forged, altered, foreign, expired, other-kiosk and used tokens are refused."""

from __future__ import annotations

import base64
import sqlite3
import uuid

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from personal_data.crypto import DataKey
from platform_server.services import check_in, identification_token, identify
from platform_server.services.refusals import Reason
from tests.unit.platform_server.support import TEST_KEY, Seeded, luhn_pan, signature_png

CLAIMS = identification_token.Identification(
    kiosk_id="K1",
    invitation_id=7,
    expert_id=9,
    batch_id=3,
    face_distance=0.31,
    face_threshold=0.55,
    expires_at_us=1_750_000_000_000_000,
    last_check_in_id=0,
)


def test_a_token_carries_its_claims_and_nothing_personal() -> None:
    token = identification_token.issue(TEST_KEY, CLAIMS)
    assert identification_token.verify(TEST_KEY, token) == CLAIMS
    assert identification_token.issue(TEST_KEY, CLAIMS) != token  # a fresh nonce each time
    no_face = identification_token.Identification("终端-1", 1, 2, 3, None, None, 5, 4)
    assert identification_token.verify(TEST_KEY, identification_token.issue(TEST_KEY, no_face)) == no_face
    body = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert body.endswith(b"K1")
    assert len(token) < identification_token.MAX_TOKEN_CHARS


def test_altered_forged_and_foreign_tokens_do_not_verify() -> None:
    token = identification_token.issue(TEST_KEY, CLAIMS)
    body, tag = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=="))
    raw[1] ^= 1  # another invitation
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." + tag
    other_key = DataKey.from_text("another platform's key, never this one")
    for bad in (
        altered,
        body + "." + tag[:-2] + ("AA" if tag[-2:] != "AA" else "BB"),
        identification_token.issue(other_key, CLAIMS),
        body + "!." + tag,  # a character base64 would skip
        body,
        "",
        token + "." + tag,
    ):
        assert identification_token.verify(TEST_KEY, bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_any_text_is_refused_without_an_error(text: str) -> None:
    assert identification_token.verify(TEST_KEY, text) is None


def _identify(s: Seeded, expert: int, kiosk: str = "K1") -> identify.IdentifyResult:
    return identify.identify(
        s.new_uow(),
        s.ctx,
        identify.IdentifyCommand(uuid.uuid4().hex, kiosk, s.batch_code, s.ids[expert], valid_to="长期"),
    )


def _complete(s: Seeded, token: str, band: int, kiosk: str = "K1") -> check_in.CompleteResult:
    return check_in.complete_check_in(
        s.new_uow(),
        s.ctx,
        check_in.CompleteCommand(
            uuid.uuid4().hex, kiosk, token, False, luhn_pan(n=band), "CHIP", signature_png(), s.bands[band][0]
        ),
    )


def test_a_token_checks_in_once_even_after_the_check_in_is_annulled(seeded: Seeded) -> None:
    token = _identify(seeded, 0).identification_token
    done = _complete(seeded, token, 0)
    assert done.refusal is None
    assert done.check_in is not None
    annulled = check_in.annul_check_in(
        seeded.new_uow(),
        seeded.ctx,
        check_in.AnnulCommand(uuid.uuid4().hex, "K1", done.check_in.check_in_id, "BAND_NOT_TAKEN"),
    )
    assert annulled.refusal is None
    reused = _complete(seeded, token, 1)
    assert reused.refusal is not None
    assert reused.refusal.reason is Reason.IDENTIFICATION_EXPIRED
    fresh = _identify(seeded, 0)  # the expert identifies again: a new token works
    assert fresh.verified
    assert _complete(seeded, fresh.identification_token, 1).refusal is None
    with seeded.new_uow() as uow:
        whys = uow.execute(
            sa.text("SELECT detail FROM audit_log WHERE action = 'complete_check_in' AND outcome = :o"),
            {"o": "identification_expired"},
        ).scalars()
        assert ['"token_used"' in w for w in whys] == [True]


def test_a_token_of_another_batch_or_for_another_kiosk_is_refused(seeded: Seeded) -> None:
    verified = _identify(seeded, 2)
    claims = identification_token.verify(seeded.ctx.data_key, verified.identification_token)
    assert claims is not None
    assert claims.kiosk_id == "K1"
    moved = identification_token.issue(
        seeded.ctx.data_key,
        identification_token.Identification(
            claims.kiosk_id,
            claims.invitation_id,
            claims.expert_id,
            claims.batch_id + 1,  # signed with the right key, but not the invitation's batch
            None,
            None,
            claims.expires_at_us,
            claims.last_check_in_id,
        ),
    )
    for token, kiosk in ((moved, "K1"), (verified.identification_token, "K2"), ("not-a-token", "K1")):
        refused = _complete(seeded, token, 2, kiosk=kiosk)
        assert refused.refusal is not None
        assert refused.refusal.reason is Reason.IDENTIFICATION_EXPIRED
    assert _complete(seeded, verified.identification_token, 2).refusal is None


def test_identify_stores_no_token(seeded: Seeded) -> None:
    token = _identify(seeded, 3).identification_token
    with seeded.new_uow() as uow:
        tables = set(uow.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
        assert "identifications" not in tables
        stored = b"".join(bytes(b) for b in uow.execute(sa.text("SELECT response_encrypted FROM requests")).scalars())
        assert token.encode() not in stored  # the stored answer is encrypted


def test_kept_driver_connections_hold_no_lock_and_close_with_the_engine(seeded: Seeded) -> None:
    from platform_server.db.unit_of_work import _IdleConnections  # noqa: PLC0415

    for expert in range(3):
        assert _identify(seeded, expert).verified
    engine = seeded.uow._session_factory.kw["bind"]
    idle = _IdleConnections.of(engine)
    kept = [*idle._idle, idle._writer]
    assert idle._writer is not None  # the identifies wrote
    assert all(fairy.driver_connection.in_transaction is False for fairy in kept)
    # Another connection can take the write lock at once: nothing kept holds it.
    other = sqlite3.connect(engine.url.database, timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    engine.dispose()
    assert not idle._idle
    assert all(fairy.driver_connection is None for fairy in kept)


def test_writers_take_turns_on_one_connection_with_a_larger_cache(seeded: Seeded) -> None:
    """The write gate's holder always gets the same connection, even when a reader took the one last used.

    In WAL mode a connection that did not make the last commit begins with its page cache thrown away.
    """
    from platform_server.db.unit_of_work import _IdleConnections  # noqa: PLC0415

    writers = []
    for _ in range(3):
        # Interleaved as two request threads would: a reader begins, a writer begins, the reader ends first.
        reader = seeded.uow.driver_transaction(read_only=True).__enter__()
        writer = seeded.uow.driver_transaction().__enter__()
        writers.append(writer.raw)
        reader.__exit__(None, None, None)
        assert writer.execute("PRAGMA cache_size").fetchone()[0] == -_IdleConnections.WRITER_CACHE_KIB
        writer.__exit__(None, None, None)
    assert all(raw is writers[0] for raw in writers)
    with seeded.uow.driver_transaction(read_only=True) as reader:
        assert reader.raw is not writers[0]
        assert reader.execute("PRAGMA cache_size").fetchone()[0] == -2000  # readers keep SQLite's default
