"""A real console (uvicorn on a free port) over a real platform, and a small cookie-keeping HTTP client."""

from __future__ import annotations

import http.cookiejar
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from platform_server.console.app import Console, ConsoleSettings
from platform_server.console.security import SESSION_COOKIE, csrf_token
from platform_server.services import accounts

if TYPE_CHECKING:
    from collections.abc import Iterator

    from platform_server.bootstrap import Platform

PASSWORD = "correct horse battery staple"


@dataclass
class ConsoleServer:
    """A console served on 127.0.0.1:<free port>."""

    console: Console
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        # Streams and the alert loop end first: an open event stream would hold uvicorn's shutdown, and an
        # alert loop outliving the test would log failures against a closed database into later tests.
        self.console.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "console did not stop"


def start_console(platform: Platform, settings: ConsoleSettings | None = None) -> ConsoleServer:
    """Start uvicorn in a thread on a socket bound to port 0; return once it accepts connections."""
    console = Console(platform, settings or ConsoleSettings())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(console.app(), log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("console did not start")
        time.sleep(0.02)
    return ConsoleServer(console, server, thread, f"http://127.0.0.1:{port}")


def add_person(platform: Platform, username: str, role: accounts.Role) -> None:
    accounts.add_account(
        platform.new_uow(),
        username=username,
        role=role,
        display_name=username,
        password=PASSWORD,
        actor="os:test",
        at=platform.ctx.clock(),
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Browserless:
    """HTTP with cookies and no redirects followed, for the route table tests."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with self.opener.open(request, timeout=30) as answer:
                return Answer(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.read(), dict(err.headers))

    @property
    def session(self) -> str:
        return next((c.value or "" for c in self.jar if c.name == SESSION_COOKIE), "")

    @property
    def csrf(self) -> str:
        return csrf_token(self.session)

    def post(self, path: str, form: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, {"csrf": self.csrf, **(form or {})})

    def login(self, username: str, password: str = PASSWORD) -> Answer:
        return self.request("POST", "/login", {"username": username, "password": password})


def stream_lines(url: str, cookie: str, *, limit: int) -> Iterator[str]:
    """Lines of a server-sent event stream (at most `limit`)."""
    request = urllib.request.Request(url, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        for count, raw in enumerate(answer):
            if count >= limit:
                return
            yield raw.decode("utf-8").rstrip("\n")
