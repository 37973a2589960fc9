"""CreateBatch, CloseBatch and ReportKioskEvent answer a retried request_id with the first answer, once.

Over the real server on SQLite and PostgreSQL, counting effects in the database (batches, audit rows,
idempotency records) rather than trusting the answers alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, organiser_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from platform_server.db.models import AuditEntry, Batch, KioskRequest
from platform_server.services.idempotency import ORGANISER_CALLER
from tests.integration.platform_server.rpc_helpers import rid

if TYPE_CHECKING:
    from tests.support.platform import Running


def count(running: Running, statement: sa.Select[Any]) -> int:
    with running.platform.engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def audit_rows(running: Running, action: str) -> int:
    return count(running, sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == action))


def batches_named(running: Running, code: str) -> int:
    return count(running, sa.select(sa.func.count()).select_from(Batch).where(Batch.code == code))


def create_request(code: str, request_id: str, name: str = "第二批评标") -> organiser_pb2.CreateBatchRequest:
    start, end = Timestamp(), Timestamp()
    start.FromSeconds(1_900_000_000)
    end.FromSeconds(1_900_000_000 + 8 * 3600)
    return organiser_pb2.CreateBatchRequest(
        request_id=request_id,
        batch=common_pb2.Batch(
            code=code, name=name, hotel_code="HTL2", hotel_name="会展酒店", evaluation_start=start, evaluation_end=end
        ),
    )


def test_retried_create_batch_gets_the_first_answer_and_makes_one_batch(running: Running) -> None:
    request = create_request("B2", rid())
    first = running.organiser.CreateBatch(request, metadata=running.auth)
    again = running.organiser.CreateBatch(request, metadata=running.auth)
    assert again == first
    assert first.batch.code == "B2"
    assert first.batch.hotel_name == "会展酒店"
    assert batches_named(running, "B2") == 1
    assert audit_rows(running, "batch_create") == 2  # the seeded batch and B2, not B2 twice
    # A new request for the same code is a different intention: the code is taken.
    with pytest.raises(grpc.RpcError) as info:
        running.organiser.CreateBatch(create_request("B2", rid()), metadata=running.auth)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_retry_after_a_later_close_still_gets_the_first_answer(running: Running) -> None:
    create = create_request("B3", rid())
    created = running.organiser.CreateBatch(create, metadata=running.auth)
    assert not created.batch.closed
    running.organiser.CloseBatch(organiser_pb2.CloseBatchRequest(request_id=rid(), code="B3"), metadata=running.auth)
    replayed = running.organiser.CreateBatch(create, metadata=running.auth)
    assert replayed == created  # the answer the organiser's tool missed, not today's state


def test_reused_request_id_with_other_content_is_refused_and_changes_nothing(running: Running) -> None:
    request_id = rid()
    running.organiser.CreateBatch(create_request("B4", request_id), metadata=running.auth)
    with pytest.raises(grpc.RpcError) as info:
        running.organiser.CreateBatch(create_request("B5", request_id), metadata=running.auth)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already used" in (info.value.details() or "")
    assert batches_named(running, "B5") == 0
    with pytest.raises(grpc.RpcError) as other_method:
        running.organiser.CloseBatch(
            organiser_pb2.CloseBatchRequest(request_id=request_id, code="B4"), metadata=running.auth
        )
    assert other_method.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert count(running, sa.select(sa.func.count()).select_from(Batch).where(Batch.closed.is_(True))) == 0


@pytest.mark.parametrize("request_id", ["", "x" * 65])
def test_organiser_calls_without_a_usable_request_id_are_invalid(running: Running, request_id: str) -> None:
    with pytest.raises(grpc.RpcError) as create:
        running.organiser.CreateBatch(create_request("B6", request_id), metadata=running.auth)
    assert create.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert batches_named(running, "B6") == 0
    with pytest.raises(grpc.RpcError) as close:
        running.organiser.CloseBatch(
            organiser_pb2.CloseBatchRequest(request_id=request_id, code=running.seeded.batch_code),
            metadata=running.auth,
        )
    assert close.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert audit_rows(running, "batch_close") == 0


def test_concurrent_copies_of_one_create_all_get_the_one_answer(running: Running) -> None:
    request = create_request("B7", rid())
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: running.organiser.CreateBatch(request, metadata=running.auth, timeout=30), range(6))
        )
    assert all(a == answers[0] for a in answers)
    assert batches_named(running, "B7") == 1
    assert audit_rows(running, "batch_create") == 2


def test_retried_close_batch_answers_the_same_and_audits_once(running: Running) -> None:
    code = running.seeded.batch_code
    request = organiser_pb2.CloseBatchRequest(request_id=rid(), code=code)
    first = running.organiser.CloseBatch(request, metadata=running.auth)
    again = running.organiser.CloseBatch(request, metadata=running.auth)
    assert first.batch.closed
    assert again == first
    # A second, new close of a closed batch is harmless and leaves no second audit row either.
    running.organiser.CloseBatch(organiser_pb2.CloseBatchRequest(request_id=rid(), code=code), metadata=running.auth)
    assert audit_rows(running, "batch_close") == 1
    records = sa.select(sa.func.count()).select_from(KioskRequest).where(KioskRequest.kiosk_id == ORGANISER_CALLER)
    assert count(running, records) == 2
    with pytest.raises(grpc.RpcError) as missing:
        running.organiser.CloseBatch(
            organiser_pb2.CloseBatchRequest(request_id=rid(), code="NOPE"), metadata=running.auth
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def event(kiosk: str, request_id: str, detail: str = "timeout on face step") -> kiosk_pb2.ReportKioskEventRequest:
    return kiosk_pb2.ReportKioskEventRequest(
        request_id=request_id,
        kiosk_id=kiosk,
        event="timeout",
        outcome="home",
        detail=detail,
        id_number_hash_hint="1234",
    )


def test_retried_kiosk_event_is_audited_once(running: Running) -> None:
    request = event("K1", rid())
    for _ in range(3):
        assert running.kiosk.ReportKioskEvent(request) == kiosk_pb2.ReportKioskEventResponse()
    assert audit_rows(running, "kiosk:timeout") == 1
    running.kiosk.ReportKioskEvent(event("K1", rid()))  # a second event of the same kind is a second row
    assert audit_rows(running, "kiosk:timeout") == 2
    # The same id from another kiosk is that kiosk's own request.
    running.kiosk.ReportKioskEvent(event("K2", request.request_id))
    assert audit_rows(running, "kiosk:timeout") == 3


def test_kiosk_event_reusing_an_id_for_other_content_is_refused(running: Running) -> None:
    request_id = rid()
    running.kiosk.ReportKioskEvent(event("K1", request_id))
    with pytest.raises(grpc.RpcError) as info:
        running.kiosk.ReportKioskEvent(event("K1", request_id, detail="something else"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as empty:
        running.kiosk.ReportKioskEvent(event("K1", ""))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert audit_rows(running, "kiosk:timeout") == 1


def test_event_from_an_unregistered_kiosk_leaves_nothing(running: Running) -> None:
    running.kiosk.ReportKioskEvent(event("K99", rid()))
    assert audit_rows(running, "kiosk:timeout") == 0
    records = sa.select(sa.func.count()).select_from(KioskRequest).where(KioskRequest.kiosk_id == "K99")
    assert count(running, records) == 0
