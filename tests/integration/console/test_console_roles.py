"""Who may open which console route: a table of (role, route, expected status), each 403 audited."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db import unit_of_work
from platform_server.db.models import AuditEntry
from platform_server.services import accounts
from tests.integration.console.support import Browserless, ConsoleServer, add_person, start_console
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import Running, start, stop
from tests.unit.platform_server.support import luhn_pan

if TYPE_CHECKING:
    from collections.abc import Iterator

VW, OR, FI, AD = accounts.Role.VIEWER, accounts.Role.ORGANISER, accounts.Role.FINANCE, accounts.Role.ADMIN
B = "/batches/B2025"
PAN = luhn_pan(n=6)

# (method, path, form, {role: expected status}). 303: the action was done and the browser sent on.
TABLE: list[tuple[str, str, dict[str, str], dict[accounts.Role, int]]] = [
    ("GET", "/", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", B, {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", "/fleet", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", "/fleet/panel", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", f"{B}/needs-staff", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", f"{B}/steps", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", f"{B}/needs-staff/panel", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("POST", f"{B}/cases/nope/resolve", {"reason": "r", "outcome": "resolved"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", f"{B}/cases/nope/resend", {"reason": "r"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", f"{B}/cases/nope/annul", {"reason": "r"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", f"{B}/cases/nope/face-reset", {"reason": "r"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", "/fleet/alerts/999/acknowledge", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", "/fleet/kiosks/NOPE/disable", {"reason": "r"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", "/fleet/kiosks/NOPE/enable", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("GET", "/template/invitations.xlsx", {}, {VW: 200, OR: 200, FI: 200, AD: 200}),
    ("GET", f"{B}/upload", {}, {VW: 403, OR: 200, FI: 403, AD: 200}),
    ("GET", f"{B}/experts?q=1", {}, {VW: 403, OR: 200, FI: 403, AD: 200}),
    ("GET", f"{B}/experts/999999", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("GET", f"{B}/experts/999999/photos/1.jpg", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("GET", "/slips", {}, {VW: 403, OR: 200, FI: 403, AD: 200}),
    ("GET", "/slips?code=ABCD-EFGH", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", "/slips/ABCDEFGH/reprint", {}, {VW: 403, OR: 503, FI: 403, AD: 503}),  # no desk printer here
    ("GET", f"{B}/edit", {}, {VW: 403, OR: 200, FI: 403, AD: 200}),
    ("POST", f"{B}/edit", {"name": "改名"}, {VW: 403, OR: 400, FI: 403, AD: 400}),  # it has a check-in
    ("GET", f"{B}/export/check-ins.csv", {}, {VW: 403, OR: 200, FI: 403, AD: 200}),
    ("GET", f"{B}/export/fees.csv", {}, {VW: 403, OR: 403, FI: 200, AD: 200}),
    ("GET", f"{B}/export/fees-full.csv", {}, {VW: 403, OR: 403, FI: 200, AD: 200}),
    ("GET", "/audit/export.csv?since=2025-06-01&until=2025-06-01", {}, {VW: 403, OR: 403, FI: 403, AD: 200}),
    ("POST", "/batches", {"code": "NEW-{role}", "name": "新批次"}, {VW: 403, OR: 303, FI: 403, AD: 303}),
    ("POST", f"{B}/annul", {"check_in_id": "nope", "reason": "测试"}, {VW: 403, OR: 404, FI: 403, AD: 404}),
    ("POST", f"{B}/face-reset", {"id_number": "x", "reason": "r"}, {VW: 403, OR: 400, FI: 403, AD: 400}),
    ("POST", "/batches/NOPE/close", {}, {VW: 403, OR: 404, FI: 403, AD: 404}),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, ConsoleServer]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('console') / 'platform.db'}"
    running = start(db)
    for role in accounts.Role:
        add_person(running.platform, f"{role.value}.person", role)
    # One check-in, so the fee exports have a row with a card number in it.
    s = running.seeded
    token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[0])).identification_token
    done = running.kiosk.CompleteCheckIn(complete_request("K1", token, s.bands[0][0], pan=PAN))
    assert done.check_in.check_in_id, done
    console = start_console(running.platform)
    yield running, console
    console.stop()
    stop(running)


def denied_rows(running: Running, username: str) -> list[str]:
    query = sa.select(AuditEntry.detail).where(
        AuditEntry.actor == f"person:{username}", AuditEntry.action == "permission_denied"
    )
    with running.platform.engine.connect() as c:
        return list(c.execute(query).scalars())


@pytest.mark.parametrize("role", list(accounts.Role))
def test_route_table(served: tuple[Running, ConsoleServer], role: accounts.Role) -> None:
    running, console = served
    client = Browserless(console.url)
    assert client.login(f"{role.value}.person").status == 303
    for method, path, form, expected in TABLE:
        before = len(denied_rows(running, f"{role.value}.person"))
        filled = {k: v.format(role=role.value) for k, v in form.items()}
        answer = client.request("GET", path) if method == "GET" else client.post(path, filled)
        assert answer.status == expected[role], (role, method, path, answer.text[:300])
        after = denied_rows(running, f"{role.value}.person")
        if expected[role] == 403:
            assert len(after) == before + 1, (role, path)
            assert path.split("?")[0] in after[-1]
        else:
            assert len(after) == before


def test_signed_out_is_sent_to_sign_in_and_posts_are_refused(served: tuple[Running, ConsoleServer]) -> None:
    _, console = served
    client = Browserless(console.url)
    assert client.request("GET", "/").status == 303
    assert client.request("GET", "/").headers["location"] == "/login"
    assert client.request("POST", "/batches", {"code": "X", "name": "x"}).status == 401
    assert client.request("GET", "/metrics").status == 200


def test_wrong_password_and_csrf(served: tuple[Running, ConsoleServer]) -> None:
    _, console = served
    client = Browserless(console.url)
    assert client.login("admin.person", "wrong password!!").status == 401
    assert client.login("admin.person").status == 303
    cookie = next(c for c in client.jar if c.name == "console_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    forged = client.request("POST", "/batches", {"code": "FORGED", "name": "x", "csrf": "0" * 64})
    assert forged.status == 403
    assert "CSRF" in forged.text


def test_logout_ends_the_session_in_the_database(served: tuple[Running, ConsoleServer]) -> None:
    _, console = served
    client = Browserless(console.url)
    client.login("viewer.person")
    token = client.session
    assert client.post("/logout").status == 303
    other = Browserless(console.url)
    other.opener.addheaders = [("Cookie", f"console_session={token}")]
    assert other.request("GET", "/").status == 303  # the old token names nobody now


def test_viewer_sees_masked_numbers_only_finance_gets_full_card_numbers(
    served: tuple[Running, ConsoleServer],
) -> None:
    running, console = served
    viewer = Browserless(console.url)
    viewer.login("viewer.person")
    board = viewer.request("GET", B).text
    full_id = running.seeded.ids[0]
    assert full_id not in board
    assert full_id[:4] + "*" * 10 + full_id[-4:] in board
    assert "/annul" not in board  # no action forms for a viewer
    assert f"{B}/export" not in board
    finance = Browserless(console.url)
    finance.login("finance.person")
    masked = finance.request("GET", f"{B}/export/fees.csv").text
    assert PAN not in masked
    assert "622848" in masked
    full = finance.request("GET", f"{B}/export/fees-full.csv").text
    assert PAN in full
    assert full_id in full
    with running.platform.engine.connect() as c:
        actors = list(c.execute(sa.select(AuditEntry.actor).where(AuditEntry.action == "export_fees_full")).scalars())
    assert "person:finance.person" in actors


def test_metrics(served: tuple[Running, ConsoleServer]) -> None:
    _, console = served
    text = Browserless(console.url).request("GET", "/metrics").text
    assert 'checkin_check_ins{batch="B2025"}' in text
    assert 'checkin_kiosks{state="online"}' in text


def test_sessions_expire_and_pages_carry_security_headers(served: tuple[Running, ConsoleServer]) -> None:
    running, console = served
    client = Browserless(console.url)
    client.login("viewer.person")
    page = client.request("GET", "/")
    assert page.status == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    lifetime = accounts.SESSION_LIFETIME + dt.timedelta(seconds=1)
    running.clock.advance(lifetime.total_seconds())
    try:
        expired = client.request("GET", "/")
        assert (expired.status, expired.headers["location"]) == (303, "/login")
    finally:
        running.clock.now -= lifetime


def test_a_write_lock_held_elsewhere_answers_503_try_again_and_creates_nothing(
    served: tuple[Running, ConsoleServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database busy past its bound (another process holding SQLite's write lock) is not a server error."""
    running, console = served
    monkeypatch.setattr(unit_of_work, "LOCK_WAIT_BUDGET_S", 0.5)  # one wait of SQLite's busy timeout (2 s)
    client = Browserless(console.url)
    assert client.login("organiser.person").status == 303
    database = running.platform.engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        busy = client.post("/batches", {"code": "BUSY-1", "name": "繁忙时新建"})
        assert busy.status == 503, busy.text[:300]
        assert busy.headers["retry-after"] == "2"
        assert "try again" in busy.text
    finally:
        holder.close()
    with running.platform.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM batches WHERE code = 'BUSY-1'")).scalar_one() == 0
    assert client.post("/batches", {"code": "BUSY-1", "name": "繁忙时新建"}).status == 303
