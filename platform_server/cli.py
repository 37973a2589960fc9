"""Command line of the platform: organiser imports and reports, server, demo data, dev certificates.

Errors a person can fix (bad file, unknown batch, bad configuration) print one line, or the list of
bad rows, and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import rich.progress
import typer
from expertcheckin.v1 import organiser_pb2
from google.protobuf import json_format

import lazy_imports
from personal_data import crypto
from platform_server import bootstrap, dev_certs, log_masking, server
from platform_server import config as platform_config
from platform_server import remote as remote_api
from platform_server.console import serve as console_serve
from platform_server.errors import (
    AlreadyExistsError,
    ConfigError,
    ImportRefusedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
)
from platform_server.services import (
    audit,
    batches,
    cases,
    demo,
    exports,
    identify,
    imports,
    kiosk_access,
    kiosks,
    slips,
    spreadsheets,
    statistics,
)
from platform_server.services import timeline as timelines

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from platform_server.bootstrap import Platform
    from platform_server.config import PlatformConfig
    from platform_server.remote import Remote
    from platform_server.services.reader_process import EarlyReader

app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, help="评标专家签到平台 / Expert check-in platform"
)
batch_app = typer.Typer(no_args_is_help=True, help="批次 / batches")
invitations_app = typer.Typer(no_args_is_help=True, help="邀请专家名单 / invited experts")
photos_app = typer.Typer(no_args_is_help=True, help="参考照片 / reference photos")
rooms_app = typer.Typer(no_args_is_help=True, help="房源 / hotel rooms")
bands_app = typer.Typer(no_args_is_help=True, help="手环库存 / wristband inventory")
kiosks_app = typer.Typer(no_args_is_help=True, help="终端 / kiosks")
export_app = typer.Typer(no_args_is_help=True, help="导出 / exports")
db_app = typer.Typer(no_args_is_help=True, help="数据库 / database")
certs_app = typer.Typer(no_args_is_help=True, help="证书 / TLS certificates")
slips_app = typer.Typer(no_args_is_help=True, help="签到凭证 / check-in slips")
cases_app = typer.Typer(no_args_is_help=True, help="需人工处理 / needs-staff cases")
for sub, name in (
    (batch_app, "batch"),
    (invitations_app, "invitations"),
    (photos_app, "photos"),
    (rooms_app, "rooms"),
    (bands_app, "bands"),
    (kiosks_app, "kiosks"),
    (export_app, "export"),
    (db_app, "db"),
    (certs_app, "certs"),
    (slips_app, "slips"),
    (cases_app, "cases"),
):
    app.add_typer(sub, name=name)

EXIT_CODES: list[tuple[type[Exception], int]] = [
    (ImportRefusedError, 3),
    (InvalidRequestError, 3),
    (NotFoundError, 4),
    (AlreadyExistsError, 4),
    (ConfigError, 5),
    (PermissionDeniedError, 7),
    (PlatformError, 1),
]


@dataclasses.dataclass
class _State:
    config_path: Path | None = None
    db_url: str | None = None
    platform: Platform | None = None
    early_reader: EarlyReader | None = None
    exit_fast: bool = False  # skip the interpreter's teardown (see platform_server.launcher)
    platform_address: str | None = None  # remote mode (platform_server.remote)
    platform_ca: Path | None = None
    token_file: Path | None = None


_state = _State()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="PLATFORM_CONFIG", help="TOML configuration file", exists=False)
]
DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides config and PLATFORM_DB_URL)")]
BatchOption = Annotated[str, typer.Option("--batch", "-b", help="批次编号 / batch code")]


PlatformOption = Annotated[
    str | None,
    typer.Option(
        "--platform", envvar="PLATFORM_URL", help="远程平台 host:port，用个人令牌 / remote platform (PLATFORM_TOKEN)"
    ),
]
PlatformCaOption = Annotated[
    Path | None, typer.Option("--platform-ca", envvar="PLATFORM_CA", help="远程平台的CA证书 / CA file: TLS")
]
TokenFileOption = Annotated[
    Path | None, typer.Option("--token-file", help="个人令牌文件 / file with your token (else PLATFORM_TOKEN)")
]


@app.callback()
def _main(
    config: ConfigOption = None,
    db: DbOption = None,
    platform: PlatformOption = None,
    platform_ca: PlatformCaOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """评标专家签到平台 / Expert check-in platform."""
    _state.config_path = config
    _state.db_url = db
    _state.platform_address = platform
    _state.platform_ca = platform_ca
    _state.token_file = token_file


def direct_or_remote(direct: Callable[[], None], remote: Callable[[Remote], None]) -> None:
    """Run a command on the database (admins on the host) or, with --platform, over gRPC with a token."""
    if not _state.platform_address:
        direct()
        return
    token = (
        _state.token_file.read_text(encoding="utf-8").strip()
        if _state.token_file
        else os.environ.get("PLATFORM_TOKEN", "")
    )

    def env_path(name: str) -> Path | None:
        value = os.environ.get(name, "")
        return Path(value) if value else None

    connection = remote_api.Remote(
        remote_api.RemoteSettings(
            _state.platform_address,
            token,
            _state.platform_ca,
            env_path("PLATFORM_CLIENT_CERT"),
            env_path("PLATFORM_CLIENT_KEY"),
        )
    )
    try:
        remote(connection)
    finally:
        connection.close()


def _config() -> PlatformConfig:
    config = platform_config.load_config(_state.config_path)
    if _state.db_url:
        config = config.replace(database=dataclasses.replace(config.database, url=_state.db_url))
    return config


def _platform(*, face: bool = False) -> Platform:
    """The platform for a command (migrating the database); the face verifier only when needed."""
    if _state.platform_address:
        raise ConfigError(
            "this command works only in direct mode on the platform's host (remotely: batch list, batch close, "
            "status, export fees, faces reset, whoami); leave out --platform / PLATFORM_URL"
        )
    if _state.platform is None:
        _state.platform = bootstrap.build(
            _config(), face_verifier="from-config" if face else None, start_uwb_worker=False
        )
        audit.use_cli_actor(cli_people.host_actor())  # direct mode: the audit names the OS account, not just "cli"
    return _state.platform


def _print(text: str) -> None:
    typer.echo(text)


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _run(action: Callable[[], Any]) -> Any:
    """The one exception handler of the CLI: platform errors and database outages to exit codes."""
    try:
        return action()
    except PlatformError as err:
        code = next(c for cls, c in EXIT_CODES if isinstance(err, cls))
        _fail(f"错误 / error: {err}", code)
    except Exception as err:
        # SQLAlchemy is loaded only if the action loaded it (a refused file may never need it).
        sa_exc: Any = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(err, sa_exc.OperationalError):
            _fail(f"数据库不可用 / database unavailable: {str(err.orig).splitlines()[0]}", 6)
        if isinstance(err, ValueError):
            _fail(f"错误 / error: {err}", 3)
        raise
    return None


def _parse_time(text: str | None, option: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: expected a time like 2025-06-01T09:00 (China time unless a zone is given), got {text!r}", 3)
        raise
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))


@batch_app.command("create")
def batch_create(  # noqa: PLR0917  (Typer maps each parameter to an option)
    code: Annotated[str, typer.Argument(help="批次编号，ASCII / batch code, ASCII")],
    name: Annotated[str, typer.Option("--name", help="批次名称 / batch name")],
    hotel: Annotated[str, typer.Option("--hotel", help="酒店名称 / hotel name")] = "",
    hotel_code: Annotated[str, typer.Option("--hotel-code", help="酒店代码(≤8位ASCII) / hotel code")] = "H1",
    hotel_address: Annotated[str, typer.Option("--hotel-address")] = "",
    venue: Annotated[str, typer.Option("--venue", help="评标地点 / evaluation venue")] = "",
    start: Annotated[str | None, typer.Option("--start", help="评标开始 / evaluation start, ISO time")] = None,
    end: Annotated[str | None, typer.Option("--end", help="评标结束 / evaluation end, ISO time")] = None,
    opens: Annotated[str | None, typer.Option("--opens", help="签到开放 / check-in opens (default now)")] = None,
    allow_id_only: Annotated[bool, typer.Option("--allow-id-only", help="无照片可仅凭身份证 / ID card alone")] = False,
) -> None:
    """创建批次 / Create a batch (and its hotel)."""
    spec = batches.BatchSpec(
        code=code,
        name=name,
        venue=venue,
        hotel_code=hotel_code,
        hotel_name=hotel,
        hotel_address=hotel_address,
        evaluation_start=_parse_time(start, "--start"),
        evaluation_end=_parse_time(end, "--end"),
        check_in_opens=_parse_time(opens, "--opens"),
        allow_id_only=allow_id_only,
    )

    def action() -> None:
        p = _platform()
        view = batches.create_batch(p.new_uow(), p.ctx, spec, actor="cli")
        _print(f"已创建批次 / created batch {view.code}: {view.name}")

    _run(action)


@batch_app.command("list")
def batch_list(
    include_closed: Annotated[bool, typer.Option("--all", help="含已关闭 / include closed")] = False,
) -> None:
    """批次列表 / List batches."""

    def action() -> None:
        for b in batches.list_batches(_platform().new_uow(), include_closed=include_closed):
            state = "closed" if b.closed else "open"
            _print(
                f"{b.code}\t{b.name}\t{identify.china_time(b.evaluation_start)}\t{b.hotel_code} {b.hotel_name}\t{state}"
            )

    def remote(r: Remote) -> None:
        listed = r.call(r.stub.ListBatches, organiser_pb2.ListBatchesRequest(include_closed=include_closed))
        for b in listed.batches:
            start = identify.china_time(b.evaluation_start.ToDatetime(dt.UTC))
            _print(f"{b.code}\t{b.name}\t{start}\t{b.hotel_code} {b.hotel_name}\t{'closed' if b.closed else 'open'}")

    _run(lambda: direct_or_remote(action, remote))


@batch_app.command("close")
def batch_close(code: Annotated[str, typer.Argument(help="批次编号 / batch code")]) -> None:
    """关闭批次 / Close a batch: kiosks refuse further check-ins."""

    def action() -> None:
        p = _platform()
        batches.close_batch(p.new_uow(), p.ctx, code, actor="cli")
        _print(f"已关闭 / closed {code}")

    def remote(r: Remote) -> None:
        r.call(r.stub.CloseBatch, organiser_pb2.CloseBatchRequest(request_id=uuid.uuid4().hex, code=code))
        _print(f"已关闭 / closed {code}")

    _run(lambda: direct_or_remote(action, remote))


def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    with rich.progress.Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@invitations_app.command("import")
def invitations_import(
    file: Annotated[Path, typer.Argument(help=".xlsx 或 .csv (UTF-8/GBK)")],
    batch: BatchOption,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="打印各阶段耗时 / print the time of each phase (stderr)")
    ] = False,
) -> None:
    """导入邀请专家名单 / Import invited experts: every row validated first, then all rows or none."""
    started = time.perf_counter()
    _state.exit_fast = True
    early, _state.early_reader = _state.early_reader, None
    if early is not None and early.path == file:
        timeline = early.timeline
        reader = spreadsheets.InvitationReader(file, early.connection, early.process, timeline)
    else:
        if early is not None:
            early.close()
        timeline = timelines.Timeline.from_environment(verbose=verbose)
        # Parse and check the file in a reader process while this one loads the database code and starts.
        reader = spreadsheets.InvitationReader.start(file, timeline)
    timeline.mark("command line parsed")

    def action() -> None:
        reader.refuse_early()  # an empty or broken file is refused before the database code loads
        config = _config()  # light; the platform is built from the same configuration
        if config.security.data_key:
            # The reader can seal slices while this process loads the database code; an unusable key
            # is reported by the platform's start-up below.
            with contextlib.suppress(ValueError):
                reader.send_key(crypto.DataKey.from_text(config.security.data_key))
        lazy_imports.load(bootstrap, imports)  # the database code, timed on its own

        timeline.mark("database code imported")
        p = _platform()
        timeline.mark("platform started (engine, migrations)")
        for advance in _progress(None, f"导入 / importing {file.name}"):
            report = imports.import_invitations(p.new_uow(), p.ctx, batch, file, progress=advance, reader=reader)
        _print(
            f"已导入 {report.rows} 位专家 / imported {report.rows} invitations in {time.perf_counter() - started:.2f} s"
        )

    try:
        _run(action)
    finally:
        reader.close()
        timeline.mark("reader closed")
        if _state.platform is not None:
            _state.platform.close()  # SQLite checkpoints its WAL into the database file here
            timeline.mark("database closed")
        timeline.report()


@invitations_app.command("template")
def invitations_template(
    out: Annotated[Path, typer.Argument(help="输出文件 / output .xlsx")] = Path("invitations-template.xlsx"),
) -> None:
    """生成名单模板 / Write an empty invitations spreadsheet (ID column formatted as text)."""
    _run(lambda: imports.write_invitation_template(out))
    _print(f"已生成模板 / wrote {out}")


@photos_app.command("import")
def photos_import(
    source: Annotated[Path, typer.Argument(help="文件夹或 zip，文件名为身份证号 / folder or zip named by ID number")],
    batch: BatchOption,
) -> None:
    """导入参考照片 / Import reference photos (each encoded once; all or none)."""

    def action() -> None:
        p = _platform(face=True)
        for advance in _progress(len(list(source.iterdir())) if source.is_dir() else 0, "照片 / photos"):
            report = imports.import_photos(p.new_uow(), p.ctx, batch, source, progress=advance)
        _print(f"已导入 {report.rows} 张照片 / imported {report.rows} photos")

    _run(action)


@rooms_app.command("import")
def rooms_import(
    file: Annotated[Path, typer.Argument(help=".xlsx/.csv，列：房间号 / column room")], batch: BatchOption
) -> None:
    """导入房源 / Add rooms to the batch's pool."""

    def action() -> None:
        p = _platform()
        report = imports.import_rooms(p.new_uow(), p.ctx, batch, file)
        _print(f"已导入 {report.rows} 间房 / imported {report.rows} rooms")

    _run(action)


@bands_app.command("import")
def bands_import(file: Annotated[Path, typer.Argument(help=".xlsx/.csv，列 rfid_uid, uwb_tag_id")]) -> None:
    """导入手环 / Add wristbands to the inventory."""

    def action() -> None:
        p = _platform()
        report = imports.import_bands(p.new_uow(), p.ctx, file)
        _print(f"已导入 {report.rows} 个手环 / imported {report.rows} wristbands")

    _run(action)


@kiosks_app.command("add")
def kiosks_add(
    kiosk_id: Annotated[str, typer.Argument(help="终端编号 = 证书CN / kiosk id = certificate CN")],
    name: Annotated[str, typer.Option("--name")] = "",
    location: Annotated[str, typer.Option("--location")] = "",
    batch: Annotated[str, typer.Option("--batch", "-b", help="服务的批次 / batch it serves")] = "",
    cert: Annotated[
        Path | None, typer.Option("--cert", help="终端证书(PEM) / the kiosk's client certificate, PEM")
    ] = None,
) -> None:
    """注册终端 / Register a kiosk (with --cert: the one client certificate accepted for it)."""

    def action() -> None:
        p = _platform()
        pem = _read_certificate(cert) if cert else None
        kiosks.register_kiosk(p.new_uow(), p.ctx, kiosk_id, name, location, batch)
        _print(f"已登记终端 / registered kiosk {kiosk_id}")
        if pem is not None:
            fingerprint = kiosk_access.register_certificate(p.new_uow(), p.ctx, kiosk_id, pem, actor="cli")
            _print(f"证书已登记 / certificate registered: sha256 {fingerprint}")

    _run(action)


def _read_certificate(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidRequestError(f"cannot read {path}: {err.strerror}") from err


KioskArgument = Annotated[str, typer.Argument(help="终端编号 / kiosk id")]
ReasonOption = Annotated[str, typer.Option("--reason", help="原因 / reason (audited)")]


@kiosks_app.command("disable")
def kiosks_disable(kiosk_id: KioskArgument, reason: ReasonOption) -> None:
    """停用终端 / Refuse every call of the kiosk from now on (e.g. stolen, broken, moved)."""

    def action() -> None:
        p = _platform()
        kiosk_access.disable(p.new_uow(), p.ctx, kiosk_id, reason=reason, actor="cli")
        _print(f"已停用终端 / disabled kiosk {kiosk_id}")

    _run(action)


@kiosks_app.command("enable")
def kiosks_enable(kiosk_id: KioskArgument) -> None:
    """启用终端 / Serve a disabled kiosk again."""

    def action() -> None:
        p = _platform()
        kiosk_access.enable(p.new_uow(), p.ctx, kiosk_id, actor="cli")
        _print(f"已启用终端 / enabled kiosk {kiosk_id}")

    _run(action)


@kiosks_app.command("remove")
def kiosks_remove(kiosk_id: KioskArgument) -> None:
    """注销终端 / Retire a kiosk for good (its id is not reused; its check-ins keep naming it)."""

    def action() -> None:
        p = _platform()
        kiosk_access.remove(p.new_uow(), p.ctx, kiosk_id, actor="cli")
        _print(f"已移除终端 / removed kiosk {kiosk_id}")

    _run(action)


@kiosks_app.command("cert")
def kiosks_cert(
    kiosk_id: KioskArgument, cert: Annotated[Path, typer.Argument(help="终端证书(PEM) / client certificate, PEM")]
) -> None:
    """登记终端证书 / Register the one client certificate accepted for the kiosk (replaces the earlier one)."""

    def action() -> None:
        p = _platform()
        fingerprint = kiosk_access.register_certificate(
            p.new_uow(), p.ctx, kiosk_id, _read_certificate(cert), actor="cli"
        )
        _print(f"证书已登记 / certificate registered for {kiosk_id}: sha256 {fingerprint}")

    _run(action)


@kiosks_app.command("revoke-cert")
def kiosks_revoke_cert(kiosk_id: KioskArgument) -> None:
    """吊销终端证书 / Refuse the kiosk's certificate from the next call on, until a new one is registered."""

    def action() -> None:
        p = _platform()
        kiosk_access.revoke_certificate(p.new_uow(), p.ctx, kiosk_id, actor="cli")
        _print(f"证书已吊销 / certificate of {kiosk_id} revoked")

    _run(action)


def _case_lines(view: Any) -> list[str]:
    who = f"{view.expert_name or ''} {view.id_number_masked or ''}".strip() or "-"
    lines = [
        f"{view.case_id}  [{view.state.value}]  {view.kind}",
        f"  批次 batch {view.batch_code or '-'}   终端 kiosk {view.kiosk_id or '-'}   手环 band {view.band_uid or '-'}",
        f"  专家 expert {who}   签到 check-in {view.check_in_id or '-'}",
        f"  原因 reason {view.reason or '-'}   时间 opened {identify.china_time(view.created_at)} by {view.created_by}",
    ]
    if view.detail:
        lines.append(f"  详情 detail {view.detail}")
    if view.resolved_at is not None:
        lines.append(
            f"  已处理 resolved {identify.china_time(view.resolved_at)} by {view.resolved_by}: {view.resolution}"
        )
    return lines


@cases_app.command("list")
def cases_list(
    batch: Annotated[str, typer.Option("--batch", "-b", help="批次编号 / batch code")] = "",
    include_resolved: Annotated[bool, typer.Option("--all", help="含已处理 / include resolved")] = False,
    kind: Annotated[str, typer.Option("--kind", help="类别 / kind")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """待处理事项列表 / Open needs-staff cases, oldest first (--all: resolved too)."""

    def action() -> None:
        state = None if include_resolved else cases.CaseState.OPEN
        views = cases.list_cases(_platform().new_uow(), state=state, batch_code=batch or None, kind=kind or None)
        if as_json:
            _print(json.dumps([dataclasses.asdict(v) for v in views], ensure_ascii=False, default=str, indent=1))
            return
        if not views:
            _print("没有待处理事项 / no cases")
        for view in views:
            for line in _case_lines(view):
                _print(line)

    _run(action)


@cases_app.command("show")
def cases_show(case_id: Annotated[str, typer.Argument(help="工单编号 / case id")]) -> None:
    """查看事项 / One case with everything staff need."""

    def action() -> None:
        for line in _case_lines(cases.get_case(_platform().new_uow(), case_id)):
            _print(line)

    _run(action)


@cases_app.command("resolve")
def cases_resolve(case_id: Annotated[str, typer.Argument(help="工单编号 / case id")], reason: ReasonOption) -> None:
    """办结事项 / Close a case, saying what was done (audited)."""

    def action() -> None:
        p = _platform()
        view = cases.resolve_case(p.new_uow(), p.ctx, case_id, reason=reason, actor="cli")
        _print(f"已处理 / resolved {view.case_id}")

    _run(action)


@app.command("status")
def status(batch: BatchOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """签到概况 / Invited, arrived, missing, rooms and bands left, UWB delivery, open cases, kiosks."""

    def action() -> None:
        stats = statistics.batch_statistics(_platform().new_uow(), batch)
        if as_json:
            data = dataclasses.asdict(stats)
            _print(json.dumps(data, ensure_ascii=False, default=str, indent=1))
            return
        _print(f"批次 / batch {stats.code}")
        _print(f"  邀请 invited {stats.invited}   已到 arrived {stats.arrived}   未到 missing {stats.missing}")
        _print(f"  房间 rooms {stats.rooms_left}/{stats.rooms_total} left   手环 bands left {stats.bands_left}")
        _print(f"  撤销 annulled {stats.annulled}   需人工 needs staff {stats.needs_staff}")
        _print(f"  UWB pending {stats.uwb_pending}   delivered {stats.uwb_delivered}   failed {stats.uwb_failed}")
        open_cases = len(cases.list_cases(_platform().new_uow(), batch_code=batch, limit=cases.MAX_LIST))
        _print(f"  待处理工单 open cases {open_cases}   (platform-server cases list --batch {batch})")
        for k in stats.kiosks:
            seen = k.last_heartbeat.isoformat(timespec="seconds") if k.last_heartbeat else "never"
            oos = "  OUT OF SERVICE" if k.out_of_service else ""
            paper = _PAPER_WORDS.get(k.printer_paper, "")
            _print(f"  {k.kiosk_id}: {k.check_ins} check-ins, bands {k.band_stock}, last heartbeat {seen}{oos}{paper}")

    def remote(r: Remote) -> None:
        stats = r.call(r.stub.GetBatchStatistics, organiser_pb2.GetBatchStatisticsRequest(code=batch))
        if as_json:
            _print(
                json.dumps(
                    json_format.MessageToDict(stats, preserving_proto_field_name=True), ensure_ascii=False, indent=1
                )
            )
            return
        _print(f"批次 / batch {stats.code}")
        _print(f"  邀请 invited {stats.invited}   已到 arrived {stats.arrived}   未到 missing {stats.missing}")
        _print(f"  房间 rooms {stats.rooms_left}/{stats.rooms_total} left   手环 bands left {stats.bands_left}")
        _print(f"  撤销 annulled {stats.annulled}   需人工 needs staff {stats.needs_staff}")
        _print(f"  UWB pending {stats.uwb_pending}   delivered {stats.uwb_delivered}")
        for k in stats.kiosks:
            seen = (
                k.last_heartbeat.ToDatetime(dt.UTC).isoformat(timespec="seconds")
                if k.HasField("last_heartbeat")
                else "never"
            )
            oos = "  OUT OF SERVICE" if k.out_of_service else ""
            paper = _PAPER_WORDS.get(k.printer_paper, "")
            _print(f"  {k.kiosk_id}: {k.check_ins} check-ins, bands {k.band_stock}, last heartbeat {seen}{oos}{paper}")

    _run(lambda: direct_or_remote(action, remote))


#: How `status` shows a kiosk's receipt paper (nothing while it is fine or unknown).
_PAPER_WORDS = {"near_end": "  打印纸将尽 PAPER NEAR END", "out": "  打印机缺纸 PAPER OUT"}


@slips_app.command("show")
def slips_show(code: Annotated[str, typer.Argument(help="凭证验证码 / the code under the slip's QR code")]) -> None:
    """查验签到凭证 / Look up a printed slip by its verification code (masked data; audited)."""

    def action() -> None:
        p = _platform()
        slip = slips.look_up_slip(p.new_uow(), p.ctx, code)
        c = slip.check_in
        state = "有效 / valid" if slip.valid else "已撤销 / ANNULLED"
        _print(f"凭证 / slip {slips.display_code(slip.code)}: {state}")
        _print(f"  专家 expert {c.expert_name} {c.id_number_masked}")
        _print(f"  批次 batch {c.batch_code}   终端 kiosk {c.kiosk_id} No. {c.slip_serial:06d}")
        _print(f"  签到 checked in {c.checked_in_at.isoformat(timespec='seconds')}   check-in {c.check_in_id}")
        _print(f"  酒店 hotel {c.hotel_name}   房间 room {c.room_number}   手环 band {c.uwb_tag_id}")

    _run(action)


FormatOption = Annotated[str, typer.Option("--format", "-f", help="xlsx | csv | json")]


@export_app.command("check-ins")
def export_check_ins(
    batch: BatchOption, out: Annotated[Path, typer.Option("--out", "-o")], fmt: FormatOption = "xlsx"
) -> None:
    """导出签到记录 / All check-ins of a batch (masked), with UWB delivery state."""

    def action() -> None:
        p = _platform()
        rows = exports.check_in_rows(p.new_uow(), p.ctx, batch)
        exports.write_table(out, fmt, exports.CHECK_IN_HEADER, rows)
        cli_people.record_read(p, "export_check_ins", batch, len(rows))
        _print(f"已导出 {len(rows)} 条 / exported {len(rows)} check-ins to {out}")

    _run(action)


@export_app.command("fees")
def export_fees(
    batch: BatchOption,
    out: Annotated[Path, typer.Option("--out", "-o")],
    fmt: FormatOption = "xlsx",
    full_numbers: Annotated[
        bool, typer.Option("--full-numbers", help="完整卡号身份证号（财务付款用）/ unmasked, for payment")
    ] = False,
) -> None:
    """导出劳务费发放清单 / Fee-payment list for finance (masked unless --full-numbers; that export is audit-logged)."""

    def action() -> None:
        p = _platform()
        rows = exports.fee_rows(p.new_uow(), p.ctx, batch, full_numbers=full_numbers)
        exports.write_table(out, fmt, exports.FEE_HEADER, rows, private=full_numbers)
        if not full_numbers:  # the full list is audited by the export itself
            cli_people.record_read(p, "export_fees", batch, len(rows))
        _print(f"已导出 {len(rows)} 条 / exported {len(rows)} payees to {out}")

    def remote(r: Remote) -> None:
        answer = r.call(r.stub.ExportFees, organiser_pb2.ExportFeesRequest(batch_code=batch, full_numbers=full_numbers))
        rows: list[list[Any]] = [
            [x.name, x.id_number, x.organisation, x.bank, x.card_number, x.checked_in_at] for x in answer.rows
        ]
        exports.write_table(out, fmt, exports.FEE_HEADER, rows, private=full_numbers)
        _print(f"已导出 {len(rows)} 条 / exported {len(rows)} payees to {out}")

    _run(lambda: direct_or_remote(action, remote))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """升级数据库结构 / Create or migrate the database schema to the newest version."""
    _run(_platform)
    _print("数据库已是最新 / database is up to date")


@app.command("keygen")
def keygen() -> None:
    r"""生成数据密钥 / Print a fresh random data key for \[security] data_key / PLATFORM_DATA_KEY."""
    _print(crypto.DataKey.generate_text())


@app.command("serve")
def serve_command(listen: Annotated[str | None, typer.Option("--listen", help="host:port")] = None) -> None:
    """运行平台服务 / Run the gRPC server until SIGTERM/SIGINT, then stop gracefully."""

    def action() -> None:
        config = _config()
        if listen:
            config = config.replace(server=dataclasses.replace(config.server, listen=listen))
        log_masking.configure_logging(config.logging.level, config.logging.file or None)
        server.serve(config)

    _run(action)


@app.command("console")
def console_command(
    listen: Annotated[str, typer.Option("--listen", help="host:port")] = "127.0.0.1:8080",
) -> None:
    """运营控制台 / Serve the operations console (web) beside the gRPC server, on the same database."""

    def action() -> None:
        config = _config()
        log_masking.configure_logging(config.logging.level, config.logging.file or None)
        console_serve.serve_console(config, listen)

    _run(action)


@app.command("demo-seed")
def demo_seed(
    faces_dir: Annotated[Path | None, typer.Option("--faces-dir", help="参考照片目录 / reference faces")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b")] = "DEMO",
) -> None:
    """写入演示数据 / Create the demo batch (open now), rooms, bands, kiosks K1-K2 and invited experts."""

    def action() -> None:
        p = _platform(face=faces_dir is not None)
        summary = demo.seed_demo(p.new_uow(), p.ctx, batch_code=batch, faces_dir=faces_dir)
        _print(summary)

    _run(action)


@certs_app.command("make-dev")
def certs_make_dev(
    out: Annotated[Path, typer.Option("--out", help="输出目录 / output folder")],
    kiosk: Annotated[list[str], typer.Option("--kiosk", help="终端编号(可多次) / kiosk id (repeat)")],
    host: Annotated[list[str] | None, typer.Option("--host", help="server DNS name or IP")] = None,
) -> None:
    """生成开发用证书 / Development CA, server certificate and one client certificate per kiosk (CN = kiosk id)."""

    def action() -> None:
        written = dev_certs.make_dev_certificates(out, kiosk, host or ["localhost", "127.0.0.1"])
        for path in written:
            _print(str(path))

    _run(action)


from platform_server import cli_people  # noqa: E402  (its commands use this module's helpers)

cli_people.register(app)


def main(early_reader: EarlyReader | None = None) -> None:
    """Run the command line (the console script, platform_server.launcher, passes the reader it forked)."""
    _state.early_reader = early_reader
    try:
        app()
    finally:
        if _state.early_reader is not None:  # forked for a command line Typer then refused
            _state.early_reader.close()


def wants_fast_exit() -> bool:
    """True once `invitations import` ran: the launcher may then skip the interpreter's teardown."""
    return _state.exit_fast
