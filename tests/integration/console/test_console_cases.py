"""The needs-staff queue: open cases listed masked, each staff action ends its case and is audited with the person."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import kiosk_pb2

from platform_server.console import serve
from platform_server.db.models import AuditEntry, CheckIn, Invitation, NeedsStaffCase, UwbDelivery
from platform_server.errors import ConfigError
from platform_server.services import accounts, alerts, cases, uwb
from tests.integration.console.support import Browserless, ConsoleServer, add_person, start_console
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import Running, start, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

B = "/batches/B2025"


@pytest.fixture
def served(tmp_path: pytest.TempPathFactory) -> Iterator[tuple[Running, ConsoleServer]]:
    running = start(f"sqlite:///{tmp_path}/platform.db")
    for role in accounts.Role:
        add_person(running.platform, f"{role.value}.person", role)
    console = start_console(running.platform)
    yield running, console
    console.stop()
    stop(running)


def check_in(running: Running, n: int) -> tuple[int, int, str]:
    """A check-in of expert n at K1: its row id, its invitation's row id and its public id."""
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[n])).identification_token
    public_id = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[n][0])).check_in.check_in_id
    with running.platform.engine.connect() as c:
        row = c.execute(sa.select(CheckIn.id, CheckIn.invitation_id).where(CheckIn.public_id == public_id)).one()
    return int(row.id), int(row.invitation_id), public_id


def open_case(running: Running, kind: cases.CaseKind, check_in_pk: int, invitation_pk: int) -> str:
    with running.platform.engine.connect() as c:
        batch_id = c.execute(sa.text("SELECT id FROM batches WHERE code = 'B2025'")).scalar_one()
    return cases.open_case_now(
        running.platform.new_uow(),
        running.platform.ctx,
        kind=kind,
        created_by="uwb",
        kiosk_id="K1",
        batch_id=int(batch_id),
        invitation_id=invitation_pk,
        check_in_pk=check_in_pk,
        band_uid=running.seeded.bands[0][0],
        reason="uwb_assign_failed",
    )


def audit_of(running: Running, actor: str, action: str) -> list[str]:
    query = sa.select(AuditEntry.detail).where(AuditEntry.actor == actor, AuditEntry.action == action)
    with running.platform.engine.connect() as c:
        return list(c.execute(query).scalars())


def state_of(running: Running, case_id: str) -> tuple[str, str | None]:
    query = sa.select(NeedsStaffCase.state, NeedsStaffCase.resolution).where(NeedsStaffCase.public_id == case_id)
    with running.platform.engine.connect() as c:
        row = c.execute(query).one()
    return str(row.state), row.resolution


def test_queue_lists_open_cases_masked_and_viewer_gets_no_actions(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    pk, invitation, _ = check_in(running, 0)
    case_id = open_case(running, cases.CaseKind.UWB_DELIVERY_FAILED, pk, invitation)
    viewer = Browserless(console.url)
    viewer.login("viewer.person")
    page = viewer.request("GET", f"{B}/needs-staff").text
    full_id = running.seeded.ids[0]
    assert case_id in page
    assert "手环写入失败" in page
    assert full_id not in page
    assert full_id[:4] + "*" * 10 + full_id[-4:] in page
    assert "/resolve" not in page
    panel = viewer.request("GET", f"{B}/needs-staff/panel").text
    assert case_id in panel
    assert viewer.post(f"{B}/cases/{case_id}/resolve", {"reason": "x", "outcome": "resolved"}).status == 403
    assert state_of(running, case_id) == ("open", None)


def test_hand_over_at_the_desk_resolves_with_the_reason_and_the_person(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    pk, invitation, _ = check_in(running, 0)
    case_id = open_case(running, cases.CaseKind.UWB_DELIVERY_FAILED, pk, invitation)
    organiser = Browserless(console.url)
    organiser.login("organiser.person")
    assert organiser.request("GET", f"{B}/needs-staff").text.count("/resolve") == 1
    empty = organiser.post(f"{B}/cases/{case_id}/resolve", {"reason": "  ", "outcome": "handed_over"})
    assert empty.status == 400
    assert "reason" in empty.text
    assert state_of(running, case_id) == ("open", None)
    wrong = organiser.post(f"{B}/cases/{case_id}/resolve", {"reason": "x", "outcome": "lost"})
    assert wrong.status == 400
    done = organiser.post(f"{B}/cases/{case_id}/resolve", {"reason": "房卡交给专家本人", "outcome": "handed_over"})
    assert done.status == 303
    state, resolution = state_of(running, case_id)
    assert state == "resolved"
    assert resolution == "服务台交付手环 / band handed over at the desk: 房卡交给专家本人"
    assert any(case_id in d for d in audit_of(running, "person:organiser.person", "needs_staff_resolve"))
    assert case_id not in organiser.request("GET", f"{B}/needs-staff/panel").text
    again = organiser.post(f"{B}/cases/{case_id}/resolve", {"reason": "again", "outcome": "resolved"})
    assert again.status == 400
    assert "already resolved" in again.text


def admin_board(console: ConsoleServer) -> str:
    admin = Browserless(console.url)
    admin.login("admin.person")
    return admin.request("GET", B).text


def test_annul_from_a_case_annuls_the_check_in_then_resolves(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    pk, invitation, public_id = check_in(running, 1)
    assert public_id in admin_board(console)
    case_id = open_case(running, cases.CaseKind.QUEUED_CHECK_IN_REFUSED, pk, invitation)
    admin = Browserless(console.url)
    admin.login("admin.person")
    assert admin.post(f"{B}/cases/{case_id}/annul", {"reason": "手环已归还，签到作废"}).status == 303
    with running.platform.engine.connect() as c:
        annulled = c.execute(sa.select(CheckIn.annulled_at).where(CheckIn.id == pk)).scalar_one()
    assert annulled is not None
    assert state_of(running, case_id)[0] == "resolved"
    assert any("手环已归还" in d for d in audit_of(running, "person:admin.person", "annul_check_in"))
    assert any(case_id in d for d in audit_of(running, "person:admin.person", "needs_staff_resolve"))
    assert case_id not in admin.request("GET", f"{B}/needs-staff").text


def test_face_reset_from_a_case(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    pk, invitation, _ = check_in(running, 2)
    case_id = open_case(running, cases.CaseKind.KIOSK_SIGNAL, pk, invitation)
    organiser = Browserless(console.url)
    organiser.login("organiser.person")
    nothing = organiser.post(f"{B}/cases/{case_id}/face-reset", {"reason": "本人到服务台"})
    assert nothing.status == 400  # no failed attempts: nothing to reset, the case stays open
    assert state_of(running, case_id)[0] == "open"
    with running.platform.engine.begin() as c:
        c.execute(sa.update(Invitation).where(Invitation.id == invitation).values(face_failures=3))
    assert organiser.post(f"{B}/cases/{case_id}/face-reset", {"reason": "本人到服务台"}).status == 303
    with running.platform.engine.connect() as c:
        failures = c.execute(sa.select(Invitation.face_failures).where(Invitation.id == invitation)).scalar_one()
    assert failures == 0
    assert state_of(running, case_id)[0] == "resolved"
    assert audit_of(running, "person:organiser.person", "face_attempts_reset")


def test_board_shows_where_experts_give_up_from_the_kiosks_step_events(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    viewer = Browserless(console.url)
    viewer.login("viewer.person")
    assert "No step timings" in viewer.request("GET", f"{B}/steps").text
    for ms, end in ((4000, "next"), (6000, "next"), (30000, "cancelled")):
        running.kiosk.ReportKioskEvent(
            kiosk_pb2.ReportKioskEventRequest(
                request_id=str(uuid.uuid4()),
                kiosk_id="K1",
                event="step",
                outcome="face",
                detail=f"ms={ms} end={end}",
            )
        )
    panel = viewer.request("GET", f"{B}/steps").text
    row = panel[panel.index('data-step="face"') :].split("</tr>")[0]
    cells = [c.split("<")[0].strip() for c in row.split('class="n')[1:]]
    assert [c.split(">", 1)[1] for c in cells] == ["3", "1", "0", "6.0 s", "30.0 s"]
    assert 'id="steps-panel"' in viewer.request("GET", B).text


def test_fleet_acknowledge_an_alert_and_take_a_kiosk_out_of_service_and_back(
    served: tuple[Running, ConsoleServer],
) -> None:
    running, console = served
    running.kiosk.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=3))
    console.console.check_alerts()  # (the console's own loop may have opened it already)
    (alert,) = [a for a in alerts.list_alerts(running.platform.new_uow()) if a.state == "open"]
    assert (alert.rule, alert.subject) == ("stock_low", "K1")
    organiser = Browserless(console.url)
    organiser.login("organiser.person")
    assert f'action="/fleet/alerts/{alert.alert_id}/acknowledge"' in organiser.request("GET", "/fleet/panel").text
    assert organiser.post(f"/fleet/alerts/{alert.alert_id}/acknowledge").status == 303
    panel = organiser.request("GET", "/fleet/panel").text
    assert f'data-alert="{alert.alert_id}" data-rule="stock_low" data-subject="K1" data-state="acknowledged"' in panel
    again = organiser.post(f"/fleet/alerts/{alert.alert_id}/acknowledge")
    assert again.status == 400
    assert "already acknowledged" in again.text
    assert audit_of(running, "person:organiser.person", "alert_acknowledged")

    # Out of service remotely: the platform refuses the kiosk's calls (the kiosk shows out of service).
    assert organiser.post("/fleet/kiosks/K1/disable", {"reason": " "}).status == 400
    assert organiser.post("/fleet/kiosks/K1/disable", {"reason": "更换读卡器"}).status == 303
    assert 'data-kiosk="K1" data-online="1" data-disabled="1"' in organiser.request("GET", "/fleet/panel").text
    with pytest.raises(grpc.RpcError) as refused:
        running.kiosk.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=40))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert organiser.post("/fleet/kiosks/K1/enable").status == 303
    running.kiosk.Heartbeat(kiosk_pb2.HeartbeatRequest(kiosk_id="K1", band_stock=40))
    assert 'data-kiosk="K1" data-online="1" data-disabled="0"' in organiser.request("GET", "/fleet/panel").text
    actions = [a for a in ("kiosk_disable", "kiosk_enable") if audit_of(running, "person:organiser.person", a)]
    assert actions == ["kiosk_disable", "kiosk_enable"]


def test_alert_thresholds_and_durations_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    base = alerts.AlertSettings()
    monkeypatch.setenv("PLATFORM_CONSOLE_ALERT_QUEUE_STUCK_FOR_S", "600")
    monkeypatch.setenv("PLATFORM_CONSOLE_ALERT_UWB_FAILED_MIN", "3")
    changed = serve.alert_settings_from_env(base)
    assert (changed.queue_stuck_for_s, changed.uwb_failed_min) == (600.0, 3)
    assert changed.device_fault_for_s == base.device_fault_for_s
    monkeypatch.setenv("PLATFORM_CONSOLE_ALERT_UWB_FAILED_MIN", "three")
    with pytest.raises(ConfigError, match="PLATFORM_CONSOLE_ALERT_UWB_FAILED_MIN"):
        serve.alert_settings_from_env(base)


def test_admin_exports_the_audit_for_a_date_range(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    check_in(running, 0)  # 2025-06-01 08:30 China time (the test clock)
    admin = Browserless(console.url)
    admin.login("admin.person")
    assert 'action="/audit/export.csv"' in admin.request("GET", "/").text
    answer = admin.request("GET", "/audit/export.csv?since=2025-06-01&until=2025-06-01")
    assert answer.status == 200
    rows = list(csv.DictReader(io.StringIO(answer.text.lstrip("\ufeff"))))
    assert "complete_check_in" in {r["action"] for r in rows}
    # China's 2025-06-01 is 2025-05-31 16:00 .. 2025-06-01 16:00 UTC.
    times = [dt.datetime.fromisoformat(r["occurred_at"]).replace(tzinfo=dt.UTC) for r in rows]
    start, end = dt.datetime(2025, 5, 31, 16, tzinfo=dt.UTC), dt.datetime(2025, 6, 1, 16, tzinfo=dt.UTC)
    assert all(start <= t < end for t in times), times
    assert running.seeded.ids[0] not in answer.text  # masked only
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == sorted(seqs)
    assert seqs
    empty = admin.request("GET", "/audit/export.csv?since=2025-06-02&until=2025-06-03")
    assert len(list(csv.DictReader(io.StringIO(empty.text.lstrip("\ufeff"))))) == 0
    for bad in ("since=2025-06-02&until=2025-06-01", "since=x&until=2025-06-01", "since=2020-01-01&until=2025-06-01"):
        assert admin.request("GET", f"/audit/export.csv?{bad}").status == 400
    assert len(audit_of(running, "person:admin.person", "audit_export")) == 2
    organiser = Browserless(console.url)
    organiser.login("organiser.person")
    assert 'action="/audit/export.csv"' not in organiser.request("GET", "/").text


def test_metrics_carry_the_kiosk_screen_times_as_a_histogram(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    for ms in (800, 1500, 4000):
        running.kiosk.ReportKioskEvent(
            kiosk_pb2.ReportKioskEventRequest(
                request_id=str(uuid.uuid4()),
                kiosk_id="K1",
                event="step",
                outcome="verifying",
                detail=f"ms={ms} end=next",
            )
        )
    text = Browserless(console.url).request("GET", "/metrics").text
    assert "# TYPE checkin_kiosk_step_seconds histogram" in text  # a gauge histogram in the text format
    assert 'checkin_kiosk_step_seconds_bucket{le="1.0",step="verifying"} 1.0' in text
    assert 'checkin_kiosk_step_seconds_bucket{le="2.0",step="verifying"} 2.0' in text
    assert 'checkin_kiosk_step_seconds_bucket{le="+Inf",step="verifying"} 3.0' in text
    assert 'checkin_kiosk_step_seconds_gsum{step="verifying"} 6.3' in text


def test_metrics_say_how_many_band_writes_wait_and_how_long_the_oldest_has(
    served: tuple[Running, ConsoleServer],
) -> None:
    running, console = served
    scrape = Browserless(console.url)

    def figures() -> tuple[str, str]:
        lines = scrape.request("GET", "/metrics").text.splitlines()
        pending = next(line for line in lines if line.startswith("checkin_uwb_pending "))
        oldest = next(line for line in lines if line.startswith("checkin_uwb_oldest_pending_seconds "))
        return pending.split()[1], oldest.split()[1]

    assert figures() == ("0.0", "0.0")
    first, _, _ = check_in(running, 0)  # no delivery worker here: the rows stay pending
    running.clock.advance(30)
    check_in(running, 1)
    running.clock.advance(12)
    assert figures() == ("2.0", "42.0")
    with running.platform.engine.connect() as c:
        delivery = c.execute(sa.select(UwbDelivery.id).where(UwbDelivery.check_in_id == first)).scalar_one()
    uwb.mark_delivered(running.platform.new_uow(), running.platform.ctx, delivery)
    assert figures() == ("1.0", "12.0")


def test_resend_to_the_band_queues_a_new_write_and_resolves(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    pk, _, public_id = check_in(running, 3)
    platform = running.platform
    # The delivery worker gives the room write up (the real path: it opens the case).
    with platform.engine.connect() as c:
        delivery = c.execute(sa.select(UwbDelivery.id).where(UwbDelivery.check_in_id == pk)).scalar_one()
    given_up = uwb.mark_failed_attempt(
        platform.new_uow(), platform.ctx, delivery, "gateway timeout", max_attempts=1, retry_after=dt.timedelta(1)
    )
    assert given_up
    (case,) = [c for c in cases.list_cases(platform.new_uow(), batch_code="B2025") if c.check_in_id == public_id]
    assert case.kind == "uwb_delivery_failed"
    organiser = Browserless(console.url)
    organiser.login("organiser.person")
    assert f"/cases/{case.case_id}/resend" in organiser.request("GET", f"{B}/needs-staff").text
    assert organiser.post(f"{B}/cases/{case.case_id}/resend", {"reason": ""}).status == 400
    done = organiser.post(f"{B}/cases/{case.case_id}/resend", {"reason": "网关已恢复"})
    assert done.status == 303
    with platform.engine.connect() as c:
        rows = c.execute(
            sa.select(UwbDelivery.state, UwbDelivery.attempts)
            .where(UwbDelivery.check_in_id == pk)
            .order_by(UwbDelivery.id)
        ).all()
    assert [tuple(r) for r in rows] == [("failed", 1), ("pending", 0)]
    assert [d.check_in_id for d in uwb.claim_due(platform.new_uow(), platform.ctx.clock())] == [pk]
    assert state_of(running, case.case_id)[0] == "resolved"
    assert audit_of(running, "person:organiser.person", "uwb_resend")
    # Another kind of case has nothing to re-send.
    other = open_case(running, cases.CaseKind.KIOSK_SIGNAL, pk, 1)
    refused = organiser.post(f"{B}/cases/{other}/resend", {"reason": "x"})
    assert refused.status == 400
    assert "nothing to re-send" in refused.text
