"""Kiosk ↔ platform over real TLS: a client certificate per kiosk (CN = kiosk id), organiser token.

Certificates are made at test time by `platform_server.dev_certs` (never committed); the server is the
real one on a real port, the kiosk side is the kiosk's own `PlatformClient`.
"""

from __future__ import annotations

import datetime as dt
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc, organiser_pb2, organiser_pb2_grpc

from checkin.flow.models import (
    AnnulReason,
    AnnulRequest,
    CardSource,
    Completed,
    CompleteRequest,
    HeartbeatReport,
    IdCardFields,
    Identified,
    IdentifyRequest,
    NewCard,
    RefusalCode,
    Refused,
)
from checkin.flow.ports import PlatformUnavailableError
from checkin.platform_client import PlatformCallError, PlatformClient
from platform_server.bootstrap import Platform
from platform_server.config import DatabaseSection, PlatformConfig, SecuritySection
from platform_server.db.engine import make_session_factory
from platform_server.db.models import AuditEntry, Kiosk
from platform_server.dev_certs import make_dev_certificates
from platform_server.errors import ConfigError
from platform_server.server import create_server
from platform_server.services import accounts, kiosk_access
from tests.integration.kiosk.fake_platform import settings_for
from tests.integration.platform_server.rpc_helpers import SIGNATURE, complete_request, identify_request, rid
from tests.support.platform import add_person_with_token
from tests.unit.platform_server.support import Clock, Seeded, luhn_pan, seed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

TOKEN = "eco_organiser-tls-test-token-0123456789"  # an admin's token, stored hashed by serve_tls


@dataclass(frozen=True)
class Pki:
    """The platform's development CA with kiosks K1 and K2, and a stranger's CA that also issued a K1."""

    ours: Path
    other: Path

    def kiosk(self, kiosk_id: str, *, ca: Path | None = None) -> tuple[Path, Path]:
        folder = ca or self.ours
        return folder / f"kiosk-{kiosk_id}.pem", folder / f"kiosk-{kiosk_id}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ours = tmp_path_factory.mktemp("pki-ours")
    other = tmp_path_factory.mktemp("pki-other")
    make_dev_certificates(ours, ["K1", "K2"], ["localhost", "127.0.0.1"])
    make_dev_certificates(other, ["K1"], ["localhost", "127.0.0.1"])
    return Pki(ours, other)


@dataclass
class TlsPlatform:
    """A seeded platform served with TLS and required client certificates."""

    seeded: Seeded
    platform: Platform
    server: grpc.Server
    port: int
    pki: Pki

    def channel(self, *, ca: Path | None = None, client: tuple[Path, Path] | None = None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(ca or self.pki.ours / "ca.pem").read_bytes(),
            private_key=client[1].read_bytes() if client else None,
            certificate_chain=client[0].read_bytes() if client else None,
        )
        return grpc.secure_channel(f"127.0.0.1:{self.port}", credentials)

    def client(self, kiosk_id: str, *, cert_of: str | None = None) -> PlatformClient:
        """The kiosk's own client, configured as a kiosk would be (ca_cert, client_cert, client_key)."""
        cert, key = self.pki.kiosk(cert_of or kiosk_id)
        settings = settings_for(self.port, ca_cert=self.pki.ours / "ca.pem", client_cert=cert, client_key=key)
        return PlatformClient(settings, kiosk_id)

    def count(self, statement: sa.Select[Any]) -> int:
        with self.platform.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())


def tls_config(db: str, pki: Pki) -> PlatformConfig:
    return PlatformConfig(
        database=DatabaseSection(url=db),
        security=SecuritySection(
            tls_cert=str(pki.ours / "server.pem"),
            tls_key=str(pki.ours / "server.key"),
            client_ca=str(pki.ours / "ca.pem"),
        ),
    )


def serve_tls(tmp_path: Path, pki: Pki, *, allow_id_only: bool = True) -> TlsPlatform:
    clock = Clock(dt.datetime.now(dt.UTC))
    seeded = seed(f"sqlite:///{tmp_path / 'platform.db'}", clock=clock, allow_id_only=allow_id_only)
    add_person_with_token(seeded, "admin", accounts.Role.ADMIN, TOKEN)
    for kiosk_id in seeded.kiosk_ids:  # the one certificate accepted for each kiosk
        cert, _key = pki.kiosk(kiosk_id)
        kiosk_access.register_certificate(seeded.new_uow(), seeded.ctx, kiosk_id, cert.read_bytes(), actor="test")
    config = tls_config(seeded.url, pki)
    engine = seeded.uow._session_factory.kw["bind"]
    platform = Platform(config, engine, make_session_factory(engine), seeded.ctx)
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    return TlsPlatform(seeded, platform, server, port, pki)


@pytest.fixture
def tls(tmp_path: Path, pki: Pki) -> Iterator[TlsPlatform]:
    running = serve_tls(tmp_path, pki)
    yield running
    running.platform.stopping.set()
    running.server.stop(None).wait()
    running.platform.engine.dispose()


def identify_request_for(id_number: str, batch: str) -> IdentifyRequest:
    return IdentifyRequest(
        request_id=rid(),
        batch_code=batch,
        id_card=IdCardFields(id_number=id_number, name="专家", valid_to="长期"),
        faces=(),
        face_quality=0.0,
        liveness_passed=False,
        face_attempt=1,
    )


def test_dev_certificates_are_per_kiosk_and_keys_owner_only(pki: Pki) -> None:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    for kiosk_id in ("K1", "K2"):
        cert_path, key_path = pki.kiosk(kiosk_id)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == kiosk_id
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((pki.ours / "server.key").stat().st_mode) == 0o600


def test_kiosk_with_its_own_certificate_checks_in_through_the_kiosk_client(tls: TlsPlatform) -> None:
    s = tls.seeded
    client = tls.client("K1")
    try:
        context = client.get_context()
        assert context.batch is not None
        assert context.batch.code == s.batch_code
        identified = client.identify(identify_request_for(s.ids[0], s.batch_code))
        assert isinstance(identified, Identified), identified
        assert identified.expert_name == "专家0"
        done = client.complete_check_in(
            CompleteRequest(
                request_id=rid(),
                identification_token=identified.identification_token,
                new_card=NewCard(pan=luhn_pan(), source=CardSource.CHIP),
                signature_png=SIGNATURE,
                band_uid=s.bands[0][0],
            )
        )
        assert isinstance(done, Completed), done
        assert done.check_in.room_number == s.rooms[0]
        ack = client.heartbeat(
            HeartbeatReport(
                kiosk_time=dt.datetime.now(dt.UTC),
                devices=(),
                band_stock=50,
                pending_check_ins=0,
                out_of_service=False,
                software_version="test",
            )
        )
        assert ack.server_time is not None
    finally:
        client.close()


def _kiosk_calls(s: Seeded, kiosk_id: str) -> list[tuple[str, object]]:
    """One request of every KioskService method, all naming `kiosk_id`."""
    return [
        ("GetKioskContext", kiosk_pb2.GetKioskContextRequest(kiosk_id=kiosk_id)),
        ("IdentifyExpert", identify_request(kiosk_id, s.batch_code, s.ids[0])),
        ("CompleteCheckIn", complete_request(kiosk_id, "some-token", s.bands[0][0])),
        (
            "AnnulCheckIn",
            kiosk_pb2.AnnulCheckInRequest(
                request_id=rid(), kiosk_id=kiosk_id, check_in_id="ci_0", reason=kiosk_pb2.ANNUL_REASON_BAND_NOT_TAKEN
            ),
        ),
        ("Heartbeat", kiosk_pb2.HeartbeatRequest(kiosk_id=kiosk_id, band_stock=3)),
        ("ReportKioskEvent", kiosk_pb2.ReportKioskEventRequest(request_id=rid(), kiosk_id=kiosk_id, event="x")),
    ]


def test_every_kiosk_call_naming_another_kiosk_is_permission_denied(tls: TlsPlatform) -> None:
    audit_rows = tls.count(sa.select(sa.func.count()).select_from(AuditEntry))
    channel = tls.channel(client=tls.pki.kiosk("K1"))
    stub = kiosk_pb2_grpc.KioskServiceStub(channel)
    try:
        for method, request in _kiosk_calls(tls.seeded, "K2"):
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, method)(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert "does not match the client certificate" in (info.value.details() or ""), method
    finally:
        channel.close()
    # Nothing reached the services: no audit row, K2's heartbeat untouched.
    assert tls.count(sa.select(sa.func.count()).select_from(AuditEntry)) == audit_rows
    assert tls.count(sa.select(sa.func.count()).where(Kiosk.last_heartbeat_at.is_not(None))) == 0


def test_kiosk_client_with_a_mismatched_certificate_gets_a_call_error_not_a_retry(tls: TlsPlatform) -> None:
    client = tls.client("K2", cert_of="K1")
    try:
        with pytest.raises(PlatformCallError) as info:
            client.get_context()
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        client.close()


@pytest.mark.parametrize("who", ["no certificate", "certificate from another CA", "plaintext"])
def test_handshake_without_a_certificate_of_our_ca_is_refused(tls: TlsPlatform, who: str) -> None:
    if who == "plaintext":
        channel = grpc.insecure_channel(f"127.0.0.1:{tls.port}")
    elif who == "no certificate":
        channel = tls.channel()
    else:
        channel = tls.channel(client=tls.pki.kiosk("K1", ca=tls.pki.other))
    stub = kiosk_pb2_grpc.KioskServiceStub(channel)
    try:
        # The TLS handshake fails before any RPC exists, so the client can only see UNAVAILABLE
        # (the server's gRPC log names the reason: no certificate, or a bad signature).
        for method, request in _kiosk_calls(tls.seeded, "K1"):
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, method)(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, method
    finally:
        channel.close()
    assert tls.count(sa.select(sa.func.count()).where(Kiosk.last_heartbeat_at.is_not(None))) == 0
    assert tls.count(sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.actor == "K1")) == 0


def test_kiosk_refuses_a_server_certified_by_another_ca(tls: TlsPlatform) -> None:
    channel = tls.channel(ca=tls.pki.other / "ca.pem", client=tls.pki.kiosk("K1"))
    try:
        with pytest.raises(grpc.RpcError) as info:
            kiosk_pb2_grpc.KioskServiceStub(channel).GetKioskContext(
                kiosk_pb2.GetKioskContextRequest(kiosk_id="K1"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_kiosk_client_treats_a_refused_handshake_as_platform_unavailable(tls: TlsPlatform) -> None:
    cert, key = tls.pki.kiosk("K1", ca=tls.pki.other)
    settings = settings_for(tls.port, ca_cert=tls.pki.ours / "ca.pem", client_cert=cert, client_key=key)
    client = PlatformClient(settings, "K1")
    try:
        with pytest.raises(PlatformUnavailableError):
            client.get_context()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong-token-0123456789"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED),  # no "Bearer "
        ((("authorization", f"Bearer {TOKEN}"),), grpc.StatusCode.OK),
    ],
    ids=["no token", "wrong token", "no bearer prefix", "right token"],
)
def test_organiser_calls_need_a_persons_token_even_with_a_kiosk_certificate(
    tls: TlsPlatform, metadata: tuple[tuple[str, str], ...], expected: grpc.StatusCode
) -> None:
    channel = tls.channel(client=tls.pki.kiosk("K1"))
    stub = organiser_pb2_grpc.OrganiserServiceStub(channel)
    batches_before = tls.count(sa.select(sa.func.count()).select_from(AuditEntry))
    try:
        calls: list[Callable[[], object]] = [
            lambda: stub.ListBatches(organiser_pb2.ListBatchesRequest(), metadata=metadata, timeout=5),
            lambda: stub.CloseBatch(
                organiser_pb2.CloseBatchRequest(request_id=rid(), code=tls.seeded.batch_code),
                metadata=metadata,
                timeout=5,
            ),
        ]
        for call in calls:
            if expected == grpc.StatusCode.OK:
                call()
                continue
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == expected
            assert "Bearer" in (info.value.details() or "")
    finally:
        channel.close()
    closed = tls.count(sa.select(sa.func.count()).select_from(AuditEntry)) > batches_before
    assert closed == (expected == grpc.StatusCode.OK)


def test_a_kiosk_cannot_act_on_another_kiosks_check_in(tls: TlsPlatform) -> None:
    s = tls.seeded
    k1, k2 = tls.client("K1"), tls.client("K2")
    try:
        identified = k1.identify(identify_request_for(s.ids[1], s.batch_code))
        assert isinstance(identified, Identified)
        complete = CompleteRequest(
            request_id=rid(),
            identification_token=identified.identification_token,
            new_card=NewCard(pan=luhn_pan(), source=CardSource.CHIP),
            signature_png=SIGNATURE,
            band_uid=s.bands[1][0],
        )
        stolen = k2.complete_check_in(complete)
        assert isinstance(stolen, Refused)
        assert stolen.refusal.code is RefusalCode.IDENTIFICATION_EXPIRED
        done = k1.complete_check_in(complete)
        assert isinstance(done, Completed), done
        annul = AnnulRequest(
            request_id=rid(), check_in_id=done.check_in.check_in_id, reason=AnnulReason.BAND_NOT_TAKEN, detail=""
        )
        assert isinstance(k2.annul_check_in(annul), Refused)
    finally:
        k1.close()
        k2.close()


def test_a_refused_identify_discloses_nothing_of_the_expert_on_file(tmp_path: Path, pki: Pki) -> None:
    running = serve_tls(tmp_path, pki, allow_id_only=False)  # no photos: every invited expert is refused
    channel = running.channel(client=pki.kiosk("K1"))
    try:
        stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        answer = stub.IdentifyExpert(identify_request("K1", running.seeded.batch_code, running.seeded.ids[0]))
        assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NO_REFERENCE_PHOTO
        assert not answer.expert_name
        assert not answer.organisation
        assert not answer.HasField("previous_check_in")
        assert not answer.bank_card_on_file.pan_masked
    finally:
        channel.close()
        running.server.stop(None).wait()
        running.platform.engine.dispose()


def _config_with(pki: Pki, **security: str) -> PlatformConfig:
    base = tls_config("sqlite://", pki).security
    values = {f: getattr(base, f) for f in ("organiser_token", "tls_cert", "tls_key", "client_ca")}
    return PlatformConfig(security=SecuritySection(**{**values, **security}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls_cert": "", "tls_key": ""}, "'client_ca' in section 'security' needs tls_cert and tls_key"),
        ({"tls_key": ""}, "'tls_cert' and 'tls_key' in section 'security' must be set together"),
        ({"tls_key": "KIOSK_KEY"}, "is not the key of"),
        ({"tls_cert": "/nonexistent/server.pem"}, "cannot read /nonexistent/server.pem"),
        ({"client_ca": "SERVER_KEY"}, "'client_ca' in section 'security'"),
        ({"tls_cert": "SERVER_KEY"}, "holds no PEM certificate"),
    ],
    ids=["ca without tls", "cert without key", "key of another cert", "missing file", "ca not a cert", "cert is a key"],
)
def test_server_refuses_tls_settings_it_cannot_serve_with(
    tmp_path: Path, pki: Pki, change: dict[str, str], message: str
) -> None:
    files = {"KIOSK_KEY": str(pki.kiosk("K1")[1]), "SERVER_KEY": str(pki.ours / "server.key")}
    config = _config_with(pki, **{k: files.get(v, v) for k, v in change.items()})
    config = config.replace(database=DatabaseSection(url=f"sqlite:///{tmp_path / 'p.db'}"))
    with pytest.raises(ConfigError, match=message):
        create_server(config, listen="127.0.0.1:0")
