"""The platform client against a real gRPC server on a real port: conversions, deadlines, retries, TLS."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from expertcheckin.v1 import common_pb2, kiosk_pb2

from checkin.flow.models import (
    Annulled,
    AnnulReason,
    AnnulRequest,
    CardSource,
    Completed,
    CompleteRequest,
    DeviceHealth,
    DeviceState,
    FaceFrames,
    HeartbeatReport,
    IdCardFields,
    Identified,
    IdentifyRequest,
    NewCard,
    RefusalCode,
    Refused,
)
from checkin.flow.ports import PlatformBusyError, PlatformUnavailableError
from checkin.platform_client import MAX_BUSY_WAITED_MS, PlatformCallError, PlatformClient
from platform_server.grpc_api.limits import LIMITS
from tests.integration.kiosk.fake_platform import FakePlatformServer, settings_for, start_fake_platform

if TYPE_CHECKING:
    from pathlib import Path

PAN = "6212345678901232"


def identify_request(request_id: str = "rid-1") -> IdentifyRequest:
    faces = FaceFrames(images_jpeg=(b"\xff\xd8one", b"\xff\xd8two"), quality=0.8, liveness_passed=True)
    return IdentifyRequest(
        request_id=request_id,
        batch_code="B2026-001",
        id_card=IdCardFields(id_number="11010519491231002X", name="张三", birth_date="19491231", valid_to="长期"),
        faces=faces.images_jpeg,
        face_quality=faces.quality,
        liveness_passed=True,
        face_attempt=2,
    )


def complete_request(request_id: str = "rid-c1", card: NewCard | None = None) -> CompleteRequest:
    return CompleteRequest(
        request_id=request_id,
        identification_token="tok",
        new_card=card,
        signature_png=b"\x89PNG...",
        band_uid="04A1B2C3D4E5F0",
    )


def beat_report() -> HeartbeatReport:
    """A beat from a kiosk whose arm is faulty, low on bands, two check-ins queued."""
    return HeartbeatReport(
        devices=(DeviceHealth("arm", DeviceState.FAULT, "E40"),),
        band_stock=5,
        pending_check_ins=2,
        out_of_service=True,
        software_version="0.1.0",
        kiosk_time=dt.datetime.now(dt.UTC),
    )


def test_identify_sends_the_card_and_faces_and_returns_identified(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    result = client.identify(identify_request())
    assert isinstance(result, Identified)
    assert result.card_on_file is not None
    assert result.card_on_file.pan_masked == "622848******1234"
    sent = fake_platform.servicer.calls_to("IdentifyExpert")[0]
    assert (sent.kiosk_id, sent.id_card.id_number, sent.id_card.valid_to, sent.face_attempt) == (
        "K1",
        "11010519491231002X",
        "长期",
        2,
    )
    assert [f.image_jpeg for f in sent.faces] == [b"\xff\xd8one", b"\xff\xd8two"]


def with_challenge(request: IdentifyRequest) -> IdentifyRequest:
    frames = ((b"\xff\xd8neutral", 0), (b"\xff\xd8blink", 140), (b"\xff\xd8neutral again", 300))
    return dataclasses.replace(request, challenge="blink", challenge_id="ch-1", challenge_frames=frames)


def test_the_challenges_frames_are_sent_until_the_platform_says_it_does_not_check_them(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    assert isinstance(client.identify(with_challenge(identify_request("rid-1"))), Identified)
    fake_platform.servicer.frames_unchecked = True
    client.get_context()
    assert isinstance(client.identify(with_challenge(identify_request("rid-2"))), Identified)
    first, second = fake_platform.servicer.calls_to("IdentifyExpert")
    assert [f.image for f in first.liveness.frames] == [b"\xff\xd8neutral", b"\xff\xd8blink", b"\xff\xd8neutral again"]
    # Left out, the rest of the evidence and the captures sent as before.
    assert (second.liveness.challenge, second.liveness.challenge_id, len(second.liveness.frames)) == (
        kiosk_pb2.LIVENESS_CHALLENGE_BLINK,
        "ch-1",
        0,
    )
    assert [f.image_jpeg for f in second.faces] == [b"\xff\xd8one", b"\xff\xd8two"]
    fake_platform.servicer.frames_unchecked = False
    client.get_context()
    assert isinstance(client.identify(with_challenge(identify_request("rid-3"))), Identified)
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")[2].liveness.frames) == 3


def test_the_context_a_heartbeat_carries_is_taken_as_get_context_s(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    fake_platform.servicer.context_in_heartbeat = True
    fake_platform.servicer.frames_unchecked = True
    ack = client.heartbeat(beat_report())
    assert ack.context is not None
    assert ack.context.batch is not None
    assert ack.context.batch.code == "B2026-001"
    assert ack.context.server_time is not None
    # The frames rule it carries holds for the identifies that follow, as GetKioskContext's does.
    assert isinstance(client.identify(with_challenge(identify_request("rid-1"))), Identified)
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")[0].liveness.frames) == 0
    assert fake_platform.servicer.calls_to("GetKioskContext") == []
    # A platform before the field answers without it: no context, and the rule left as it was.
    fake_platform.servicer.context_in_heartbeat = False
    fake_platform.servicer.frames_unchecked = False
    assert client.heartbeat(beat_report()).context is None
    assert isinstance(client.identify(with_challenge(identify_request("rid-2"))), Identified)
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")[1].liveness.frames) == 0


def test_a_not_live_answer_to_an_identify_without_its_frames_sends_it_again_with_them(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    # The context said the frames go unchecked; the platform has since been set to check them.
    fake_platform.servicer.frames_unchecked = True
    client.get_context()
    fake_platform.servicer.checks_frames = True
    result = client.identify(with_challenge(identify_request("rid-1")))
    assert isinstance(result, Identified), result
    without, again = fake_platform.servicer.calls_to("IdentifyExpert")
    assert (without.request_id, len(without.liveness.frames)) == ("rid-1", 0)
    assert (again.request_id, len(again.liveness.frames)) == ("rid-1.frames", 3)
    # Until the next context, the frames are sent from the start.
    assert isinstance(client.identify(with_challenge(identify_request("rid-2"))), Identified)
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")) == 3
    # The send with the frames answered busy: the flow sends the identify again later, under the new id
    # (the first id's answer, without the frames, is stored by the platform).
    fake_platform.servicer.frames_unchecked = True
    client.get_context()
    fake_platform.servicer.busy_next_with_frames = 1
    with pytest.raises(PlatformBusyError):
        client.identify(with_challenge(identify_request("rid-busy")))
    assert isinstance(client.identify(with_challenge(identify_request("rid-busy"))), Identified)
    sent = [(r.request_id, len(r.liveness.frames)) for r in fake_platform.servicer.calls_to("IdentifyExpert")[3:]]
    assert sent == [("rid-busy", 0), ("rid-busy.frames", 3), ("rid-busy.frames", 3)]
    # A NOT_LIVE answer to an identify that carried its frames is the expert's answer, sent once.
    fake_platform.servicer.identify_reply = kiosk_pb2.IdentifyExpertResponse(
        outcome=kiosk_pb2.IdentifyExpertResponse.OUTCOME_REFUSED,
        refusal=common_pb2.Refusal(reason=common_pb2.REFUSAL_REASON_NOT_LIVE),
    )
    refused = client.identify(with_challenge(identify_request("rid-3")))
    assert isinstance(refused, Refused)
    assert refused.refusal.code is RefusalCode.NOT_LIVE
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")) == 7


def test_face_mismatch_carries_attempts_left(client: PlatformClient, fake_platform: FakePlatformServer) -> None:
    fake_platform.servicer.identify_reply = kiosk_pb2.IdentifyExpertResponse(
        outcome=kiosk_pb2.IdentifyExpertResponse.OUTCOME_REFUSED,
        refusal=common_pb2.Refusal(reason=common_pb2.REFUSAL_REASON_FACE_MISMATCH, message_zh="不符"),
        face_attempts_left=1,
    )
    result = client.identify(identify_request())
    assert isinstance(result, Refused)
    assert result.refusal.code is RefusalCode.FACE_MISMATCH
    assert result.refusal.params["attempts_left"] == "1"


def test_a_refusal_code_the_kiosk_does_not_know_keeps_the_platforms_words(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    fake_platform.servicer.identify_reply = kiosk_pb2.IdentifyExpertResponse(
        outcome=kiosk_pb2.IdentifyExpertResponse.OUTCOME_REFUSED,
        refusal=common_pb2.Refusal(reason=99, message_zh="新原因", message_en="new reason"),  # type: ignore[arg-type]
    )
    result = client.identify(identify_request())
    assert isinstance(result, Refused)
    assert (result.refusal.code, result.refusal.message_zh, result.refusal.message_en) == (
        RefusalCode.UNSPECIFIED,
        "新原因",
        "new reason",
    )


def test_complete_with_a_new_card_and_with_the_card_on_file(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    typed = NewCard(pan=PAN, source=CardSource.TYPED)
    first = client.complete_check_in(complete_request("a", typed))
    second = client.complete_check_in(complete_request("b", None))
    assert isinstance(first, Completed)
    assert first.check_in.room_number == "1201"
    assert isinstance(second, Completed)
    a, b = fake_platform.servicer.calls_to("CompleteCheckIn")
    assert (a.new_card.pan, a.new_card.source, a.WhichOneof("bank_card")) == (
        PAN,
        common_pb2.CARD_SOURCE_TYPED,
        "new_card",
    )
    assert b.WhichOneof("bank_card") == "use_card_on_file"


def test_unavailable_is_retried_with_the_same_request_id(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    fake_platform.servicer.fail_next["CompleteCheckIn"] = 2
    result = client.complete_check_in(complete_request("same-id"))
    assert isinstance(result, Completed)
    ids = [r.request_id for r in fake_platform.servicer.calls_to("CompleteCheckIn")]
    assert ids == ["same-id", "same-id", "same-id"]


def test_a_call_past_its_deadline_is_retried_and_the_platform_answers_the_retry_once(
    fake_platform: FakePlatformServer,
) -> None:
    # The first attempt is held until its deadline; the deadline is long enough that on a loaded machine
    # the retry is still answered within its own.
    client = PlatformClient(settings_for(fake_platform.port, call_timeout_s=2.0), "K1")
    fake_platform.servicer.hang_next["CompleteCheckIn"] = 1
    result = client.complete_check_in(complete_request("slow-id"))
    client.close()
    assert isinstance(result, Completed)
    assert [r.request_id for r in fake_platform.servicer.calls_to("CompleteCheckIn")] == ["slow-id", "slow-id"]


def test_no_answer_after_the_last_attempt_is_platform_unavailable(fake_platform: FakePlatformServer) -> None:
    client = PlatformClient(settings_for(fake_platform.port, max_attempts=3), "K1")
    fake_platform.servicer.down = True
    with pytest.raises(PlatformUnavailableError, match="3 attempts"):
        client.complete_check_in(complete_request())
    client.close()
    assert len(fake_platform.servicer.calls_to("CompleteCheckIn")) == 3


def test_nothing_listening_is_platform_unavailable() -> None:
    dead = start_fake_platform()
    port = dead.port
    dead.server.stop(0).wait()
    client = PlatformClient(settings_for(port, max_attempts=2), "K1")
    with pytest.raises(PlatformUnavailableError):
        client.get_context()
    client.close()


def test_an_error_status_that_retrying_cannot_fix_is_not_retried(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    fake_platform.servicer.status_next["AnnulCheckIn"] = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(PlatformCallError, match="PERMISSION_DENIED"):
        client.annul_check_in(AnnulRequest("an-1", "ci-1", AnnulReason.BAND_NOT_TAKEN))
    assert len(fake_platform.servicer.calls_to("AnnulCheckIn")) == 1


def test_the_platforms_busy_answer_is_platform_busy_with_its_advised_wait_and_is_not_retried_here(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    # The flow resends after the wait on its own timer (tests/unit/kiosk/test_flow_platform_busy.py),
    # so the client makes one call and hands the advice over.
    fake_platform.servicer.busy_next = 1
    fake_platform.servicer.busy_retry_after_s = 1.7
    with pytest.raises(PlatformBusyError, match="face verification is busy") as raised:
        client.identify(identify_request("busy-id"))
    assert raised.value.retry_after_s == pytest.approx(1.7)
    assert [r.request_id for r in fake_platform.servicer.calls_to("IdentifyExpert")] == ["busy-id"]
    assert isinstance(client.identify(identify_request("busy-id")), Identified)


def test_an_identify_sent_again_after_busy_answers_says_how_long_the_kiosk_has_waited(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    # The platform keeps part of its face queue for identifies sent again (face/pool.py): each send
    # after the first busy answer says so, with the time since that answer.
    fake_platform.servicer.busy_next = 2
    for _ in range(2):
        with pytest.raises(PlatformBusyError):
            client.identify(identify_request("waits"))
    assert isinstance(client.identify(identify_request("waits")), Identified)
    assert isinstance(client.identify(identify_request("next")), Identified)
    waited = [(r.request_id, r.busy_waited_ms) for r in fake_platform.servicer.calls_to("IdentifyExpert")]
    assert [rid for rid, _ in waited] == ["waits", "waits", "waits", "next"]
    first, second, third, other = (ms for _, ms in waited)
    assert first == 0  # its first send
    assert 1 <= second <= third  # sent again: at least 1 ms, growing
    assert other == 0  # another identify starts afresh
    # However long ago the first busy answer was, never more than the platform's request limit allows.
    assert LIMITS["expertcheckin.v1.IdentifyExpertRequest"]["busy_waited_ms"].maximum == MAX_BUSY_WAITED_MS


def test_resource_exhausted_without_an_advised_wait_is_a_call_error(
    client: PlatformClient, fake_platform: FakePlatformServer
) -> None:
    # A kiosk slowed down after many refused ID cards: staff lift it, resending would not.
    fake_platform.servicer.status_next["IdentifyExpert"] = grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(PlatformCallError, match="RESOURCE_EXHAUSTED"):
        client.identify(identify_request())
    assert len(fake_platform.servicer.calls_to("IdentifyExpert")) == 1


def test_annul_context_heartbeat_and_event(client: PlatformClient, fake_platform: FakePlatformServer) -> None:
    assert isinstance(client.annul_check_in(AnnulRequest("an-1", "ci-1", AnnulReason.BAND_NOT_TAKEN, "E31")), Annulled)
    sent = fake_platform.servicer.annulled[0]
    assert (sent.reason, sent.detail) == (kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN, "E31")
    context = client.get_context()
    assert context.batch is not None
    assert context.batch.code == "B2026-001"
    assert context.batch.evaluation_start == dt.datetime(2026, 3, 9, 1, 30, tzinfo=dt.UTC)
    ack = client.heartbeat(beat_report())
    assert ack.stock_low is True
    assert ack.context is None  # this fake answers as a platform before the context in heartbeats
    beat = fake_platform.servicer.heartbeats[0]
    assert (beat.band_stock, beat.pending_check_ins, beat.devices[0].state) == (5, 2, kiosk_pb2.DEVICE_STATE_FAULT)


# ---- TLS with a client certificate ----------------------------------------------------------------------


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("platform.test")]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert("platform.test", server_key, (ca.subject, ca_key), ca=False)
    kiosk_key = ec.generate_private_key(ec.SECP256R1())
    kiosk_cert = _cert("K1", kiosk_key, (ca.subject, ca_key), ca=False)
    credentials = grpc.ssl_server_credentials(
        [(_pem(server_key), _pem(server_cert))], root_certificates=_pem(ca), require_client_auth=True
    )
    running = start_fake_platform(credentials)
    try:
        files = {}
        for name, pem in {"ca.pem": _pem(ca), "kiosk.pem": _pem(kiosk_cert), "kiosk.key": _pem(kiosk_key)}.items():
            files[name] = tmp_path / name
            files[name].write_bytes(pem)
        settings = settings_for(
            running.port,
            ca_cert=files["ca.pem"],
            client_cert=files["kiosk.pem"],
            client_key=files["kiosk.key"],
            server_name="platform.test",
        )
        client = PlatformClient(settings, "K1")
        assert client.get_context().batch is not None
        client.close()
        # The same server refuses a kiosk whose certificate no CA it trusts has signed.
        stranger_key = ec.generate_private_key(ec.SECP256R1())
        stranger = _cert("K9", stranger_key, None, ca=False)
        (tmp_path / "stranger.pem").write_bytes(_pem(stranger))
        (tmp_path / "stranger.key").write_bytes(_pem(stranger_key))
        bad = PlatformClient(
            settings_for(
                running.port,
                ca_cert=files["ca.pem"],
                client_cert=tmp_path / "stranger.pem",
                client_key=tmp_path / "stranger.key",
                server_name="platform.test",
                max_attempts=1,
            ),
            "K9",
        )
        with pytest.raises(PlatformUnavailableError):
            bad.get_context()
        bad.close()
    finally:
        running.stop()
