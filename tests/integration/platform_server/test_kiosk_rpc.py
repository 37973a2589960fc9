"""KioskService over a real server and port, on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from expertcheckin.v1 import common_pb2, diagnostics_pb2, kiosk_pb2, organiser_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from platform_server.services import roster
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import face_image, many_ids

Identify = kiosk_pb2.IdentifyExpertResponse
Complete = kiosk_pb2.CompleteCheckInResponse


def test_kiosk_context_returns_the_open_batch(running: Running) -> None:
    answer = running.kiosk.GetKioskContext(kiosk_pb2.GetKioskContextRequest(kiosk_id="K1"))
    assert answer.batch.code == running.seeded.batch_code
    assert answer.batch.hotel_code == "HTL1"
    assert answer.server_time.seconds > 0


def test_not_invited_gets_the_screen_text(running: Running) -> None:
    stranger = many_ids(50, seed=99)[-1]
    answer = running.kiosk.IdentifyExpert(identify_request("K1", running.seeded.batch_code, stranger))
    assert answer.outcome == Identify.OUTCOME_REFUSED
    assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NOT_INVITED
    assert answer.refusal.message_zh == "您不在本批次邀请专家名单内"
    assert not answer.expert_name


def test_identify_complete_replay_and_repeat(running: Running) -> None:
    s = running.seeded
    verified = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    assert verified.outcome == Identify.OUTCOME_VERIFIED
    assert verified.expert_name == "专家0"
    assert verified.id_number_masked == s.ids[0][:4] + "*" * 10 + s.ids[0][-4:]
    request = complete_request("K1", verified.identification_token, s.bands[0][0])
    done = running.kiosk.CompleteCheckIn(request)
    assert done.outcome == Complete.OUTCOME_COMPLETED, done.refusal
    assert done.check_in.room_number == s.rooms[0]
    assert done.check_in.band_uid == s.bands[0][0]
    assert done.check_in.uwb_state == common_pb2.UWB_DELIVERY_STATE_PENDING
    assert not done.replayed
    again = running.kiosk.CompleteCheckIn(request)
    assert again.replayed
    assert again.check_in == done.check_in
    repeat = running.kiosk.IdentifyExpert(identify_request("K2", s.batch_code, s.ids[0]))
    assert repeat.refusal.reason == common_pb2.REFUSAL_REASON_ALREADY_CHECKED_IN
    assert repeat.refusal.params["room"] == s.rooms[0]
    assert repeat.refusal.params["kiosk"] == "K1"
    assert repeat.previous_check_in.check_in_id == done.check_in.check_in_id
    # The card given is now on file for the next batch, masked.
    assert not repeat.bank_card_on_file.pan_masked  # refusals carry no card


def test_reused_request_id_with_other_content_is_invalid_argument(running: Running) -> None:
    s = running.seeded
    verified = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    request_id = rid()
    running.kiosk.CompleteCheckIn(
        complete_request("K1", verified.identification_token, s.bands[0][0], request_id=request_id)
    )
    with pytest.raises(grpc.RpcError) as info:
        running.kiosk.CompleteCheckIn(
            complete_request("K1", verified.identification_token, s.bands[1][0], request_id=request_id)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_annul_frees_room_and_band_then_card_on_file_is_offered(running: Running) -> None:
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[1])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[2][0]))
    other_kiosk = running.kiosk.AnnulCheckIn(
        kiosk_pb2.AnnulCheckInRequest(
            request_id=rid(),
            kiosk_id="K2",
            check_in_id=done.check_in.check_in_id,
            reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
        )
    )
    assert other_kiosk.refusal.reason == common_pb2.REFUSAL_REASON_ANNUL_NOT_ALLOWED
    annulled = running.kiosk.AnnulCheckIn(
        kiosk_pb2.AnnulCheckInRequest(
            request_id=rid(),
            kiosk_id="K1",
            check_in_id=done.check_in.check_in_id,
            reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
        )
    )
    assert annulled.outcome == kiosk_pb2.AnnulCheckInResponse.OUTCOME_ANNULLED
    twice = running.kiosk.AnnulCheckIn(
        kiosk_pb2.AnnulCheckInRequest(
            request_id=rid(),
            kiosk_id="K1",
            check_in_id=done.check_in.check_in_id,
            reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
        )
    )
    assert twice.refusal.params["why"] == "already_annulled"
    again = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[1]))
    assert again.outcome == Identify.OUTCOME_VERIFIED
    assert again.previous_check_in.annulled
    assert again.bank_card_on_file.pan_masked.startswith("622848")
    assert "*" in again.bank_card_on_file.pan_masked
    reuse = kiosk_pb2.CompleteCheckInRequest(
        request_id=rid(),
        kiosk_id="K1",
        identification_token=again.identification_token,
        use_card_on_file=True,
        signature_png=complete_request("K1", "", "").signature_png,
        band_uid=s.bands[2][0],
    )
    redo = running.kiosk.CompleteCheckIn(reuse)
    assert redo.outcome == Complete.OUTCOME_COMPLETED, redo.refusal
    assert redo.check_in.room_number == s.rooms[0]  # the freed room is given again
    stats = running.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=s.batch_code), metadata=running.auth
    )
    assert (stats.arrived, stats.annulled, stats.rooms_left) == (1, 1, len(s.rooms) - 1)


def test_annul_window_passes(running: Running) -> None:
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0]))
    running.clock.advance(s.ctx.rules.annul_window_s + 1)
    late = running.kiosk.AnnulCheckIn(
        kiosk_pb2.AnnulCheckInRequest(
            request_id=rid(),
            kiosk_id="K1",
            check_in_id=done.check_in.check_in_id,
            reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN,
        )
    )
    assert late.refusal.params["why"] == "window_passed"


def test_refusals_for_bad_card_blank_signature_unknown_band_and_stale_token(running: Running) -> None:
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    bad_card = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0], pan="6228480000000000001"))
    assert bad_card.refusal.reason == common_pb2.REFUSAL_REASON_BANK_CARD_INVALID
    unknown = running.kiosk.CompleteCheckIn(complete_request("K1", token, "DEADBEEF"))
    assert unknown.refusal.reason == common_pb2.REFUSAL_REASON_BAND_UNKNOWN
    blank = complete_request("K1", token, s.bands[0][0])
    blank.signature_png = b""
    assert running.kiosk.CompleteCheckIn(blank).refusal.reason == common_pb2.REFUSAL_REASON_SIGNATURE_INVALID
    other_kiosk = running.kiosk.CompleteCheckIn(complete_request("K2", token, s.bands[0][0]))
    assert other_kiosk.refusal.reason == common_pb2.REFUSAL_REASON_IDENTIFICATION_EXPIRED
    running.clock.advance(s.ctx.rules.identification_ttl_s + 1)
    stale = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0]))
    assert stale.refusal.reason == common_pb2.REFUSAL_REASON_IDENTIFICATION_EXPIRED


def test_no_room_left_is_an_answer_not_an_error(db_url: str) -> None:
    r = start(db_url, rooms=1, experts=2)
    try:
        s = r.seeded
        first = r.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
        assert (
            r.kiosk.CompleteCheckIn(complete_request("K1", first, s.bands[0][0])).outcome == Complete.OUTCOME_COMPLETED
        )
        second = r.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[1])).identification_token
        full = r.kiosk.CompleteCheckIn(complete_request("K1", second, s.bands[1][0]))
        assert full.outcome == Complete.OUTCOME_REFUSED
        assert full.refusal.reason == common_pb2.REFUSAL_REASON_NO_ROOM_LEFT
        assert full.refusal.message_zh == "房间已分配完毕，请联系现场工作人员"
        stats = r.organiser.GetBatchStatistics(
            organiser_pb2.GetBatchStatisticsRequest(code=s.batch_code), metadata=r.auth
        )
        assert stats.bands_left == len(s.bands) - 1  # the refused check-in bound nothing
    finally:
        stop(r)


def test_face_mismatch_three_times_then_exhausted(running: Running) -> None:
    s = running.seeded
    with s.uow as uow:
        expert_id = roster.expert_ids_by_hash(uow, roster.hashes_of(s.ctx.data_key, [s.ids[3]]))
        key = next(iter(expert_id.values()))
        roster.write_reference_photo(
            uow, s.ctx, key, face_image("alice"), running.verifier.encode_reference(face_image("alice"))
        )
        uow.commit()
    ok = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image("alice")]))
    assert ok.outcome == Identify.OUTCOME_VERIFIED
    assert ok.face.matched
    assert ok.face.distance == pytest.approx(0.2)
    reasons = []
    for _ in range(3):
        answer = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image("bob")]))
        reasons.append(common_pb2.RefusalReason.Name(answer.refusal.reason))
    assert reasons == [
        "REFUSAL_REASON_FACE_MISMATCH",
        "REFUSAL_REASON_FACE_MISMATCH",
        "REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED",
    ]
    calls = running.verifier.calls
    after = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [face_image("alice")]))
    assert after.refusal.reason == common_pb2.REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED
    assert running.verifier.calls == calls  # no more comparisons once exhausted
    unusable = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[3], [b"BAD image"]))
    assert unusable.refusal.reason == common_pb2.REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED


def test_id_only_path_never_calls_the_verifier(running: Running) -> None:
    s = running.seeded
    running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    assert running.verifier.calls == 0


def test_unregistered_kiosk_is_refused(running: Running) -> None:
    answer = running.kiosk.IdentifyExpert(identify_request("K99", running.seeded.batch_code, running.seeded.ids[0]))
    assert answer.refusal.reason == common_pb2.REFUSAL_REASON_KIOSK_NOT_REGISTERED


def test_heartbeat_is_stored_and_shown_in_statistics(running: Running) -> None:
    answer = running.kiosk.Heartbeat(
        kiosk_pb2.HeartbeatRequest(
            kiosk_id="K1",
            band_stock=3,
            pending_check_ins=1,
            software_version="1.0",
            devices=[kiosk_pb2.DeviceHealth(device="arm", state=kiosk_pb2.DEVICE_STATE_OK)],
        )
    )
    assert answer.stock_low
    stats = running.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=running.seeded.batch_code), metadata=running.auth
    )
    k1 = next(k for k in stats.kiosks if k.kiosk_id == "K1")
    assert k1.band_stock == 3
    assert k1.last_heartbeat.seconds > 0


def test_organiser_calls_need_the_token(running: Running) -> None:
    with pytest.raises(grpc.RpcError) as info:
        running.organiser.ListBatches(organiser_pb2.ListBatchesRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as wrong:
        running.organiser.ListBatches(organiser_pb2.ListBatchesRequest(), metadata=[("authorization", "Bearer nope")])
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = running.organiser.ListBatches(organiser_pb2.ListBatchesRequest(), metadata=running.auth)
    assert [b.code for b in listed.batches] == [running.seeded.batch_code]
    with pytest.raises(grpc.RpcError) as missing:
        running.organiser.GetBatchStatistics(
            organiser_pb2.GetBatchStatisticsRequest(code="NOPE"), metadata=running.auth
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_close_batch_refuses_further_identifies(running: Running) -> None:
    s = running.seeded
    closed = running.organiser.CloseBatch(
        organiser_pb2.CloseBatchRequest(request_id=rid(), code=s.batch_code), metadata=running.auth
    )
    assert closed.batch.closed
    answer = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0]))
    assert answer.refusal.reason == common_pb2.REFUSAL_REASON_BATCH_CLOSED


def test_event_stream_replays_then_follows_live(running: Running) -> None:
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0]))
    stream = running.organiser.StreamCheckInEvents(
        organiser_pb2.StreamCheckInEventsRequest(batch_code=s.batch_code), metadata=running.auth, timeout=20
    )
    first = next(stream)
    assert first.kind == organiser_pb2.StreamCheckInEventsResponse.KIND_CHECKED_IN
    assert first.check_in.room_number == s.rooms[0]
    running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, many_ids(60, seed=5)[-1]))
    live = next(stream)
    assert live.kind == organiser_pb2.StreamCheckInEventsResponse.KIND_REFUSED
    assert live.refusal_reason == common_pb2.REFUSAL_REASON_NOT_INVITED
    assert live.event_id > first.event_id
    stream.cancel()


def test_health_reflection_and_echo(running: Running) -> None:
    health = health_pb2_grpc.HealthStub(running.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="expertcheckin.v1.KioskService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(answers).list_services_response.service}
    assert "expertcheckin.v1.KioskService" in names
    assert running.diagnostics.Echo(diagnostics_pb2.EchoRequest(message="hi")).message == "hi"
