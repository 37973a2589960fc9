"""The console in a real browser: sign in, upload with bad rows, live board, annul, alerts.

Check-ins come from a kiosk client over real gRPC against a real platform server; the console is a
real uvicorn server over the same database; the browser is Debian's chromium. CONSOLE_SCREENSHOTS=dir
saves a screenshot of each page there (docs/screens/console/ holds the ones in the docs).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from expertcheckin.v1 import kiosk_pb2
from PIL import Image, ImageDraw
from selenium.webdriver.common.by import By

from platform_server.console.app import ConsoleSettings
from platform_server.db.models import AuditEntry, CheckIn, Expert
from platform_server.services import accounts, alerts, cases, reference_set
from receipt_printer.simulator import PrinterSimulator
from tests.integration.console.browser import chromium, screenshot, wait_for
from tests.integration.console.support import PASSWORD, add_person, start_console
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import make_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium import webdriver

pytestmark = pytest.mark.slow
OFFLINE_AFTER_S = 30.0
SHOTS = Path(os.environ["CONSOLE_SCREENSHOTS"]) if os.environ.get("CONSOLE_SCREENSHOTS") else None


def open_uwb_case(running: Running, n: int) -> str:
    """Check expert n in at K1, then give up its UWB write as the delivery worker would: the case's id."""
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[n])).identification_token
    public_id = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[n][0])).check_in.check_in_id
    with running.platform.engine.connect() as c:
        row = c.execute(
            sa.select(CheckIn.id, CheckIn.invitation_id, CheckIn.batch_id).where(CheckIn.public_id == public_id)
        ).one()
    return cases.open_case_now(
        running.platform.new_uow(),
        running.platform.ctx,
        kind=cases.CaseKind.UWB_DELIVERY_FAILED,
        created_by="uwb",
        kiosk_id="K1",
        batch_id=int(row.batch_id),
        invitation_id=int(row.invitation_id),
        check_in_pk=int(row.id),
        band_uid=s.bands[n][0],
        reason="uwb_assign_failed",
    )


STEP_REPORTS = [
    ("id_card", 4200, "next"),
    ("id_card", 3100, "next"),
    ("id_card", 2800, "next"),
    ("id_card", 75000, "timeout"),
    ("face", 6100, "next"),
    ("face", 21000, "cancelled"),
    ("face", 75000, "timeout"),
    ("card_insert", 9800, "next"),
    ("signature", 12500, "next"),
    ("dispensing", 7400, "next"),
]


class Receiver:
    """A local webhook receiver: every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Running, Any, Receiver]]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    add_person(running.platform, "li.organiser", accounts.Role.ORGANISER)
    receiver = Receiver()
    settings = ConsoleSettings(
        poll_interval_s=0.1,
        alert_interval_s=0.2,
        alert_settings=alerts.AlertSettings(offline_after_s=OFFLINE_AFTER_S, stock_low=2),
        webhook_url=receiver.url,
    )
    console = start_console(running.platform, settings)
    yield running, console, receiver
    console.stop()
    receiver.close()
    stop(running)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    yield from chromium()


def sign_in(driver: webdriver.Chrome, url: str, username: str) -> None:
    driver.get(url + "/login")
    screenshot(driver, SHOTS, "01-login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(lambda: driver.find_elements(By.ID, "batches"), message="batch list after sign-in")


def audited(running: Running, actor: str) -> list[tuple[str, str]]:
    query = sa.select(AuditEntry.action, AuditEntry.outcome).where(AuditEntry.actor == actor)
    with running.platform.engine.connect() as c:
        return [(r[0], r[1]) for r in c.execute(query)]


def count(driver: webdriver.Chrome, name: str) -> int:
    return int(driver.find_element(By.ID, f"c-{name}").text)


def heartbeat(running: Running, kiosk: str, *, paper: str = "ok") -> None:
    running.kiosk.Heartbeat(
        kiosk_pb2.HeartbeatRequest(
            kiosk_id=kiosk,
            band_stock=40,
            pending_check_ins=0,
            software_version="1.4.0",
            devices=[kiosk_pb2.DeviceHealth(device="arm", state=kiosk_pb2.DEVICE_STATE_OK)],
            printer_paper=kiosk_pb2.PRINTER_PAPER_OK if paper == "ok" else kiosk_pb2.PRINTER_PAPER_OUT,
        )
    )


def test_console_in_a_real_browser(
    world: tuple[Running, Any, Receiver], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    running, console, receiver = world
    s = running.seeded
    sign_in(browser, console.url, "li.organiser")
    screenshot(browser, SHOTS, "02-batches")

    # Upload an invitations sheet with two bad rows: nothing imported, each bad row named by its number.
    sheet = tmp_path / "邀请名单.csv"
    good = make_id(900)
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")  # wrong check digit
    sheet.write_text(
        "身份证号,姓名,手机号,工作单位,专业,房间号\n"
        f"{good},王工,13800000001,设计院,给排水,\n"
        f"{bad},李工,13800000002,设计院,电气,\n"
        f"{good},张工,13800000003,设计院,暖通,\n",
        encoding="utf-8",
    )
    browser.get(f"{console.url}/batches/{s.batch_code}/upload")
    browser.find_element(By.ID, "file").send_keys(str(sheet))
    browser.find_element(By.ID, "upload").click()
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#problems td.row"), message="row errors")
    assert [r.text for r in rows] == ["3", "4"]
    screenshot(browser, SHOTS, "03-upload-errors")
    # Fixed: the same sheet without the bad rows goes in whole.
    sheet.write_text(
        f"身份证号,姓名,手机号,工作单位,专业,房间号\n{good},王工,13800000001,设计院,给排水,\n", encoding="utf-8"
    )
    browser.find_element(By.ID, "file").send_keys(str(sheet))
    browser.find_element(By.ID, "upload").click()
    message = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#message.ok"), message="imported")[0]
    assert "1" in message.text
    assert not browser.find_elements(By.ID, "problems")

    # Kiosks report how long each screen took; the board shows where experts give up.
    for step, ms, end in STEP_REPORTS:
        running.kiosk.ReportKioskEvent(
            kiosk_pb2.ReportKioskEventRequest(
                request_id=f"step-{step}-{ms}", kiosk_id="K2", event="step", outcome=step, detail=f"ms={ms} end={end}"
            )
        )
    # The live board counts a check-in made by a kiosk over gRPC, without reloading the page.
    browser.get(f"{console.url}/batches/{s.batch_code}")
    face = browser.find_element(By.CSS_SELECTOR, '#steps tr[data-step="face"]').text
    assert "3 1 1" in face, face
    wait_for(lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live", message="stream")
    browser.execute_script("window.notReloaded = true;")
    arrived = count(browser, "arrived")
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0]))
    check_in_id = done.check_in.check_in_id
    assert check_in_id, done
    wait_for(lambda: count(browser, "arrived") == arrived + 1, message="arrived count")
    hour = running.clock().astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%m-%d %H:00")
    wait_for(lambda: f"{hour} 1" in browser.find_element(By.ID, "per-hour").text, message="per hour")
    item = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, f'#feed li.checked_in[data-check-in="{check_in_id}"]'),
        message="feed",
    )[0]
    assert "专家0" in item.text
    # A refusal appears with its reason.
    stranger = running.kiosk.IdentifyExpert(identify_request("K2", s.batch_code, make_id(901)))
    assert stranger.refusal.reason
    refused = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#feed li.refused"), message="refusal")[0]
    assert "/" in refused.find_element(By.CLASS_NAME, "reason").text
    assert browser.execute_script("return window.notReloaded === true;")
    screenshot(browser, SHOTS, "04-board")
    if SHOTS is not None:  # the same board on a tablet at the registration desk (portrait)
        size = browser.get_window_size()
        browser.set_window_size(820, 1180)
        screenshot(browser, SHOTS, "04-board-tablet")
        browser.set_window_size(size["width"], size["height"])

    # Annul it with a reason from the board.
    form = item.find_element(By.CSS_SELECTOR, "form.annul")
    form.find_element(By.NAME, "reason").send_keys("手环未取走，专家返回服务台")
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: count(browser, "annulled") == 1, message="annulled count")
    assert count(browser, "arrived") == arrived
    actions = {a for a, _ in audited(running, "person:li.organiser")}
    assert {"invitations_import", "annul_check_in"} <= actions

    # Search by the ID's last digits: masked only.
    browser.get(f"{console.url}/batches/{s.batch_code}/experts?q={s.ids[1][-4:]}")
    hits = browser.find_element(By.ID, "hits").text
    assert s.ids[1] not in hits
    assert s.ids[1][-4:] in hits
    screenshot(browser, SHOTS, "05-experts")
    # The needs-staff queue shows a case as it opens (no reload); staff hand the band over and say so.
    browser.get(f"{console.url}/batches/{s.batch_code}/needs-staff")
    browser.execute_script("window.notReloaded = true;")
    case_id = open_uwb_case(running, 1)
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'#cases tr[data-case="{case_id}"]'), message="case")[
        0
    ]
    assert browser.execute_script("return window.notReloaded === true;")
    assert s.ids[1] not in row.text
    assert s.ids[1][-4:] in row.text
    screenshot(browser, SHOTS, "06-needs-staff")
    row.find_element(By.NAME, "reason").send_keys("前台人工写入房间号并交付手环")
    row.find_element(By.CSS_SELECTOR, 'select[name="outcome"] option[value="handed_over"]').click()
    row.find_element(By.CSS_SELECTOR, "button:not([formaction])").click()
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, f'#cases tr[data-case="{case_id}"]'), message="gone")
    assert ("needs_staff_resolve", "uwb_delivery_failed") in audited(running, "person:li.organiser")

    # A kiosk stops sending heartbeats: the alert opens in the console and at the webhook, then resolves.
    heartbeat(running, "K1")
    browser.get(f"{console.url}/fleet")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#fleet tr[data-kiosk="K1"][data-online="1"]'))
    running.clock.advance(OFFLINE_AFTER_S + 1)  # time passes with no heartbeat from K1
    selector = '#alerts tr[data-rule="kiosk_offline"][data-subject="K1"][data-state="open"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, selector), message="offline alert shown")
    screenshot(browser, SHOTS, "07-fleet-alert")
    # Someone is on it: acknowledged (still open until K1 comes back).
    browser.find_element(By.CSS_SELECTOR, f"{selector} form.ack button").click()
    acknowledged = '#alerts tr[data-rule="kiosk_offline"][data-subject="K1"][data-state="acknowledged"]'
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, acknowledged), message="acknowledged")[0]
    assert "li.organiser" in row.text
    heartbeat(running, "K1")
    resolved = '#alerts tr[data-rule="kiosk_offline"][data-subject="K1"][data-state="resolved"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, resolved), message="offline alert resolved")
    assert not browser.find_elements(By.CSS_SELECTOR, selector)
    wait_for(lambda: len([b for b in receiver.bodies if b["rule"] == "kiosk_offline"]) >= 3, message="webhook")
    sent = [(b["state"], b["subject"]) for b in receiver.bodies if b["rule"] == "kiosk_offline"]
    assert sent == [("open", "K1"), ("acknowledged", "K1"), ("resolved", "K1")]
    screenshot(browser, SHOTS, "08-fleet-resolved")


def portrait(colour: tuple[int, int, int]) -> bytes:
    """A made-up reference photo (a drawn head, no real face)."""
    image = Image.new("RGB", (480, 640), (235, 235, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse((140, 120, 340, 380), fill=colour)
    draw.rectangle((90, 420, 390, 640), fill=(60, 80, 120))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Running, Any, PrinterSimulator]]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    add_person(running.platform, "li.organiser", accounts.Role.ORGANISER)
    with PrinterSimulator() as printer:
        console = start_console(running.platform, ConsoleSettings(desk_printer_url=printer.url))
        yield running, console, printer
        console.stop()
    stop(running)


def test_expert_page_and_slip_reprint_in_a_real_browser(
    desk: tuple[Running, Any, PrinterSimulator], browser: webdriver.Chrome
) -> None:
    running, console, printer = desk
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K2", s.batch_code, s.ids[2])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K2", token, s.bands[1][0]))
    code = done.check_in.slip_code
    uow = running.platform.new_uow()
    with uow:
        expert_id = uow.execute(sa.select(Expert.id).where(Expert.id_masked.endswith(s.ids[2][-4:]))).scalar_one()
        photos = [(portrait((225, 190, 160)), b"enc-one!"), (portrait((200, 160, 130)), b"enc-two!")]
        reference_set.write_reference_set(uow, running.platform.ctx, expert_id, photos, actor="os:test")
        uow.commit()
    sign_in(browser, console.url, "li.organiser")
    browser.get(f"{console.url}/batches/{s.batch_code}/experts?q={s.ids[2][-4:]}")
    browser.find_element(By.CSS_SELECTOR, "a.expert-link").click()
    wait_for(lambda: browser.find_elements(By.ID, "photos"), message="expert page")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#photos img.thumb")
    assert len(thumbs) == 2
    wait_for(
        lambda: all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", t) for t in thumbs
        ),
        message="thumbnails",
    )
    page = browser.find_element(By.TAG_NAME, "main").text
    assert s.ids[2] not in page
    assert f"{code[:4]}-{code[4:]}" in page
    size = browser.get_window_size()
    browser.set_window_size(size["width"], 1500)  # the whole page: photos, check-ins, cases, audit trail
    screenshot(browser, SHOTS, "10-expert")
    browser.set_window_size(size["width"], size["height"])
    assert {a for a, _ in audited(running, "person:li.organiser")} >= {"reference_photo_read"}
    browser.find_element(By.CSS_SELECTOR, "a.slip-code").click()
    wait_for(lambda: browser.find_elements(By.ID, "slip"), message="slip page")
    assert "有效 Valid" in browser.find_element(By.ID, "slip-state").text
    browser.find_element(By.ID, "reprint").click()
    wait_for(lambda: browser.find_elements(By.ID, "printed"), message="reprinted")
    slip = printer.wait_for_slips(1, timeout=30)[0]
    assert "补打 Reprint" in slip.text
    assert f"{code[:4]}-{code[4:]}" in slip.text
    screenshot(browser, SHOTS, "11-slip")
    if SHOTS is not None:
        slip.save(SHOTS / "11-slip-reprinted.png")
