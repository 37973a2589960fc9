"""The console's ASGI app: routes are thin over the services, each guarded by security.ROUTES.

Handlers are plain synchronous functions (the services use synchronous SQLAlchemy) run in Starlette's
thread pool; only the live stream is async, and it reads the events table by id, so a browser served
by any replica sees every replica's check-ins.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from platform_server.console import metrics
from platform_server.console.security import CSRF_FIELD, ROUTES, SESSION_COOKIE, RouteRule, csrf_ok, csrf_token
from platform_server.db.unit_of_work import as_transient
from platform_server.errors import (
    ImportRefusedError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    TransientError,
)
from platform_server.services import (
    accounts,
    alerts,
    audit,
    audit_chain,
    batch_edit,
    batches,
    case_actions,
    cases,
    desk_slips,
    events,
    expert_page,
    exports,
    face_attempts,
    imports,
    kiosk_access,
    kiosk_states,
    refusals,
    slips,
    staff,
    statistics,
    step_timings,
    stock_forecast,
)
from platform_server.services.formula_cells import neutralised

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from platform_server.bootstrap import Platform

log = logging.getLogger(__name__)
CHINA = dt.timezone(dt.timedelta(hours=8))
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
UPLOAD_KINDS = ("invitations", "rooms", "bands", "photos")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console runs: cookie security, live-stream polling, alert rules and webhook."""

    secure_cookies: bool = False
    poll_interval_s: float = 0.1
    counts_every_s: float = 5.0
    alert_interval_s: float = 5.0
    alert_settings: alerts.AlertSettings = field(default_factory=alerts.AlertSettings)
    webhook_url: str = ""
    #: The desk's receipt printer for slip reprints (receipt_printer URL, e.g. socket://host:9100); "" for none.
    desk_printer_url: str = ""


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it: who, which form, the route parameters."""

    request: Request
    person: accounts.Person | None
    session_token: str
    form: dict[str, Any]
    params: dict[str, str]

    @property
    def actor(self) -> str:
        """How the audit names the person."""
        return self.person.actor if self.person else "console:anonymous"


def china_time(value: dt.datetime | None) -> str:
    """A time as the organisers read it (China Standard Time)."""
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def china_input_time(value: dt.datetime | None) -> str:
    """A time for an <input type="datetime-local"> in China time."""
    if value is None:
        return ""
    aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return aware.astimezone(CHINA).strftime("%Y-%m-%dT%H:%M")


class Console:
    """The console's handlers over one Platform; `app()` builds the Starlette app."""

    def __init__(self, platform: Platform, settings: ConsoleSettings | None = None) -> None:
        self.platform = platform
        self.settings = settings or ConsoleSettings()
        self.templates = Environment(
            loader=PackageLoader("platform_server.console", "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self.templates.filters["cst"] = china_time
        self.templates.filters["cst_input"] = china_input_time
        self.templates.globals["refusal_text"] = refusal_text
        self.templates.globals["case_kind_text"] = case_kind_text
        self._stop = threading.Event()
        self.metrics = metrics.ConsoleMetrics(platform, self.settings)

    def close(self) -> None:
        """Stop the alert loop and end the live streams, so the web server can stop without waiting on them."""
        self._stop.set()

    # ---- plumbing ---------------------------------------------------------------------------------
    def app(self) -> Starlette:
        """The ASGI app with every route of security.ROUTES and the static files."""
        handlers: dict[str, Callable[[Call], Response]] = {
            "login_form": self.login_form,
            "login": self.login,
            "logout": self.logout,
            "metrics": self.metrics_page,
            "batches": self.batches_page,
            "batch_create": self.batch_create,
            "batch_close": self.batch_close,
            "board": self.board,
            "steps_panel": self.steps_panel,
            "upload_form": self.upload_form,
            "upload": self.upload,
            "template": self.template,
            "experts": self.experts,
            "expert_page": self.expert_page,
            "expert_photo": self.expert_photo,
            "slip_look_up": self.slip_look_up,
            "slip_reprint": self.slip_reprint,
            "batch_edit_form": self.batch_edit_form,
            "batch_edit": self.batch_edit,
            "annul": self.annul,
            "face_reset": self.face_reset,
            "needs_staff": self.needs_staff,
            "needs_staff_panel": self.needs_staff_panel,
            "case_resolve": self.case_resolve,
            "case_annul": self.case_annul,
            "case_face_reset": self.case_face_reset,
            "case_resend": self.case_resend,
            "fleet": self.fleet,
            "fleet_panel": self.fleet_panel,
            "alert_ack": self.alert_ack,
            "kiosk_disable": self.kiosk_disable,
            "kiosk_enable": self.kiosk_enable,
            "export_check_ins": self.export_check_ins,
            "export_fees": self.export_fees,
            "export_fees_full": self.export_fees_full,
            "audit_export": self.audit_export,
        }
        routes: list[Route | Mount] = []
        for name, rule in ROUTES.items():
            if name == "board_stream":
                routes.append(Route(rule.path, self._guard(rule, None, stream=True), methods=[rule.method], name=name))
            else:
                routes.append(Route(rule.path, self._guard(rule, handlers[name]), methods=[rule.method], name=name))
        static = Path(__file__).parent / "static"
        routes.append(Mount("/static", app=StaticFiles(directory=static), name="static"))

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            thread = threading.Thread(target=self._alert_loop, name="console-alerts", daemon=True)
            thread.start()
            try:
                yield
            finally:
                self._stop.set()
                thread.join(timeout=10)

        app = Starlette(routes=routes, lifespan=lifespan)
        app.add_middleware(SecurityHeaders)
        return app

    def _guard(self, rule: RouteRule, handler: Callable[[Call], Response] | None, *, stream: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await self._guarded(rule, handler, request, stream=stream)
            except Exception as err:
                # The database busy or away past a path's own bound (the sign-in check included): 503, not 500.
                transient = as_transient(err)
                if transient is None:
                    raise
                log.warning("console %s: %s (%s)", request.url.path, transient, type(err).__name__)
                return self._try_again(None, "", transient)

        return endpoint

    async def _guarded(
        self, rule: RouteRule, handler: Callable[[Call], Response] | None, request: Request, *, stream: bool
    ) -> Response:
        """The sign-in, the form's CSRF token and the role's permission checked, then the handler run."""
        token = request.cookies.get(SESSION_COOKIE, "")
        person: accounts.Person | None = None
        if rule.signed_in:
            person = await run_in_threadpool(self._person, token)
            if person is None:
                if request.method == "GET" and not stream:
                    return RedirectResponse("/login", status_code=303)
                return self.page("error.html", None, "", status=401, message="请先登录 / please sign in")
        form: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.form(max_part_size=MAX_UPLOAD_BYTES)
            form = dict(raw.items())
            if rule.signed_in and not csrf_ok(token, str(form.get(CSRF_FIELD, ""))):
                return self.page("error.html", person, token, status=403, message="表单已过期 / stale form (CSRF)")
        call = Call(request, person, token, form, dict(request.path_params))
        if person is not None:
            refused = await run_in_threadpool(self._refuse, person, rule, request)
            if refused is not None:
                return refused
        if stream:
            return await self.board_stream(call)
        assert handler is not None
        return await run_in_threadpool(self._run, handler, call)

    def _person(self, token: str) -> accounts.Person | None:
        if not token:
            return None
        try:
            return accounts.authenticate_token(self.platform.new_uow(), token, at=self.platform.ctx.clock())
        except accounts.UnauthenticatedError:
            return None

    def _refuse(self, person: accounts.Person, rule: RouteRule, request: Request) -> Response | None:
        """403 (audited with the person by accounts.require) unless the role allows the route."""
        if rule.permission is None:
            return None
        try:
            accounts.require(
                self.platform.new_uow(),
                person,
                rule.permission,
                what=f"console {request.method} {request.url.path}",
                at=self.platform.ctx.clock(),
            )
        except PermissionDeniedError as err:
            return self.page(
                "error.html",
                person,
                request.cookies.get(SESSION_COOKIE, ""),
                status=403,
                message=f"无权限 / not allowed: {err}",
            )
        return None

    def _run(self, handler: Callable[[Call], Response], call: Call) -> Response:
        try:
            return handler(call)
        except NotFoundError as err:
            return self.page("error.html", call.person, call.session_token, status=404, message=str(err))
        except PermissionDeniedError as err:
            return self.page("error.html", call.person, call.session_token, status=403, message=str(err))
        except ImportRefusedError:
            raise
        except TransientError as err:
            return self._try_again(call.person, call.session_token, err)
        except PlatformError as err:
            return self.page("error.html", call.person, call.session_token, status=400, message=str(err))

    def _try_again(self, person: accounts.Person | None, token: str, err: TransientError) -> Response:
        """503 with Retry-After: the database was busy or away; the same request shortly will do."""
        response = self.page("error.html", person, token, status=503, message=str(err))
        response.headers["Retry-After"] = "2"
        return response

    def page(
        self, template: str, person: accounts.Person | None, token: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        """Render a page with the person, the CSRF token and the navigation."""
        html = self.templates.get_template(template).render(
            person=person,
            csrf=csrf_token(token) if token else "",
            can=(lambda p: person is not None and person.can(accounts.Permission(p))),
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def _alert_loop(self) -> None:
        while not self._stop.wait(self.settings.alert_interval_s):
            try:
                self.check_alerts()
            except Exception:
                log.exception("alert evaluation failed")

    def check_alerts(self) -> tuple[list[alerts.AlertView], list[alerts.AlertView]]:
        """Evaluate the rules once and send what changed to the webhook."""
        opened, resolved = alerts.evaluate(self.platform.new_uow(), self.platform.ctx, self.settings.alert_settings)
        if self.settings.webhook_url:
            for alert in opened:
                alerts.notify(self.settings.webhook_url, "open", alert)
            for alert in resolved:
                alerts.notify(self.settings.webhook_url, "resolved", alert)
        return opened, resolved

    # ---- sign-in ----------------------------------------------------------------------------------
    def login_form(self, _call: Call) -> Response:
        """The sign-in page."""
        return self.page("login.html", None, "", message="")

    def login(self, call: Call) -> Response:
        """Check the password; the session token goes into an HttpOnly, SameSite=Strict cookie."""
        try:
            person, token = accounts.login(
                self.platform.new_uow(),
                str(call.form.get("username", "")),
                str(call.form.get("password", "")),
                at=self.platform.ctx.clock(),
            )
        except accounts.UnauthenticatedError:
            return self.page("login.html", None, "", status=401, message="用户名或密码错误 / wrong name or password")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
        )
        log.info(f"console sign-in: {person.username} ({person.role})")
        return response

    def logout(self, call: Call) -> Response:
        """End the session in the database and drop the cookie."""
        accounts.logout(self.platform.new_uow(), call.session_token, at=self.platform.ctx.clock())
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- batches ----------------------------------------------------------------------------------
    def batches_page(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """Every batch, open and closed, with the create form."""
        rows = batches.list_batches(self.platform.new_uow(), include_closed=True)
        return self.page("batches.html", call.person, call.session_token, batches=rows, message=message, status=status)

    def batch_create(self, call: Call) -> Response:
        """Create a batch (audited with the person)."""
        spec = batches.BatchSpec(
            code=str(call.form.get("code", "")).strip(),
            name=str(call.form.get("name", "")).strip(),
            venue=str(call.form.get("venue", "")).strip(),
            hotel_code=str(call.form.get("hotel_code", "") or "H1").strip(),
            hotel_name=str(call.form.get("hotel_name", "")).strip(),
        )
        try:
            batches.create_batch(self.platform.new_uow(), self.platform.ctx, spec, actor=call.actor)
        except PlatformError as err:
            return self.batches_page(call, message=str(err), status=400)
        return RedirectResponse(f"/batches/{spec.code}", status_code=303)

    def batch_edit_form(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """The edit form of a batch (refused by the service once check-ins exist)."""
        batch = batches.get_batch(self.platform.new_uow(), call.params["code"])
        return self.page(
            "batch_edit.html", call.person, call.session_token, batch=batch, message=message, status=status
        )

    def batch_edit(self, call: Call) -> Response:
        """Change a batch's name, venue, times and hotel with the create checks (audited with the person)."""
        code = call.params["code"]
        try:
            spec = batches.BatchSpec(
                code=code,
                name=str(call.form.get("name", "")).strip(),
                venue=str(call.form.get("venue", "")).strip(),
                hotel_code=str(call.form.get("hotel_code", "") or "H1").strip(),
                hotel_name=str(call.form.get("hotel_name", "")).strip(),
                hotel_address=str(call.form.get("hotel_address", "")).strip(),
                evaluation_start=form_time(call.form, "evaluation_start"),
                evaluation_end=form_time(call.form, "evaluation_end"),
                check_in_opens=form_time(call.form, "check_in_opens"),
            )
            batch_edit.edit_batch(self.platform.new_uow(), self.platform.ctx, spec, actor=call.actor)
        except NotFoundError:
            raise
        except (PlatformError, ValueError) as err:
            return self.batch_edit_form(call, message=str(err), status=400)
        return RedirectResponse(f"/batches/{code}", status_code=303)

    def batch_close(self, call: Call) -> Response:
        """Close a batch: kiosks stop checking in for it."""
        batches.close_batch(self.platform.new_uow(), self.platform.ctx, call.params["code"], actor=call.actor)
        return RedirectResponse("/", status_code=303)

    # ---- live board -------------------------------------------------------------------------------
    def board(self, call: Call) -> Response:
        """Counts, per-kiosk figures and the newest events; the stream keeps them current."""
        code = call.params["code"]
        batch = batches.get_batch(self.platform.new_uow(), code)
        stats = statistics.batch_statistics(self.platform.new_uow(), code)
        uow = self.platform.new_uow()
        with uow:
            batch_id = events.batch_id_of(uow, code)
        last = staff.newest_event_id(self.platform.new_uow(), batch_id)
        with uow:
            recent = events.read_after(uow, self.platform.ctx, batch_id, max(0, last - 30), limit=30)
        return self.page(
            "board.html",
            call.person,
            call.session_token,
            batch=batch,
            stats=stats,
            events=[event_json(e) for e in reversed(recent)],
            last_event=last,
            steps=step_timings.step_timings(self.platform.new_uow(), code),
        )

    def steps_panel(self, call: Call) -> Response:
        """The board's "where experts give up" table (refreshed by the page every 15 s)."""
        steps = step_timings.step_timings(self.platform.new_uow(), call.params["code"])
        return self.page("steps_panel.html", call.person, call.session_token, steps=steps)

    async def board_stream(self, call: Call) -> Response:  # noqa: C901  (the stream's loop is the handler)
        """Server-sent events: each new event of the batch, and the counts whenever they may have changed."""
        code = call.params["code"]
        try:
            after = int(call.request.query_params.get("after", "0"))
        except ValueError:
            after = 0
        uow = self.platform.new_uow()

        def batch_id() -> int:
            with uow:
                return events.batch_id_of(uow, code)

        try:
            bid = await run_in_threadpool(batch_id)
        except NotFoundError as err:
            return Response(str(err), status_code=404)

        def read(after_id: int) -> list[events.EventView]:
            with uow:
                return events.read_after(uow, self.platform.ctx, bid, after_id, limit=200)

        def counts() -> str:
            data = stats_json(statistics.batch_statistics(self.platform.new_uow(), code))
            data["per_hour"] = staff.check_ins_per_hour(self.platform.new_uow(), code, CHINA)
            return json.dumps(data)

        async def stream() -> AsyncIterator[str]:
            last_id = after
            loop = asyncio.get_running_loop()
            last_counts = 0.0
            yield "retry: 2000\n\n"
            while not self._stop.is_set():
                if await call.request.is_disconnected():
                    return
                batch = await run_in_threadpool(read, last_id)
                for event in batch:
                    last_id = event.event_id
                    yield f"id: {event.event_id}\nevent: checkin\ndata: {json.dumps(event_json(event))}\n\n"
                now = loop.time()
                if batch or now - last_counts >= self.settings.counts_every_s:
                    last_counts = now
                    if await run_in_threadpool(self._person, call.session_token) is None:
                        return  # signed out or expired meanwhile: the stream ends with the session
                    yield f"event: counts\ndata: {await run_in_threadpool(counts)}\n\n"
                if not batch:
                    await asyncio.sleep(self.settings.poll_interval_s)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    def needs_staff(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """The open needs-staff cases of the batch with their actions; the panel refreshes itself."""
        values = self._needs_staff_values(call.params["code"])
        return self.page("needs_staff.html", call.person, call.session_token, message=message, status=status, **values)

    def needs_staff_panel(self, call: Call) -> Response:
        """The needs-staff page's live part."""
        values = self._needs_staff_values(call.params["code"])
        return self.page("needs_staff_panel.html", call.person, call.session_token, **values)

    def _needs_staff_values(self, code: str) -> dict[str, Any]:
        batch = batches.get_batch(self.platform.new_uow(), code)
        now = self.platform.ctx.clock()
        rows = cases.list_cases(self.platform.new_uow(), batch_code=code)
        return {
            "batch": batch,
            "cases": [(case, age_text(now - as_utc(case.created_at))) for case in rows],
            "outcomes": case_actions.OUTCOME_TEXT,
        }

    def _case_action(self, call: Call, action: Callable[..., cases.CaseView], **extra: str) -> Response:
        code = call.params["code"]
        try:
            done = action(
                self.platform.new_uow(),
                self.platform.ctx,
                batch_code=code,
                case_id=call.params["case_id"],
                reason=str(call.form.get("reason", "")),
                actor=call.actor,
                **extra,
            )
        except NotFoundError:
            raise
        except PlatformError as err:
            return self.needs_staff(call, message=str(err), status=400)
        log.info(f"console case {done.case_id} resolved by {call.actor}")
        return RedirectResponse(f"/batches/{code}/needs-staff", status_code=303)

    def case_resolve(self, call: Call) -> Response:
        """Resolve a case: handled, band handed over at the desk, or band returned (reason required)."""
        return self._case_action(call, case_actions.resolve, outcome=str(call.form.get("outcome", "resolved")))

    def case_annul(self, call: Call) -> Response:
        """Annul the case's check-in with a reason and resolve the case."""
        return self._case_action(call, case_actions.annul_check_in)

    def case_resend(self, call: Call) -> Response:
        """Queue the given-up band write once more with a reason and resolve the case."""
        return self._case_action(call, case_actions.resend_to_band)

    def case_face_reset(self, call: Call) -> Response:
        """Reset the case's expert's face attempts with a reason and resolve the case."""
        return self._case_action(call, case_actions.reset_face_attempts)

    # ---- uploads ----------------------------------------------------------------------------------
    def upload_form(self, call: Call) -> Response:
        """The upload page of a batch."""
        batch = batches.get_batch(self.platform.new_uow(), call.params["code"])
        return self.page("upload.html", call.person, call.session_token, batch=batch, problems=[], message="")

    def upload(self, call: Call) -> Response:
        """Import an uploaded file with the same all-or-nothing services as the CLI; show every bad row."""
        code = call.params["code"]
        batch = batches.get_batch(self.platform.new_uow(), code)
        kind = str(call.form.get("kind", ""))
        upload = call.form.get("file")
        if kind not in UPLOAD_KINDS or not isinstance(upload, UploadFile) or not upload.filename:
            return self.page(
                "upload.html",
                call.person,
                call.session_token,
                batch=batch,
                problems=[],
                status=400,
                message="请选择类型和文件 / choose what to import and a file",
            )
        suffix = Path(upload.filename).suffix.lower()[:8]
        name = Path(upload.filename).name[:100]
        with tempfile.TemporaryDirectory(prefix="console-upload-") as tmp:
            path = Path(tmp) / (Path(name).stem[:60] + suffix)
            upload.file.seek(0)
            path.write_bytes(upload.file.read(MAX_UPLOAD_BYTES + 1))
            if path.stat().st_size > MAX_UPLOAD_BYTES:
                return self.page(
                    "upload.html",
                    call.person,
                    call.session_token,
                    batch=batch,
                    problems=[],
                    status=413,
                    message=f"{name}: 文件过大 / file too large",
                )
            try:
                report = self._import(kind, code, path, call.actor)
            except ImportRefusedError as err:
                return self.page(
                    "upload.html",
                    call.person,
                    call.session_token,
                    batch=batch,
                    status=422,
                    problems=err.problems,
                    message=err.summary,
                )
            except PlatformError as err:
                return self.page(
                    "upload.html",
                    call.person,
                    call.session_token,
                    batch=batch,
                    status=400,
                    problems=[],
                    message=str(err),
                )
        log.info(f"console import {kind} into {code} by {call.actor}: {report.rows} rows")
        return self.page(
            "upload.html",
            call.person,
            call.session_token,
            batch=batch,
            problems=[],
            message=f"已导入 {report.rows} 行 / imported {report.rows} rows",
            done=True,
        )

    def _import(self, kind: str, code: str, path: Path, actor: str) -> imports.ImportReport:
        uow, ctx = self.platform.new_uow(), self.platform.ctx
        if kind == "invitations":
            return imports.import_invitations(uow, ctx, code, path, actor=actor)
        if kind == "rooms":
            return imports.import_rooms(uow, ctx, code, path, actor=actor)
        if kind == "bands":
            return imports.import_bands(uow, ctx, path, actor=actor)
        return imports.import_photos(uow, ctx, code, path, actor=actor)

    def template(self, _call: Call) -> Response:
        """The invitations spreadsheet template."""
        with tempfile.TemporaryDirectory(prefix="console-template-") as tmp:
            path = Path(tmp) / "invitations.xlsx"
            imports.write_invitation_template(path)
            body = path.read_bytes()
        return Response(
            body,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": 'attachment; filename="invitations-template.xlsx"'},
        )

    # ---- people -----------------------------------------------------------------------------------
    def experts(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """Search an expert of the batch by name or the ID's last digits (masked only)."""
        code = call.params["code"]
        query = call.request.query_params.get("q", "")
        try:
            hits = staff.search_experts(self.platform.new_uow(), code, query)
        except PlatformError as err:
            hits, message, status = [], str(err), 400
        return self.page(
            "experts.html",
            call.person,
            call.session_token,
            code=code,
            query=query,
            hits=hits,
            message=message,
            status=status,
        )

    def expert_page(self, call: Call) -> Response:
        """One expert of the batch: invitation, check-ins, band, slip, open cases, audit trail, photos."""
        page = expert_page.expert_page(
            self.platform.new_uow(), self.platform.ctx, call.params["code"], call.params["invitation"]
        )
        return self.page("expert.html", call.person, call.session_token, expert=page)

    def expert_photo(self, call: Call) -> Response:
        """A reference photo's thumbnail; reading a face is audited with the person."""
        body = expert_page.reference_thumbnail(
            self.platform.new_uow(),
            self.platform.ctx,
            call.params["code"],
            call.params["invitation"],
            call.params["position"],
            actor=call.actor,
        )
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store, private"})

    def slip_look_up(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """Find a slip by its code (typed, or scanned from the QR code); the look-up is audited."""
        code = call.request.query_params.get("code", "").strip()
        found: slips.SlipView | None = None
        if code:
            try:
                found = slips.look_up_slip(self.platform.new_uow(), self.platform.ctx, code, actor=call.actor)
            except PlatformError as err:
                message, status = message or str(err), 404 if isinstance(err, NotFoundError) else 400
        return self.page(
            "slips.html",
            call.person,
            call.session_token,
            code=code,
            slip=found,
            display_code=slips.display_code(found.code) if found else "",
            printer=bool(self.settings.desk_printer_url),
            request_printed=found is not None and call.request.query_params.get("printed") == "1",
            message=message,
            status=status,
        )

    def slip_reprint(self, call: Call) -> Response:
        """Reprint a slip at the desk printer (audited with the person, printed or not)."""
        code = call.params["slip_code"]
        try:
            desk_slips.reprint(
                self.platform.new_uow(),
                self.platform.ctx,
                self.settings.desk_printer_url,
                code,
                actor=call.actor,
            )
        except NotFoundError:
            raise
        except PlatformError as err:
            status = 503 if isinstance(err, desk_slips.DeskPrinterError) else 400
            return self.slip_look_up(call, message=str(err), status=status)
        return RedirectResponse(f"/slips?code={slips.normalise_code(code)}&printed=1", status_code=303)

    def annul(self, call: Call) -> Response:
        """Annul a check-in with a reason (audited with the person)."""
        code = call.params["code"]
        staff.annul_by_staff(
            self.platform.new_uow(),
            self.platform.ctx,
            str(call.form.get("check_in_id", "")),
            str(call.form.get("reason", "")),
            actor=call.actor,
        )
        return RedirectResponse(f"/batches/{code}", status_code=303)

    def face_reset(self, call: Call) -> Response:
        """Give an expert new face attempts (reason required, audited)."""
        code = call.params["code"]
        done = face_attempts.reset_face_attempts(
            self.platform.new_uow(),
            self.platform.ctx,
            batch_code=code,
            id_value=str(call.form.get("id_number", "")),
            reason=str(call.form.get("reason", "")),
            actor=call.actor,
        )
        return self.experts(
            call, message=f"已重置 {done.expert_name} {done.id_masked} 的人脸次数 / face attempts reset"
        )

    # ---- fleet and alerts -------------------------------------------------------------------------
    def fleet(self, call: Call, *, message: str = "", status: int = 200) -> Response:
        """Kiosks and alerts (the panel refreshes itself)."""
        return self.page(
            "fleet.html", call.person, call.session_token, message=message, status=status, **self._fleet_values()
        )

    def fleet_panel(self, call: Call) -> Response:
        """The fleet page's live part."""
        return self.page("fleet_panel.html", call.person, call.session_token, **self._fleet_values())

    def _fleet_values(self) -> dict[str, Any]:
        kiosks = staff.fleet(
            self.platform.new_uow(), self.platform.ctx, offline_after_s=self.settings.alert_settings.offline_after_s
        )
        forecasts = stock_forecast.uow_forecast(
            self.platform.new_uow(), self.platform.ctx.clock(), window_s=self.settings.alert_settings.rate_window_s
        )
        return {
            "kiosks": kiosks,
            "alerts": alerts.list_alerts(self.platform.new_uow()),
            "forecasts": forecasts,
            "disabled": kiosk_states.disabled_kiosks(self.platform.new_uow()),
        }

    def alert_ack(self, call: Call) -> Response:
        """Acknowledge an open alert: someone is on it (audited with the person; sent to the webhook)."""
        try:
            alert_id = int(call.params["alert_id"])
        except ValueError:
            raise NotFoundError(f"告警 {call.params['alert_id'][:20]} 不存在 / no such alert") from None
        try:
            done = alerts.acknowledge(self.platform.new_uow(), self.platform.ctx, alert_id, actor=call.actor)
        except NotFoundError:
            raise
        except PlatformError as err:
            return self.fleet(call, message=str(err), status=400)
        if self.settings.webhook_url:
            alerts.notify(self.settings.webhook_url, "acknowledged", done)
        return RedirectResponse("/fleet", status_code=303)

    def kiosk_disable(self, call: Call) -> Response:
        """Take a kiosk out of service remotely: the platform refuses its calls, so it shows out of service."""
        try:
            kiosk_access.disable(
                self.platform.new_uow(),
                self.platform.ctx,
                call.params["kiosk_id"],
                reason=str(call.form.get("reason", "")).strip(),
                actor=call.actor,
            )
        except NotFoundError:
            raise
        except PlatformError as err:
            return self.fleet(call, message=str(err), status=400)
        return RedirectResponse("/fleet", status_code=303)

    def kiosk_enable(self, call: Call) -> Response:
        """Back in service: the kiosk's next heartbeat is accepted and it serves again."""
        kiosk_access.enable(self.platform.new_uow(), self.platform.ctx, call.params["kiosk_id"], actor=call.actor)
        return RedirectResponse("/fleet", status_code=303)

    # ---- exports and metrics ----------------------------------------------------------------------
    def export_check_ins(self, call: Call) -> Response:
        """Every check-in of the batch, masked, as CSV."""
        code = call.params["code"]
        rows = exports.check_in_rows(self.platform.new_uow(), self.platform.ctx, code)
        return csv_response(f"check-ins-{code}.csv", exports.CHECK_IN_HEADER, rows)

    def export_fees(self, call: Call) -> Response:
        """Fees with masked numbers."""
        code = call.params["code"]
        rows = exports.fee_rows(self.platform.new_uow(), self.platform.ctx, code, full_numbers=False, actor=call.actor)
        return csv_response(f"fees-{code}.csv", exports.FEE_HEADER, rows)

    def export_fees_full(self, call: Call) -> Response:
        """Fees with full ID and card numbers: finance and admin only, every read audited."""
        assert call.person is not None
        accounts.require(
            self.platform.new_uow(),
            call.person,
            accounts.Permission.EXPORT_FEES,
            what="console fees with full numbers",
            at=self.platform.ctx.clock(),
        )
        code = call.params["code"]
        rows = exports.fee_rows(self.platform.new_uow(), self.platform.ctx, code, full_numbers=True, actor=call.actor)
        return csv_response(f"fees-full-{code}.csv", exports.FEE_HEADER, rows)

    def audit_export(self, call: Call) -> Response:
        """The audit chain's entries between two dates (China days, both included) as CSV: admin only, audited.

        Streamed from one consistent snapshot (audit_chain.export_rows), so a long range does not sit in memory.
        """
        try:
            since, until = audit_range(
                call.request.query_params.get("since", ""), call.request.query_params.get("until", "")
            )
        except ValueError as err:
            return self.batches_page(call, message=f"审计导出 / audit export: {err}", status=400)
        uow = self.platform.new_uow()
        with uow:
            audit.record(
                uow,
                at=self.platform.ctx.clock(),
                actor=call.actor,
                action="audit_export",
                outcome="csv",
                detail={"since": since.isoformat(), "until": until.isoformat()},
            )
            uow.commit()
        rows = audit_chain.export_rows(self.platform.engine, since, until)
        name = f"audit-{call.request.query_params['since']}-{call.request.query_params['until']}.csv"

        def body() -> Iterator[bytes]:
            out = io.StringIO()
            writer = csv.writer(out)
            out.write("\ufeff")
            writer.writerow(audit_chain.EXPORT_FIELDS)
            for n, row in enumerate(rows, 1):
                writer.writerow([neutralised(row[f]) for f in audit_chain.EXPORT_FIELDS])
                if n % 500 == 0:
                    yield out.getvalue().encode("utf-8")
                    out.seek(0)
                    out.truncate()
            yield out.getvalue().encode("utf-8")

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    def metrics_page(self, _call: Call) -> Response:
        """Prometheus text format."""
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


class SecurityHeaders:
    """Headers on every answer: no framing, scripts and styles from this console only, no sniffing."""

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the answer's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


MAX_AUDIT_DAYS = 366


def audit_range(since: str, until: str) -> tuple[dt.datetime, dt.datetime]:
    """Two dates YYYY-MM-DD (China days, both included) as a UTC range [start of since, end of until)."""
    try:
        first = dt.date.fromisoformat(since.strip())
        last = dt.date.fromisoformat(until.strip())
    except ValueError:
        raise ValueError("请填写起止日期 YYYY-MM-DD / give both dates as YYYY-MM-DD") from None
    if last < first:
        raise ValueError("结束日期早于开始日期 / the end date is before the start date")
    if (last - first).days >= MAX_AUDIT_DAYS:
        raise ValueError(f"最多 {MAX_AUDIT_DAYS} 天 / at most {MAX_AUDIT_DAYS} days at a time")
    start = dt.datetime.combine(first, dt.time(), CHINA).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), CHINA).astimezone(dt.UTC)
    return start, end


def form_time(form: dict[str, Any], name: str) -> dt.datetime | None:
    """A form's datetime-local field as China time (None when empty); ValueError names the field."""
    raw = str(form.get(name, "")).strip()
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: 时间格式应为 YYYY-MM-DDTHH:MM / give the time as YYYY-MM-DDTHH:MM") from None
    return value if value.tzinfo else value.replace(tzinfo=CHINA)


def csv_response(filename: str, header: list[str], rows: list[list[Any]]) -> Response:
    """A UTF-8 CSV with BOM (Excel opens it as UTF-8); cells that look like formulas are quoted inert."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralised(v) for v in row])
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


CASE_KIND_TEXT = {
    cases.CaseKind.QUEUED_CHECK_IN_REFUSED: "手环已发出但签到被拒 / band out, queued check-in refused",
    cases.CaseKind.DISPENSE_OUTCOME_UNKNOWN: "出手环结果未知 / dispense outcome unknown",
    cases.CaseKind.ANNUL_REFUSED: "撤销未成功 / annulment refused",
    cases.CaseKind.KIOSK_REFUSAL_STREAK: "连续拒绝 / refusals in a row",
    cases.CaseKind.UWB_DELIVERY_FAILED: "手环写入失败 / UWB delivery failed",
    cases.CaseKind.KIOSK_SIGNAL: "终端求助 / kiosk asks for staff",
}


def case_kind_text(kind: str) -> str:
    """A case kind in words, Chinese first."""
    try:
        return CASE_KIND_TEXT[cases.CaseKind(kind)]
    except ValueError:
        return kind


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as aware UTC (SQLite gives naive UTC back)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def age_text(age: dt.timedelta) -> str:
    """How long a case has waited, the way a desk reads it: 5 分 min, 2 时 h 10 分 min."""
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} 分 min"
    return f"{minutes // 60} 时 h {minutes % 60} 分 min"


def refusal_text(reason: str | None) -> str:
    """A refusal reason in words, Chinese first."""
    if not reason:
        return ""
    try:
        refusal = refusals.Refusal(refusals.Reason(reason))
    except ValueError:
        return reason
    return f"{refusal.message_zh} / {refusal.message_en}"


def event_json(event: events.EventView) -> dict[str, Any]:
    """One event for the board (masked ID only)."""
    ci = event.check_in
    return {
        "id": event.event_id,
        "kind": event.kind.value,
        "at": china_time(event.occurred_at),
        "kiosk": event.kiosk_id,
        "check_in_id": ci.check_in_id if ci else "",
        "name": ci.expert_name if ci else "",
        "id_masked": ci.id_number_masked if ci else "",
        "room": ci.room_number if ci else "",
        "annulled": ci.annulled if ci else False,
        "reason": event.refusal_reason or "",
        "reason_text": refusal_text(event.refusal_reason),
    }


def stats_json(stats: statistics.BatchStats) -> dict[str, Any]:
    """The board's counts."""
    data = asdict(stats)
    data["kiosks"] = [
        {"kiosk_id": k.kiosk_id, "check_ins": k.check_ins, "band_stock": k.band_stock} for k in stats.kiosks
    ]
    return data
