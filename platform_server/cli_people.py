"""CLI commands for people, the audit log, keys and face-attempt resets (registered by platform_server.cli).

`accounts`, `audit` and `keys` work on the database directly (admins on the platform's host, named in
the audit by their OS account); `faces reset` and `whoami` also work remotely with a person's token.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import sys
from pathlib import Path  # noqa: TC003  (Typer reads the annotations at run time)
from typing import TYPE_CHECKING, Annotated

import typer
from expertcheckin.v1 import organiser_pb2

from personal_data import crypto
from platform_server import bootstrap, cli
from platform_server.services import accounts, audit, audit_chain, face_attempts, key_rotation, keyring

if TYPE_CHECKING:
    from collections.abc import Callable

    from platform_server.bootstrap import Platform
    from platform_server.remote import Remote
    from platform_server.services.accounts import Role

accounts_app = typer.Typer(no_args_is_help=True, help="组织方人员账号 / organiser accounts (admins, on the host)")
audit_app = typer.Typer(no_args_is_help=True, help="审计日志 / audit log")
keys_app = typer.Typer(no_args_is_help=True, help="数据密钥 / data key")
faces_app = typer.Typer(no_args_is_help=True, help="人脸核验 / face verification")

EXIT_AUDIT_BROKEN = 8
say, run, fail, platform = cli._print, cli._run, cli._fail, cli._platform


def register(app: typer.Typer) -> None:
    """Add this module's command groups to the CLI."""
    for sub, name in ((accounts_app, "accounts"), (audit_app, "audit"), (keys_app, "keys"), (faces_app, "faces")):
        app.add_typer(sub, name=name)
    app.command("whoami")(whoami)


def host_actor() -> str:
    """The OS account and host of a direct-mode CLI user, as the audit names them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return accounts.host_actor(user, socket.gethostname())


def record_read(p: Platform, action: str, batch: str, rows: int) -> None:
    """Audit a direct-mode read of personal data (masked exports) with the OS account."""
    uow = p.new_uow()
    with uow:
        audit.record(
            uow,
            at=_now(),
            actor=host_actor(),
            action=action,
            outcome="exported",
            batch_code=batch,
            detail={"rows": rows},
        )
        uow.commit()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _role(text: str) -> Role:
    try:
        return accounts.Role(text)
    except ValueError:
        fail(f"--role: one of {', '.join(r.value for r in accounts.Role)}, not {text!r}", 3)
        raise


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)
    return value


@accounts_app.command("add")
def accounts_add(
    username: Annotated[str, typer.Argument(help="登录名 / user name (a-z 0-9 . _ -)")],
    role: Annotated[str, typer.Option("--role", help="viewer | organiser | finance | admin")],
    display_name: Annotated[str, typer.Option("--name", help="姓名 / display name")] = "",
    password: Annotated[
        bool, typer.Option("--password", help="设置密码(提示输入) / set a password (prompted)")
    ] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """添加组织方人员 / Add an organiser person (then `accounts token NAME` for an API token)."""
    chosen = _role(role)
    secret = _read_password(from_stdin=password_stdin) if password or password_stdin else None

    def action() -> None:
        p = platform()
        accounts.add_account(
            p.new_uow(),
            username=username,
            role=chosen,
            display_name=display_name,
            password=secret,
            actor=host_actor(),
            at=_now(),
        )
        say(f"已添加 / added {username} ({chosen.value})")

    run(action)


@accounts_app.command("list")
def accounts_list() -> None:
    """人员账号列表 / Every account: role, disabled, password set, live tokens."""

    def action() -> None:
        for a in accounts.list_accounts(platform().new_uow(), at=_now()):
            state = "DISABLED" if a.disabled else "active"
            pw = "password" if a.has_password else "no password"
            say(f"{a.username}\t{a.role.value}\t{state}\t{pw}\t{a.active_tokens} token(s)\t{a.display_name}")

    run(action)


@accounts_app.command("disable")
def accounts_disable(username: Annotated[str, typer.Argument()]) -> None:
    """停用人员 / Disable a person at once: every token revoked, password refused."""

    def action() -> None:
        accounts.set_disabled(platform().new_uow(), username, disabled=True, actor=host_actor(), at=_now())
        say(f"已停用 / disabled {username}; all tokens revoked")

    run(action)


@accounts_app.command("enable")
def accounts_enable(username: Annotated[str, typer.Argument()]) -> None:
    """重新启用人员 / Enable a disabled person again (old tokens stay revoked: issue a new one)."""

    def action() -> None:
        accounts.set_disabled(platform().new_uow(), username, disabled=False, actor=host_actor(), at=_now())
        say(f"已启用 / enabled {username}")

    run(action)


@accounts_app.command("set-password")
def accounts_set_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """设置密码 / Set or replace a person's password (at least 12 characters)."""
    secret = _read_password(from_stdin=password_stdin)

    def action() -> None:
        accounts.set_password(platform().new_uow(), username, secret, actor=host_actor(), at=_now())
        say(f"已设置密码 / password set for {username}")

    run(action)


@accounts_app.command("token")
def accounts_token(
    username: Annotated[str, typer.Argument()],
    label: Annotated[str, typer.Option("--label", help="用途 / what it is for")] = "",
    days: Annotated[int, typer.Option("--days", help="有效天数，0为不过期 / valid days, 0 = until revoked")] = 90,
    revoke: Annotated[bool, typer.Option("--revoke", help="撤销此人全部令牌 / revoke all of them")] = False,
) -> None:
    """签发或吊销 API 令牌 / Print a new API token for the person (shown once), or revoke all their tokens."""

    def action() -> None:
        uow = platform().new_uow()
        if revoke:
            count = accounts.revoke_tokens(uow, username, actor=host_actor(), at=_now())
            say(f"已撤销 / revoked {count} token(s) of {username}")
            return
        if days < 0:
            fail("--days: 0 or more", 3)
        lifetime = dt.timedelta(days=days) if days else None
        token = accounts.issue_token(uow, username, actor=host_actor(), at=_now(), label=label, lifetime=lifetime)
        say(token)

    run(action)


@audit_app.command("verify")
def audit_verify() -> None:
    """校验审计哈希链 / Check the audit hash chain end to end; name every edited, deleted, inserted or cut stretch."""

    def action() -> None:
        p = platform()
        report = audit_chain.verify(p.engine, audit_chain.key_for(p.engine))
        if report.ok:
            say(f"审计链完整 / audit chain intact: {report.entries} entries verified in {report.seconds:.2f} s")
            if report.pending:
                say(
                    f"另有 {report.pending} 条在核验期间写入,已封签,下一轮入链 / {report.pending} entries "
                    "written during the walk: sealed, placed in the chain by the next round"
                )
            return
        for finding in report.findings:
            typer.echo(f"{finding.kind}: {finding.message}", err=True)
        fail(
            f"审计链被改动 / audit chain BROKEN: {len(report.findings)} finding(s) in {report.entries} entries",
            EXIT_AUDIT_BROKEN,
        )

    run(action)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="输出文件 / output file")],
    since: Annotated[str | None, typer.Option("--from", help="起 / from (ISO time, China time by default)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="止(不含) / to, exclusive")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv | jsonl")] = "csv",
) -> None:
    """导出审计记录 / Audit entries of a period for inspectors: seq and mac kept, personal data masked."""
    start, end = cli._parse_time(since, "--from"), cli._parse_time(until, "--to")

    def action() -> None:
        p = platform()
        count = audit_chain.write_export(audit_chain.export_rows(p.engine, start, end), out, fmt)
        uow = p.new_uow()
        with uow:
            audit.record(
                uow,
                at=_now(),
                actor=host_actor(),
                action="audit_export",
                outcome="exported",
                detail={"from": since, "to": until, "entries": count},
            )
            uow.commit()
        say(f"已导出 {count} 条 / exported {count} audit entries to {out}")

    run(action)


@keys_app.command("fingerprint")
def keys_fingerprint() -> None:
    """数据密钥指纹 / The configured data key's fingerprint (the database refuses any other key)."""
    run(lambda: say(keyring.fingerprint(bootstrap.data_key_from(cli._config()))))


@keys_app.command("rotate")
def keys_rotate(
    new_key_file: Annotated[
        Path | None,
        typer.Option("--new-key-file", help="新密钥文件 / file holding the new key (else PLATFORM_NEW_DATA_KEY)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="kiosks heartbeated in the last 2 minutes but serve is stopped")
    ] = False,
) -> None:
    """更换数据密钥 / Re-encrypt everything under a new data key (the configured key is the old one).

    Stop `serve` first. Interrupted? Run it again with the same new key: it carries on. Then put the
    new key in the configuration.
    """
    text = (
        new_key_file.read_text(encoding="utf-8").strip()
        if new_key_file
        else os.environ.get("PLATFORM_NEW_DATA_KEY", "")
    )
    if cli._state.platform_address:
        fail("keys rotate works only in direct mode on the platform's host: leave out --platform / PLATFORM_URL", 5)
    if not text:
        fail("keys rotate needs the new key: --new-key-file FILE or PLATFORM_NEW_DATA_KEY (make one with keygen)", 3)

    def action() -> None:
        new = crypto.DataKey.from_text(text)
        p = bootstrap.build(cli._config(), face_verifier=None, start_uwb_worker=False, rotating=True)
        cli._state.platform = p

        def rotate(advance: Callable[[int], None]) -> key_rotation.RotationReport:
            return key_rotation.rotate(
                p.new_uow(), p.ctx, new, actor=host_actor(), on_chunk=lambda _w, n: advance(n), force=force
            )

        for advance in cli._progress(None, "轮换密钥 / rotating"):
            report = rotate(advance)
        resumed = " (resumed)" if report.resumed else ""
        say(
            f"已轮换 / rotated{resumed} in {report.seconds:.2f} s: {report.experts} experts, {report.pages} pages, "
            f"{report.cards} cards, {report.check_ins} check-ins, {report.photos} photos, {report.answers} answers"
        )
        say(f"now set [security] data_key to the new key (fingerprint {keyring.fingerprint(new)}) and start again")

    run(action)


@faces_app.command("reset")
def faces_reset(
    id_number: Annotated[str, typer.Argument(help="身份证号 / ID number")],
    batch: cli.BatchOption,
    reason: Annotated[str, typer.Option("--reason", help="原因(必填) / why (required)")],
) -> None:
    """重置人脸核验次数 / Give an expert whose face attempts are used up new attempts (organiser, admin); audited."""

    def direct() -> None:
        p = platform()
        done = face_attempts.reset_face_attempts(
            p.new_uow(), p.ctx, batch_code=batch, id_value=id_number, reason=reason, actor=host_actor()
        )
        by = f", used up at kiosk {done.locked_by}" if done.locked_by else ""
        say(f"已重置 / reset {done.id_masked} {done.expert_name}: {done.previous_failures} failed{by}")

    def remote(r: Remote) -> None:
        done = r.call(
            r.stub.ResetFaceAttempts,
            organiser_pb2.ResetFaceAttemptsRequest(batch_code=batch, id_number=id_number, reason=reason),
        )
        by = f", used up at kiosk {done.locked_by_kiosk}" if done.locked_by_kiosk else ""
        say(f"已重置 / reset {done.id_number_masked} {done.expert_name}: {done.previous_failures} failed{by}")

    run(lambda: cli.direct_or_remote(direct, remote))


def whoami() -> None:
    """当前身份 / Remote mode: who the token names, the role and what it allows."""

    def direct() -> None:
        say(f"{host_actor()} (direct database mode on the platform's host)")

    def remote(r: Remote) -> None:
        me = r.call(r.stub.WhoAmI, organiser_pb2.WhoAmIRequest())
        say(f"{me.username} ({me.role}): {', '.join(me.permissions)}")

    run(lambda: cli.direct_or_remote(direct, remote))
