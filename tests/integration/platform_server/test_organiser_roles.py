"""Organiser people over the real gRPC server, SQLite and PostgreSQL: tokens name a person, each RPC
needs its role's permission, refusals are PERMISSION_DENIED and audited with the person, only finance
and admin see full card numbers, and face attempts are reset by an organiser with a reason."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, organiser_pb2

from platform_server.db import unit_of_work
from platform_server.db.models import AuditEntry, Batch, Invitation
from platform_server.services import accounts, roster
from platform_server.services.accounts import Role
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.support.platform import start, stop
from tests.unit.platform_server.support import face_image, luhn_pan

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.support.platform import Running

PAN = luhn_pan(n=424242)


def checked_in(running: Running) -> str:
    """Check expert 0 in with PAN; their ID number."""
    s = running.seeded
    found = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    done = running.kiosk.CompleteCheckIn(complete_request("K1", found.identification_token, s.bands[0][0], pan=PAN))
    assert done.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED, done.refusal
    return s.ids[0]


def audit_rows(running: Running, **where: str) -> list[Any]:
    query = sa.select(AuditEntry).where(*(getattr(AuditEntry, k) == v for k, v in where.items()))
    with running.platform.engine.connect() as c:
        return list(c.execute(query).all())


def denied(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
    return info.value.details() or ""


def test_a_viewer_sees_batches_but_cannot_act_or_see_full_numbers(running: Running) -> None:
    s = running.seeded
    checked_in(running)
    viewer = running.person("zhao.viewer", Role.VIEWER)
    listed = running.organiser.ListBatches(organiser_pb2.ListBatchesRequest(), metadata=viewer)
    assert [b.code for b in listed.batches] == [s.batch_code]
    stats = running.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=s.batch_code), metadata=viewer
    )
    assert stats.arrived == 1
    refusals = {
        "CloseBatch": lambda: running.organiser.CloseBatch(
            organiser_pb2.CloseBatchRequest(request_id=rid(), code=s.batch_code), metadata=viewer
        ),
        "ExportFees": lambda: running.organiser.ExportFees(
            organiser_pb2.ExportFeesRequest(batch_code=s.batch_code, full_numbers=True), metadata=viewer
        ),
        "ResetFaceAttempts": lambda: running.organiser.ResetFaceAttempts(
            organiser_pb2.ResetFaceAttemptsRequest(batch_code=s.batch_code, id_number=s.ids[0], reason="x"),
            metadata=viewer,
        ),
    }
    for rpc, call in refusals.items():
        assert rpc in denied(call)
    rows = audit_rows(running, actor="person:zhao.viewer", action="permission_denied")
    assert sorted(json.loads(r.detail)["what"] for r in rows) == sorted(refusals)
    with running.platform.engine.connect() as c:
        assert c.execute(sa.select(Batch.closed)).scalar_one() is False  # nothing was done


def test_finance_exports_full_card_numbers_and_the_read_is_audited(running: Running) -> None:
    s = running.seeded
    id_number = checked_in(running)
    finance = running.person("qian.finance", Role.FINANCE)
    answer = running.organiser.ExportFees(
        organiser_pb2.ExportFeesRequest(batch_code=s.batch_code, full_numbers=True), metadata=finance
    )
    assert [(r.card_number, r.id_number) for r in answer.rows] == [(PAN, id_number)]
    assert audit_rows(running, actor="person:qian.finance", action="export_fees_full")
    assert audit_rows(running, actor="person:qian.finance", action="organiser_read", outcome="ExportFees")
    masked = running.organiser.ExportFees(
        organiser_pb2.ExportFeesRequest(batch_code=s.batch_code), metadata=finance
    ).rows[0]
    assert masked.card_number == f"{PAN[:6]}{'*' * (len(PAN) - 10)}{PAN[-4:]}"
    assert masked.id_number != id_number


def test_an_organiser_cannot_see_full_numbers_and_the_refusal_names_them(running: Running) -> None:
    s = running.seeded
    checked_in(running)
    organiser = running.person("sun.organiser", Role.ORGANISER)
    denied(
        lambda: running.organiser.ExportFees(
            organiser_pb2.ExportFeesRequest(batch_code=s.batch_code, full_numbers=True), metadata=organiser
        )
    )
    [row] = audit_rows(running, actor="person:sun.organiser", action="permission_denied")
    assert row.outcome == "export_fees"
    # What organisers may do, they do under their own name.
    running.organiser.CloseBatch(
        organiser_pb2.CloseBatchRequest(request_id=rid(), code=s.batch_code), metadata=organiser
    )
    assert audit_rows(running, actor="person:sun.organiser", action="batch_close")


@pytest.mark.parametrize("how", ["none", "unknown", "revoked", "disabled"])
def test_calls_without_a_live_persons_token_are_unauthenticated(running: Running, how: str) -> None:
    s = running.seeded
    token = {"none": "", "unknown": "eco_nobody"}.get(how)
    if token is None:
        token = running.person("li.gone", Role.ADMIN)[0][1].removeprefix("Bearer ")
        at = s.ctx.clock()
        if how == "revoked":
            accounts.revoke_tokens(s.new_uow(), "li.gone", actor="os:test", at=at)
        else:
            accounts.set_disabled(s.new_uow(), "li.gone", disabled=True, actor="os:test", at=at)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with pytest.raises(grpc.RpcError) as info:
        running.organiser.ListBatches(organiser_pb2.ListBatchesRequest(), metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_whoami_names_the_person_and_their_permissions(running: Running) -> None:
    me = running.organiser.WhoAmI(organiser_pb2.WhoAmIRequest(), metadata=running.person("wu.fin", Role.FINANCE))
    assert (me.username, me.role) == ("wu.fin", "finance")
    assert "see_full_numbers" in me.permissions
    assert "manage_batches" not in me.permissions


def test_exhausted_face_attempts_are_reset_by_an_organiser_with_a_reason(running: Running) -> None:
    s = running.seeded
    with s.uow as uow:
        expert_id = next(iter(roster.expert_ids_by_hash(uow, roster.hashes_of(s.ctx.data_key, [s.ids[3]])).values()))
        alice = face_image("alice")
        roster.write_reference_photo(uow, s.ctx, expert_id, alice, running.verifier.encode_reference(alice))
        uow.commit()
    for kiosk in ("K1", "K1", "K2"):
        running.kiosk.IdentifyExpert(identify_request(kiosk, s.batch_code, s.ids[3], [face_image("bob")]))
    locked = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image("alice")]))
    assert locked.refusal.reason == common_pb2.REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED
    organiser = running.person("zhou.org", Role.ORGANISER)
    request = organiser_pb2.ResetFaceAttemptsRequest(batch_code=s.batch_code, id_number=s.ids[3], reason="")
    with pytest.raises(grpc.RpcError) as info:
        running.organiser.ResetFaceAttempts(request, metadata=organiser)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in (info.value.details() or "")
    request.reason = "本人到场，核对身份证原件 / checked in person"
    done = running.organiser.ResetFaceAttempts(request, metadata=organiser)
    assert (done.previous_failures, done.locked_by_kiosk) == (3, "K2")  # the kiosk of the last attempt
    assert done.id_number_masked.startswith(s.ids[3][:4])
    assert "*" in done.id_number_masked
    [row] = audit_rows(running, action="face_attempts_reset")
    assert row.actor == "person:zhou.org"
    assert json.loads(row.detail)["reason"] == request.reason
    assert json.loads(row.detail)["locked_by"] == "K2"
    with running.platform.engine.connect() as c:
        assert c.execute(
            sa.select(Invitation.face_failures, Invitation.face_locked_by).where(Invitation.expert_id == expert_id)
        ).one() == (0, None)
    again = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image("alice")]))
    assert again.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED


def test_an_organiser_call_whose_read_cannot_be_audited_answers_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of personal data is audited first; with the write lock held elsewhere past its bound the
    call is UNAVAILABLE "try again" (not UNKNOWN from the interceptor), and nothing is read or written."""
    monkeypatch.setattr(unit_of_work, "LOCK_WAIT_BUDGET_S", 0.5)  # one wait of SQLite's busy timeout (2 s)
    database = tmp_path / "platform.db"
    running = start(f"sqlite:///{database}")
    try:
        request = organiser_pb2.ExportFeesRequest(batch_code=running.seeded.batch_code)
        before = len(audit_rows(running, action="organiser_read"))
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(grpc.RpcError) as refused:
                running.organiser.ExportFees(request, metadata=running.auth)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
            assert "try again" in (refused.value.details() or "")
        finally:
            holder.close()
        assert len(audit_rows(running, action="organiser_read")) == before
        running.organiser.ExportFees(request, metadata=running.auth)
        assert len(audit_rows(running, action="organiser_read")) == before + 1
    finally:
        stop(running)
