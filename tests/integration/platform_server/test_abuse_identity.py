"""Abuse of kiosk identity through real gRPC over real TLS: every trick gets its own status, nothing is written.

The server is the real one on a free port with client certificates required, over SQLite and (when
PLATFORM_TEST_PG_URL is set) PostgreSQL. "Nothing is written" is checked on the database itself: every
row of every table is the same before and after the refused call.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc

from platform_server.bootstrap import Platform
from platform_server.config import DatabaseSection, PlatformConfig, RulesSection, SecuritySection
from platform_server.db.engine import make_session_factory
from platform_server.db.models import Base, Kiosk, NeedsStaffCase
from platform_server.dev_certs import make_dev_certificates
from platform_server.errors import ConfigError
from platform_server.server import create_server
from platform_server.services import batches, cases, identification_token, kiosk_access, kiosks
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request, rid
from tests.unit.platform_server.support import Clock, Seeded, make_id, seed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

TOKEN = "organiser-abuse-test-token-0123456789"
STREAK = 3  # refusals in a row before the kiosk is slowed down (kept small for the test)
THROTTLE_S = 60.0
OTHER_BATCH = "B2026"
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our development CA: K1, K2, K3 registered below; K9 has a certificate of our CA but is not registered."""
    folder = tmp_path_factory.mktemp("pki-abuse")
    make_dev_certificates(folder, ["K1", "K2", "K3", "K9"], ["localhost", "127.0.0.1"])
    return folder


@dataclass
class Served:
    """The platform with TLS and client certificates; K1-K3 serve B2025, K1's certificate registered."""

    seeded: Seeded
    platform: Platform
    server: grpc.Server
    port: int
    pki: Path
    clock: Clock
    channels: list[grpc.Channel]

    def stub(self, cert_of: str | None = "K1") -> kiosk_pb2_grpc.KioskServiceStub:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(self.pki / "ca.pem").read_bytes(),
            private_key=(self.pki / f"kiosk-{cert_of}.key").read_bytes() if cert_of else None,
            certificate_chain=(self.pki / f"kiosk-{cert_of}.pem").read_bytes() if cert_of else None,
        )
        channel = grpc.secure_channel(f"127.0.0.1:{self.port}", credentials)
        self.channels.append(channel)
        return kiosk_pb2_grpc.KioskServiceStub(channel)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (the test databases are small)."""
        with self.platform.engine.connect() as connection:
            return {
                table.name: sorted((tuple(row) for row in connection.execute(sa.select(table))), key=repr)
                for table in Base.metadata.sorted_tables
            }

    def token_for(self, kiosk_id: str, id_number: str, *, batch_id: int | None = None) -> str:
        """A token as IdentifyExpert issues it (the platform's own key); `batch_id` forges another batch."""
        answer = self.stub(kiosk_id).IdentifyExpert(identify_request(kiosk_id, self.seeded.batch_code, id_number))
        assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED, answer.refusal
        if batch_id is None:
            return str(answer.identification_token)
        claims = identification_token.verify(self.seeded.ctx.data_key, answer.identification_token)
        assert claims is not None
        forged = identification_token.Identification(
            claims.kiosk_id,
            claims.invitation_id,
            claims.expert_id,
            batch_id,
            None,
            None,
            claims.expires_at_us,
            claims.last_check_in_id,
        )
        return identification_token.issue(self.seeded.ctx.data_key, forged)


@pytest.fixture
def served(db_url: str, pki: Path) -> Iterator[Served]:
    clock = Clock(dt.datetime.now(dt.UTC))
    rules = RulesSection(kiosk_refusal_streak=STREAK, kiosk_throttle_s=THROTTLE_S)
    seeded = seed(db_url, clock=clock, rules=rules, kiosk_ids=["K1", "K2", "K3"], pool_size=12)
    for kiosk_id in ("K1", "K2", "K3"):
        pem = (pki / f"kiosk-{kiosk_id}.pem").read_bytes()
        kiosk_access.register_certificate(seeded.new_uow(), seeded.ctx, kiosk_id, pem, actor="test")
    now = clock()
    batches.create_batch(
        seeded.new_uow(),
        seeded.ctx,
        batches.BatchSpec(
            code=OTHER_BATCH,
            name="另一批次",
            evaluation_start=now + dt.timedelta(hours=2),
            evaluation_end=now + dt.timedelta(hours=10),
            check_in_opens=now - dt.timedelta(hours=1),
            allow_id_only=True,
        ),
    )
    config = PlatformConfig(
        database=DatabaseSection(url=db_url),
        security=SecuritySection(
            organiser_token=TOKEN,
            tls_cert=str(pki / "server.pem"),
            tls_key=str(pki / "server.key"),
            client_ca=str(pki / "ca.pem"),
        ),
        rules=rules,
    )
    engine = seeded.uow._session_factory.kw["bind"]
    platform = Platform(config, engine, make_session_factory(engine), seeded.ctx)
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    running = Served(seeded, platform, server, port, pki, clock, [])
    yield running
    for channel in running.channels:
        channel.close()
    platform.stopping.set()
    server.stop(None).wait()
    engine.dispose()


def every_kiosk_call(served: Served, kiosk_id: str) -> dict[str, Callable[[kiosk_pb2_grpc.KioskServiceStub], Any]]:
    """One call of each KioskService method, naming `kiosk_id`."""
    seeded = served.seeded
    return {
        "GetKioskContext": lambda s: s.GetKioskContext(kiosk_pb2.GetKioskContextRequest(kiosk_id=kiosk_id)),
        "IdentifyExpert": lambda s: s.IdentifyExpert(identify_request(kiosk_id, seeded.batch_code, seeded.ids[0])),
        "CompleteCheckIn": lambda s: s.CompleteCheckIn(complete_request(kiosk_id, "x.y", seeded.bands[0][0])),
        "AnnulCheckIn": lambda s: s.AnnulCheckIn(
            kiosk_pb2.AnnulCheckInRequest(request_id=rid(), kiosk_id=kiosk_id, check_in_id="ci_0")
        ),
        "Heartbeat": lambda s: s.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id=kiosk_id, band_stock=10)),
        "ReportKioskEvent": lambda s: s.ReportKioskEvent(
            kiosk_pb2.ReportKioskEventRequest(
                request_id=rid(), kiosk_id=kiosk_id, event="dispense", outcome="needs_staff", detail="x"
            )
        ),
    }


def refused_everywhere(served: Served, stub: kiosk_pb2_grpc.KioskServiceStub, kiosk_id: str, code: Code) -> list[str]:
    """Every kiosk call gets `code`; the database is untouched. Returns the details (one per method)."""
    before = served.snapshot()
    details = []
    for method, call in every_kiosk_call(served, kiosk_id).items():
        with pytest.raises(grpc.RpcError) as info:
            call(stub)
        assert info.value.code() == code, (method, info.value.details())
        details.append(str(info.value.details()))
    assert served.snapshot() == before, "a refused call wrote to the database"
    return details


def test_a_kiosk_certificate_naming_another_kiosk_is_permission_denied(served: Served) -> None:
    details = refused_everywhere(served, served.stub("K1"), "K2", Code.PERMISSION_DENIED)
    assert all("does not match the client certificate" in d for d in details)


def test_a_certificate_of_our_ca_for_an_unregistered_kiosk_is_unauthenticated(served: Served) -> None:
    details = refused_everywhere(served, served.stub("K9"), "K9", Code.UNAUTHENTICATED)
    assert all("not registered" in d for d in details)


def test_identify_for_another_batchs_code_is_permission_denied(served: Served) -> None:
    before = served.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        served.stub("K1").IdentifyExpert(identify_request("K1", OTHER_BATCH, served.seeded.ids[0]))
    assert info.value.code() == Code.PERMISSION_DENIED
    assert "assigned to batch B2025" in str(info.value.details())
    assert served.snapshot() == before


def test_an_unassigned_kiosk_acts_only_for_the_one_open_batch(served: Served) -> None:
    seeded = served.seeded
    kiosks.register_kiosk(seeded.new_uow(), seeded.ctx, "K9")  # no --batch
    pem = (served.pki / "kiosk-K9.pem").read_bytes()
    kiosk_access.register_certificate(seeded.new_uow(), seeded.ctx, "K9", pem, actor="test")
    before = served.snapshot()
    with pytest.raises(grpc.RpcError) as info:  # two batches are open: which one is not its to choose
        served.stub("K9").IdentifyExpert(identify_request("K9", seeded.batch_code, seeded.ids[0]))
    assert info.value.code() == Code.PERMISSION_DENIED
    assert "not assigned to a batch" in str(info.value.details())
    assert served.snapshot() == before
    batches.close_batch(seeded.new_uow(), seeded.ctx, OTHER_BATCH)
    answer = served.stub("K9").IdentifyExpert(identify_request("K9", seeded.batch_code, seeded.ids[0]))
    assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED


def test_complete_with_another_batchs_identification_is_permission_denied(served: Served) -> None:
    other_batch_id = served.snapshot()["batches"][1][0]
    token = served.token_for("K1", served.seeded.ids[0], batch_id=other_batch_id)
    before = served.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        served.stub("K1").CompleteCheckIn(complete_request("K1", token, served.seeded.bands[0][0]))
    assert info.value.code() == Code.PERMISSION_DENIED
    assert "assigned to batch B2025" in str(info.value.details())
    assert served.snapshot() == before


def test_a_disabled_kiosk_is_refused_at_once_and_serves_again_when_enabled(served: Served) -> None:
    seeded = served.seeded
    stub = served.stub("K1")
    token = served.token_for("K1", seeded.ids[1])  # identified before the kiosk is disabled
    kiosk_access.disable(seeded.new_uow(), seeded.ctx, "K1", reason="screen smashed", actor="test")
    details = refused_everywhere(served, stub, "K1", Code.FAILED_PRECONDITION)
    assert all("K1 is disabled" in d and "screen smashed" in d for d in details)
    before = served.snapshot()
    with pytest.raises(grpc.RpcError) as info:  # the token in hand does not help
        stub.CompleteCheckIn(complete_request("K1", token, seeded.bands[1][0]))
    assert info.value.code() == Code.FAILED_PRECONDITION
    assert served.snapshot() == before
    kiosk_access.enable(seeded.new_uow(), seeded.ctx, "K1", actor="test")
    answer = stub.CompleteCheckIn(complete_request("K1", token, seeded.bands[1][0]))
    assert answer.outcome == kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED


def test_a_removed_kiosk_is_not_found_and_its_id_is_not_reused(served: Served) -> None:
    seeded = served.seeded
    kiosk_access.remove(seeded.new_uow(), seeded.ctx, "K2", actor="test")
    details = refused_everywhere(served, served.stub("K2"), "K2", Code.NOT_FOUND)
    assert all("K2 was removed" in d for d in details)
    with pytest.raises(Exception, match="already registered"):
        kiosks.register_kiosk(seeded.new_uow(), seeded.ctx, "K2", batch_code=seeded.batch_code)


def test_a_revoked_certificate_is_unauthenticated_at_once(served: Served) -> None:
    seeded = served.seeded
    stub = served.stub("K3")
    assert stub.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K3", band_stock=10)).HasField("server_time")
    kiosk_access.revoke_certificate(seeded.new_uow(), seeded.ctx, "K3", actor="test")
    details = refused_everywhere(served, stub, "K3", Code.UNAUTHENTICATED)  # the same open channel
    assert all("revoked" in d or "no certificate is registered" in d for d in details)


def test_a_replaced_certificate_is_unauthenticated(served: Served, tmp_path: Path) -> None:
    seeded = served.seeded
    make_dev_certificates(tmp_path, ["K3"], ["localhost"])  # a new K3 certificate (another CA: never served)
    kiosk_access.register_certificate(
        seeded.new_uow(), seeded.ctx, "K3", (tmp_path / "kiosk-K3.pem").read_bytes(), actor="test"
    )
    details = refused_everywhere(served, served.stub("K3"), "K3", Code.UNAUTHENTICATED)
    assert all("revoked or replaced" in d for d in details)


def test_a_plaintext_client_against_the_tls_server_is_unavailable(served: Served) -> None:
    before = served.snapshot()
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        for method, call in every_kiosk_call(served, "K1").items():
            with pytest.raises(grpc.RpcError) as info:
                call(stub)
            assert info.value.code() == Code.UNAVAILABLE, method
    assert served.snapshot() == before


def test_a_client_without_a_certificate_is_refused_in_the_handshake(served: Served) -> None:
    before = served.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        served.stub(None).Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K1"), timeout=10)
    assert info.value.code() == Code.UNAVAILABLE
    assert served.snapshot() == before


def test_refusals_in_a_row_slow_the_kiosk_down_and_open_one_case(served: Served) -> None:
    seeded, stub = served.seeded, served.stub("K1")
    strangers = [make_id(n, birth="19700101") for n in range(10)]  # valid numbers, invited nowhere
    for n in range(STREAK):
        answer = stub.IdentifyExpert(identify_request("K1", seeded.batch_code, strangers[n]))
        assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NOT_INVITED
    open_cases = cases.list_cases(seeded.new_uow(), kind=cases.CaseKind.KIOSK_REFUSAL_STREAK.value)
    assert [(c.kiosk_id, c.reason) for c in open_cases] == [("K1", "NOT_INVITED")]

    # Slowed down: refused before anything is looked up, with the wait in the message; nothing written.
    before = served.snapshot()
    for stranger in (strangers[STREAK], seeded.ids[0]):  # an invited expert must wait too
        with pytest.raises(grpc.RpcError) as info:
            stub.IdentifyExpert(identify_request("K1", seeded.batch_code, stranger))
        assert info.value.code() == Code.RESOURCE_EXHAUSTED
        assert "try again in 60 s" in str(info.value.details())
    assert served.snapshot() == before
    # Only identification is slowed: the kiosk still reports health and delivers its queue.
    assert stub.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=10)).HasField("server_time")

    # The delay grows: once it has passed, one more refusal locks the kiosk for twice as long.
    served.clock.advance(THROTTLE_S + 1)
    answer = stub.IdentifyExpert(identify_request("K1", seeded.batch_code, strangers[STREAK + 1]))
    assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NOT_INVITED
    with pytest.raises(grpc.RpcError) as info:
        stub.IdentifyExpert(identify_request("K1", seeded.batch_code, strangers[STREAK + 2]))
    assert "try again in 120 s" in str(info.value.details())
    assert len(cases.list_cases(seeded.new_uow(), kind=cases.CaseKind.KIOSK_REFUSAL_STREAK.value)) == 1

    # Staff resolve the case (with a reason): the kiosk serves again at once.
    cases.resolve_case(seeded.new_uow(), seeded.ctx, open_cases[0].case_id, reason="checked the lobby", actor="t")
    answer = stub.IdentifyExpert(identify_request("K1", seeded.batch_code, seeded.ids[0]))
    assert answer.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED
    with served.platform.engine.connect() as connection:
        streak = connection.execute(sa.select(Kiosk.refusal_streak).where(Kiosk.kiosk_id == "K1")).scalar_one()
        resolved = connection.execute(sa.select(NeedsStaffCase.resolved_by, NeedsStaffCase.resolution)).one()
    assert streak == 0
    assert tuple(resolved) == ("t", "checked the lobby")


def test_a_verified_expert_between_refusals_starts_the_streak_over(served: Served) -> None:
    seeded, stub = served.seeded, served.stub("K1")
    strangers = iter(make_id(n, birth="19710101") for n in range(2 * STREAK))
    for _round in range(2):
        for _ in range(STREAK - 1):
            answer = stub.IdentifyExpert(identify_request("K1", seeded.batch_code, next(strangers)))
            assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NOT_INVITED
        verified = stub.IdentifyExpert(identify_request("K1", seeded.batch_code, seeded.ids[0]))
        assert verified.outcome == kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED
    assert cases.list_cases(seeded.new_uow(), kind=cases.CaseKind.KIOSK_REFUSAL_STREAK.value) == []


def test_kiosks_without_certificates_need_the_development_switch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    plain = PlatformConfig(database=DatabaseSection(url=url), security=SecuritySection(organiser_token=TOKEN))
    with pytest.raises(ConfigError, match="insecure_kiosks"):
        create_server(plain, listen="127.0.0.1:0")
    switched = plain.replace(security=SecuritySection(organiser_token=TOKEN, insecure_kiosks=True, mode="production"))
    with pytest.raises(ConfigError, match="production mode refuses it"):
        create_server(switched, listen="127.0.0.1:0")


def test_the_development_switch_is_announced_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seeded = seed(f"sqlite:///{tmp_path / 'p.db'}", bands=1, kiosk_ids=["K1"])
    config = PlatformConfig(
        database=DatabaseSection(url=seeded.url), security=SecuritySection(organiser_token=TOKEN, insecure_kiosks=True)
    )
    engine = seeded.uow._session_factory.kw["bind"]
    platform = Platform(config, engine, make_session_factory(engine), seeded.ctx)
    with caplog.at_level("WARNING", logger="platform_server.server"):
        server, _port = create_server(config, platform, listen="127.0.0.1:0")
    server.stop(None).wait()
    engine.dispose()
    messages = [r.getMessage() for r in caplog.records]
    assert any("DEVELOPMENT SWITCH" in m and "TRUSTED WITHOUT A CERTIFICATE" in m for m in messages)
