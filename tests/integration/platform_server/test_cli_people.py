"""The CLI as real processes: accounts, `audit verify` / `audit export`, `keys rotate`, and the remote
mode that calls a real server with a person's token (SQLite)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from personal_data.crypto import DataKey
from platform_server.bootstrap import build
from platform_server.config import load_config
from platform_server.server import create_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PLATFORM_SERVER = Path(sys.executable).with_name("platform-server")


class Cli:
    """`platform-server --config FILE ...` with only this test's PLATFORM_* settings."""

    def __init__(self, tmp_path: Path, data_key: str) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "platform.db"
        self.config = tmp_path / "platform.toml"
        self.write(data_key)

    def write(self, data_key: str) -> None:
        self.config.write_text(
            f'[database]\nurl = "sqlite:///{self.db}"\n'
            f'[security]\ndata_key = "{data_key}"\ninsecure_kiosks = true\n[face]\nverifier = "none"\n',
            encoding="utf-8",
        )

    def __call__(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
        return subprocess.run(
            [str(PLATFORM_SERVER), "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**clean, **env},
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, **env: str) -> str:
        result = self(*args, **env)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path, DataKey.generate_text())
    c.ok("batch", "create", "B1", "--name", "第一批", "--start", "2030-06-01T09:00", "--end", "2030-06-01T17:00")
    return c


def test_accounts_are_managed_on_the_host_and_the_audit_names_the_os_account(cli: Cli) -> None:
    result = cli(
        "accounts",
        "add",
        "li.na",
        "--role",
        "finance",
        "--name",
        "李娜",
        "--password-stdin",
        stdin="a long passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    assert cli("accounts", "add", "li.na", "--role", "viewer").returncode == 4  # taken
    assert cli("accounts", "add", "x", "--role", "boss").returncode == 3
    token = cli.ok("accounts", "token", "li.na", "--label", "laptop").strip()
    assert token.startswith("eco_")
    assert "li.na\tfinance\tactive\tpassword\t1 token(s)\t李娜" in cli.ok("accounts", "list")
    cli.ok("accounts", "disable", "li.na")
    assert "li.na\tfinance\tDISABLED\tpassword\t0 token(s)" in cli.ok("accounts", "list")
    engine = sa.create_engine(f"sqlite:///{cli.db}")
    with engine.connect() as c:
        actors = set(c.exec_driver_sql("SELECT actor FROM audit_log WHERE action LIKE 'account%'").scalars())
    engine.dispose()
    assert actors == {f"os:{getpass.getuser()}@{os.uname().nodename}"[:64]}
    assert token not in cli.db.read_bytes().decode("latin-1")  # only its hash is stored


def test_audit_verify_passes_then_names_an_edited_entry(cli: Cli) -> None:
    assert "audit chain intact" in cli.ok("audit", "verify")
    engine = sa.create_engine(f"sqlite:///{cli.db}")
    with engine.begin() as c:
        c.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        victim = c.exec_driver_sql("SELECT id FROM audit_log ORDER BY seq LIMIT 1").scalar_one()
        c.exec_driver_sql(f"UPDATE audit_log SET outcome = 'forged' WHERE id = {victim}")
    engine.dispose()
    result = cli("audit", "verify")
    assert result.returncode == 8, result.stderr
    assert f"edited: entry id {victim} (seq 1," in result.stderr
    assert "audit chain BROKEN: 1 finding(s)" in result.stderr


def test_audit_export_keeps_the_chain_fields_and_leaves_out_the_id_hash(cli: Cli) -> None:
    out = cli.tmp_path / "audit.jsonl"
    cli.ok(
        "audit", "export", "--from", "2000-01-01T00:00", "--to", "2100-01-01T00:00", "--format", "jsonl", "-o", str(out)
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["action"] for r in rows][:1] == ["batch_create"]
    assert all("id_hash" not in r and len(r["mac"]) == 64 for r in rows)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    empty = cli.tmp_path / "none.csv"
    cli.ok("audit", "export", "--from", "2000-01-01T00:00", "--to", "2000-01-02T00:00", "-o", str(empty))
    assert empty.read_text(encoding="utf-8").splitlines()[0].startswith("seq,id,occurred_at")


def test_keys_rotate_then_only_the_new_key_opens_the_database(cli: Cli) -> None:
    new_key = DataKey.generate_text()
    (cli.tmp_path / "new.key").write_text(new_key, encoding="utf-8")
    assert cli("keys", "rotate").returncode == 3  # no new key given
    out = cli.ok("keys", "rotate", "--new-key-file", str(cli.tmp_path / "new.key"))
    assert "rotated in" in out
    old = cli("batch", "list")
    assert old.returncode == 5
    assert old.stderr.count("\n") == 1
    assert "wrong data key" in old.stderr
    cli.write(new_key)
    assert "B1" in cli.ok("batch", "list")
    assert "audit chain intact" in cli.ok("audit", "verify")


@pytest.fixture
def served(cli: Cli) -> Iterator[int]:
    config = load_config(cli.config, environ={})
    platform = build(config, face_verifier=None, start_uwb_worker=False)
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    yield port
    server.stop(None).wait()
    platform.close()


def test_remote_mode_calls_the_platform_with_a_persons_token(cli: Cli, served: int) -> None:
    cli.ok("accounts", "add", "zhang.v", "--role", "viewer")
    cli.ok("accounts", "add", "chen.f", "--role", "finance")
    viewer = cli.ok("accounts", "token", "zhang.v").strip()
    finance = cli.ok("accounts", "token", "chen.f").strip()
    remote = {"PLATFORM_URL": f"127.0.0.1:{served}"}
    assert "zhang.v (viewer)" in cli.ok("whoami", PLATFORM_TOKEN=viewer, **remote)
    assert "B1\t第一批" in cli.ok("batch", "list", PLATFORM_TOKEN=viewer, **remote)
    assert "邀请 invited 0" in cli.ok("status", "-b", "B1", PLATFORM_TOKEN=viewer, **remote)
    out = cli.tmp_path / "fees.csv"
    refused = cli(
        "export", "fees", "-b", "B1", "-o", str(out), "-f", "csv", "--full-numbers", PLATFORM_TOKEN=viewer, **remote
    )
    assert refused.returncode == 7, refused.stderr
    assert "PERMISSION_DENIED" in refused.stderr
    assert not out.exists()
    cli.ok(
        "export", "fees", "-b", "B1", "-o", str(out), "-f", "csv", "--full-numbers", PLATFORM_TOKEN=finance, **remote
    )
    assert out.exists()
    closing = cli("batch", "close", "B1", PLATFORM_TOKEN=viewer, **remote)
    assert closing.returncode == 7
    local_only = cli("accounts", "list", PLATFORM_TOKEN=finance, **remote)
    assert local_only.returncode == 5
    assert "only in direct mode" in local_only.stderr
    no_token = cli("batch", "list", **remote)
    assert no_token.returncode == 5
    assert "PLATFORM_TOKEN" in no_token.stderr


def test_direct_mode_exports_are_audited_with_the_os_account(cli: Cli) -> None:
    cli.ok("export", "check-ins", "-b", "B1", "-o", str(cli.tmp_path / "c.csv"), "-f", "csv")
    cli.ok("export", "fees", "-b", "B1", "-o", str(cli.tmp_path / "f.csv"), "-f", "csv")
    cli.ok("export", "fees", "-b", "B1", "-o", str(cli.tmp_path / "full.csv"), "-f", "csv", "--full-numbers")
    engine = sa.create_engine(f"sqlite:///{cli.db}")
    with engine.connect() as c:
        rows = c.exec_driver_sql("SELECT action, actor FROM audit_log WHERE action LIKE 'export%' ORDER BY seq").all()
    engine.dispose()
    me = f"os:{getpass.getuser()}@{os.uname().nodename}"[:64]
    assert [tuple(r) for r in rows] == [("export_check_ins", me), ("export_fees", me), ("export_fees_full", me)]
