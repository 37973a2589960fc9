"""The expert page (audited photo thumbnails), slips at the desk (look-up, reprint on a simulator), batch edits."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from PIL import Image

from platform_server.console.app import ConsoleSettings
from platform_server.db.models import AuditEntry, Batch, Expert, Invitation
from platform_server.services import accounts, batches, reference_set, slips
from receipt_printer.simulator import PrinterSimulator
from tests.integration.console.support import Browserless, ConsoleServer, add_person, start_console
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import Running, start, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

B = "/batches/B2025"


class Desk:
    """A seeded platform with one check-in, a console with a desk printer, and that printer's simulator."""

    def __init__(self, running: Running, console: ConsoleServer, printer: PrinterSimulator, slip_code: str) -> None:
        self.running, self.console, self.printer, self.slip_code = running, console, printer, slip_code

    def audit(self, action: str) -> list[tuple[str, str, str]]:
        query = sa.select(AuditEntry.actor, AuditEntry.outcome, AuditEntry.detail).where(AuditEntry.action == action)
        with self.running.platform.engine.connect() as c:
            return [(r[0], r[1], r[2]) for r in c.execute(query)]


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (480, 640), colour).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    db = f"sqlite:///{tmp_path_factory.mktemp('console') / 'platform.db'}"
    running = start(db)
    for role in accounts.Role:
        add_person(running.platform, f"{role.value}.person", role)
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0]))
    assert done.check_in.slip_code, done
    platform = running.platform
    uow = platform.new_uow()
    with uow:
        expert_id = uow.execute(sa.select(Expert.id).where(Expert.id_masked.endswith(s.ids[0][-4:]))).scalar_one()
        photos = [(jpeg((200, 30, 30)), b"enc-one!"), (jpeg((30, 30, 200)), b"enc-two!")]
        reference_set.write_reference_set(uow, platform.ctx, expert_id, photos, actor="os:test")
        uow.commit()
    with PrinterSimulator() as printer:
        console = start_console(platform, ConsoleSettings(desk_printer_url=printer.url))
        yield Desk(running, console, printer, done.check_in.slip_code)
        console.stop()
    stop(running)


def organiser(desk: Desk) -> Browserless:
    client = Browserless(desk.console.url)
    assert client.login("organiser.person").status == 303
    return client


def test_expert_page_from_search_shows_check_in_slip_trail_and_audited_thumbnails(desk: Desk) -> None:
    client = organiser(desk)
    full_id = desk.running.seeded.ids[0]
    found = client.request("GET", f"{B}/experts?q={full_id[-4:]}").text
    links = re.findall(r'href="(/batches/B2025/experts/\d+)"', found)
    assert len(links) == 1, found[:2000]
    page = client.request("GET", links[0])
    assert page.status == 200
    assert full_id not in page.text
    assert full_id[:4] + "*" * 10 + full_id[-4:] in page.text
    assert f"{desk.slip_code[:4]}-{desk.slip_code[4:]}" in page.text
    assert "check_in" in page.text  # the audit trail holds the check-in
    assert 'class="uwb-state">' in page.text
    thumbs = re.findall(r'src="(/batches/B2025/experts/\d+/photos/\d\.jpg)"', page.text)
    assert [t[-5] for t in thumbs] == ["1", "2"]
    before = len(desk.audit("reference_photo_read"))
    for thumb, red in zip(thumbs, (True, False), strict=True):
        answer = client.request("GET", thumb)
        assert answer.status == 200
        assert answer.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(answer.body))
        assert max(image.size) <= 160
        r, _g, b = image.convert("RGB").getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
        assert (r > b) is red  # the photo at that position, not another one
    reads = desk.audit("reference_photo_read")
    assert len(reads) == before + 2
    assert {actor for actor, _o, _d in reads[before:]} == {"person:organiser.person"}
    assert client.request("GET", thumbs[0].replace("/1.jpg", "/3.jpg")).status == 404
    assert client.request("GET", links[0].replace("/experts/", "/experts/9")).status == 404


def test_slip_look_up_and_reprint_prints_the_kiosk_layout_at_the_desk_printer(desk: Desk) -> None:
    client = organiser(desk)
    shown = f"{desk.slip_code[:4]}-{desk.slip_code[4:]}"
    page = client.request("GET", f"/slips?code={shown.lower()}")
    assert page.status == 200
    assert "有效 Valid" in page.text
    assert desk.running.seeded.ids[0] not in page.text
    assert client.request("GET", "/slips?code=22222222").status == 404
    assert client.request("GET", "/slips?code=not-a-code").status == 400
    printed_before = len(desk.printer.slips)
    answer = client.post(f"/slips/{desk.slip_code}/reprint")
    assert answer.status == 303, answer.text[:500]
    slip = desk.printer.wait_for_slips(printed_before + 1, timeout=30)[-1]
    assert slip.complete
    assert "签到凭证" in slip.text
    assert "补打 Reprint" in slip.text
    assert f"验证码 Code: {shown}" in slip.text
    full_id = desk.running.seeded.ids[0]
    assert full_id not in slip.text
    assert f"{full_id[:4]}{'*' * 10}{full_id[-4:]}" in slip.text
    assert slip.qr_payloads == [desk.slip_code]
    assert client.request("GET", answer.headers["location"]).text.count("已补打") == 1
    assert ("person:organiser.person", "printed") in [(a, o) for a, o, _d in desk.audit("slip_reprint")]
    desk.printer.inject("cover_open")
    try:
        refused = client.post(f"/slips/{desk.slip_code}/reprint")
    finally:
        desk.printer.clear()
    assert refused.status == 503
    assert "打印机" in refused.text
    assert len(desk.printer.slips) == printed_before + 1
    assert "failed" in [o for _a, o, _d in desk.audit("slip_reprint")]


def test_a_batch_is_edited_before_it_opens_with_the_create_checks_and_not_after_check_ins(desk: Desk) -> None:
    client = organiser(desk)
    assert client.post("/batches", {"code": "EDIT1", "name": "旧名"}).status == 303
    assert "修改" in client.request("GET", "/batches/EDIT1/edit").text
    form = {
        "name": "新名称",
        "venue": "新评标中心 3 楼",
        "evaluation_start": "2031-05-06T09:30",
        "evaluation_end": "2031-05-06T18:00",
        "check_in_opens": "2031-05-06T07:00",
        "hotel_code": "H9",
        "hotel_name": "新酒店",
    }
    assert client.post("/batches/EDIT1/edit", form).status == 303
    edited = batches.get_batch(desk.running.platform.new_uow(), "EDIT1")
    assert (edited.name, edited.venue, edited.hotel_code, edited.hotel_name) == (
        "新名称",
        "新评标中心 3 楼",
        "H9",
        "新酒店",
    )
    assert edited.evaluation_start.replace(tzinfo=None).isoformat() == "2031-05-06T01:30:00"  # 09:30 China time
    bad = client.post("/batches/EDIT1/edit", {**form, "evaluation_end": "2031-05-06T08:00"})
    assert bad.status == 400
    assert "evaluation_end must be after" in bad.text
    assert client.post("/batches/EDIT1/edit", {**form, "name": " "}).status == 400
    assert client.post("/batches/EDIT1/edit", {**form, "evaluation_start": "tomorrow"}).status == 400
    assert batches.get_batch(desk.running.platform.new_uow(), "EDIT1") == edited  # nothing half-done
    refused = client.post(f"{B}/edit", form)
    assert refused.status == 400
    assert "can no longer be edited" in refused.text
    assert batches.get_batch(desk.running.platform.new_uow(), "B2025").name != "新名称"
    edits = desk.audit("batch_edit")
    assert len(edits) == 1
    assert edits[0][0] == "person:organiser.person"
    assert "新名称" in edits[0][2]
    with desk.running.platform.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(Invitation).join(Batch)).scalar_one() >= 1
    assert slips.display_code("ABCDEFGH") == "ABCD-EFGH"
