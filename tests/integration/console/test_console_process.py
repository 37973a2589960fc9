"""`platform-server console` as its own process: the composition root, SIGTERM, bad settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from platform_server.services import accounts
from tests.integration.console.support import PASSWORD
from tests.unit.platform_server.support import seed

CLI = Path(sys.executable).with_name("platform-server")
KEY = "test-only data key, never used in production"


def env_for(db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    return env | {"PLATFORM_DB_URL": db, "PLATFORM_DATA_KEY": KEY, "PLATFORM_FACE_VERIFIER": "none"} | extra


def test_console_process_serves_the_sign_in_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    s = seed(db)
    accounts.add_account(
        s.new_uow(),
        username="zhou.viewer",
        role=accounts.Role.VIEWER,
        password=PASSWORD,
        actor="os:test",
        at=s.ctx.clock(),
    )
    process = subprocess.Popen(
        [str(CLI), "console", "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(db),
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:  # blocks per line; the process prints its address once bound
            if match := re.search(r"listening on (http://127\.0\.0\.1:\d+/)", line):
                url = match.group(1)
                break
        assert url, "the console never said where it listens"
        with urllib.request.urlopen(url + "login", timeout=60) as answer:
            page = answer.read().decode("utf-8")
        assert answer.status == 200
        assert "登录" in page
        assert "Sign in" in page
        # A live stream stays open; SIGTERM still ends the process (after a short grace period).
        stream = urllib.request.urlopen(url + "metrics", timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in {0, -signal.SIGTERM}
        stream.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_webhook_that_is_not_http_is_refused_at_start(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    seed(db)
    answer = subprocess.run(
        [str(CLI), "console", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=env_for(db, PLATFORM_CONSOLE_WEBHOOK="file:///etc/passwd"),
        timeout=120,
        check=False,
    )
    assert answer.returncode != 0
    assert "PLATFORM_CONSOLE_WEBHOOK must be an http(s) URL" in answer.stderr + answer.stdout
