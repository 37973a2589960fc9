"""`platform-server console`: the console's composition root (platform, settings, uvicorn)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import uvicorn

from platform_server import bootstrap
from platform_server.console.app import Console, ConsoleSettings
from platform_server.errors import ConfigError
from platform_server.services import alerts

if TYPE_CHECKING:
    from platform_server.config import PlatformConfig

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 3


def settings_from_env(config: PlatformConfig) -> ConsoleSettings:
    """Console settings: PLATFORM_CONSOLE_WEBHOOK, _OFFLINE_AFTER_S, _SECURE_COOKIES, _DESK_PRINTER."""
    webhook = os.environ.get("PLATFORM_CONSOLE_WEBHOOK", "")
    if webhook and urlsplit(webhook).scheme not in {"http", "https"}:
        raise ConfigError(f"PLATFORM_CONSOLE_WEBHOOK must be an http(s) URL, got {webhook[:60]!r}")
    try:
        offline = float(os.environ.get("PLATFORM_CONSOLE_OFFLINE_AFTER_S", "90"))
        interval = float(os.environ.get("PLATFORM_CONSOLE_ALERT_INTERVAL_S", "5"))
    except ValueError as err:
        raise ConfigError(f"PLATFORM_CONSOLE_OFFLINE_AFTER_S / _ALERT_INTERVAL_S: {err}") from err
    desk_printer = os.environ.get("PLATFORM_CONSOLE_DESK_PRINTER", "")
    if desk_printer and not desk_printer.startswith(("socket://", "/dev/", "spy://")):
        raise ConfigError(
            f"PLATFORM_CONSOLE_DESK_PRINTER must be socket://host:port or a serial device, got {desk_printer[:60]!r}"
        )
    if not 1 <= offline <= 86_400 or not 0.1 <= interval <= 3600:
        raise ConfigError("offline threshold must be 1..86400 s and the alert interval 0.1..3600 s")
    return ConsoleSettings(
        secure_cookies=config.production or os.environ.get("PLATFORM_CONSOLE_SECURE_COOKIES", "") == "1",
        alert_interval_s=interval,
        alert_settings=alert_settings_from_env(
            alerts.AlertSettings(offline_after_s=offline, stock_low=config.rules.band_stock_low)
        ),
        webhook_url=webhook,
        desk_printer_url=desk_printer,
    )


def alert_settings_from_env(base: alerts.AlertSettings) -> alerts.AlertSettings:
    """Each rule's threshold and duration from PLATFORM_CONSOLE_ALERT_<FIELD> (e.g. ..._QUEUE_STUCK_FOR_S=600)."""
    changes: dict[str, float | int] = {}
    for item in dataclasses.fields(base):
        name = f"PLATFORM_CONSOLE_ALERT_{item.name.upper()}"
        raw = os.environ.get(name)
        if raw is None:
            continue
        kind = type(getattr(base, item.name))
        try:
            value = kind(raw)
        except ValueError as err:
            raise ConfigError(f"{name}: a {kind.__name__} is needed, got {raw[:40]!r}") from err
        if not 0 <= value <= 1_000_000:
            raise ConfigError(f"{name}: must be 0..1000000, got {value}")
        changes[item.name] = value
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def serve_console(config: PlatformConfig, listen: str) -> None:
    """Serve the console on host:port until interrupted (same database as the gRPC server)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen must be host:port, got {listen!r}")
    settings = settings_from_env(config)
    platform = bootstrap.build(config, face_verifier="from-config", start_uwb_worker=False)
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        bound = sock.getsockname()[1]  # port 0 picks a free one; say which
        app = Console(platform, settings).app()
        # Open live streams never finish by themselves: shutdown waits for them at most a few seconds.
        # After a graceful stop uvicorn re-raises SIGTERM/SIGINT, so the exit status names the signal.
        server = uvicorn.Server(
            uvicorn.Config(
                app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
            )
        )
        sys.stderr.write(f"运营控制台 console listening on http://{host}:{bound}/\n")
        sys.stderr.flush()
        server.run(sockets=[sock])
    finally:
        sock.close()
        platform.close()
