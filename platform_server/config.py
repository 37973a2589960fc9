"""Platform configuration: a TOML file, then `PLATFORM_*` environment overrides, range-checked.

Unknown sections and keys are refused with the file and key named, so a typo never silently falls
back to a default. Environment: `PLATFORM_<SECTION>_<KEY>` (e.g. `PLATFORM_SERVER_LISTEN`), plus the
short forms `PLATFORM_DB_URL`, `PLATFORM_DATA_KEY` and `PLATFORM_ORGANISER_TOKEN`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from platform_server.errors import ConfigError
from platform_server.face import defaults as face_defaults

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

DEFAULT_DB_URL = "sqlite:///var/platform.db"
MODES = ("development", "production")
FACE_VERIFIERS = ("dlib", "none")
# Who checks the kiosk's liveness challenge: the platform itself (the frames are checked again), or
# the kiosk alone (its flag is trusted; about a fifth of the face work per identify, see docs/face.md).
FACE_LIVENESS = ("platform", "kiosk")
MESSAGE_OVERHEAD_BYTES = 64 * 1024  # an IdentifyExpert request beside its face capture
# Connections for threads beside the request threads (the audit chainer, a worker lease's own connection).
BACKGROUND_CONNECTIONS = 4


def _opt(
    default: Any, minimum: float | None = None, maximum: float | None = None, choices: tuple[str, ...] = ()
) -> Any:
    """A dataclass field with range/choice metadata for the loader."""
    return field(default=default, metadata={"min": minimum, "max": maximum, "choices": choices})


@dataclass(frozen=True, slots=True)
class ServerSection:
    """[server]: where to listen and how many RPCs to serve at once."""

    listen: str = _opt("127.0.0.1:50051")
    max_workers: int = _opt(32, 2, 1000)
    grace_s: float = _opt(10.0, 0, 300)
    # After SIGTERM: health checks answer NOT_SERVING (gRPC) / 503 (HTTP) for this long before the
    # server stops taking calls, so a load balancer has stopped sending new ones (see docs/deploy.md).
    drain_s: float = _opt(0.0, 0, 120)
    # `host:port` of a plain HTTP `GET /health` for load balancers (empty: none).
    health_listen: str = _opt("")
    max_message_bytes: int = _opt(8 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class DatabaseSection:
    """[database]: SQLAlchemy URL (SQLite file by default, PostgreSQL in production)."""

    url: str = _opt(DEFAULT_DB_URL)
    # Connections kept open; 0: one per request thread ([server] max_workers) and BACKGROUND_CONNECTIONS
    # more, so calls never open and close connections under load (PlatformConfig.pool_size).
    pool_size: int = _opt(0, 0, 1000)
    # Both databases: false lets an identify's transaction (its answer and audit entry) commit without
    # waiting for the disk (db.unit_of_work.DriverTransaction, flushed=False; what that risks:
    # docs/platform-configuration.md).
    identify_synchronous_commit: bool = _opt(False)  # noqa: FBT003


@dataclass(frozen=True, slots=True)
class SecuritySection:
    """[security]: data key, organiser token, TLS files; production refuses to run without them."""

    mode: str = _opt("development", choices=MODES)
    data_key: str = _opt("")
    organiser_token: str = _opt("")  # no longer used (persons' tokens replaced it); accepted, warned about
    tls_cert: str = _opt("")
    tls_key: str = _opt("")
    client_ca: str = _opt("")
    # Development only: serve kiosks without client certificates (plaintext, or TLS without client_ca),
    # trusting the kiosk_id each request names. Never the default; production refuses it.
    insecure_kiosks: bool = _opt(False)  # noqa: FBT003


@dataclass(frozen=True, slots=True)
class RulesSection:
    """[rules]: check-in rules and limits."""

    annul_window_s: int = _opt(900, 10, 86_400)
    identification_ttl_s: int = _opt(600, 5, 3600)
    face_max_attempts: int = _opt(3, 1, 10)
    band_stock_low: int = _opt(20, 0, 10_000)
    max_signature_bytes: int = _opt(512 * 1024, 1024, 16 * 1024 * 1024)
    event_poll_s: float = _opt(1.0, 0.05, 60)
    # Refusals in a row at one kiosk (not invited, face mismatch, invalid ID) before it is slowed down:
    # then each further refusal locks IdentifyExpert for kiosk_throttle_s, doubling up to the maximum.
    kiosk_refusal_streak: int = _opt(5, 2, 1000)
    kiosk_throttle_s: float = _opt(30.0, 0.1, 3600)
    kiosk_throttle_max_s: float = _opt(900.0, 1, 86_400)


@dataclass(frozen=True, slots=True)
class FaceSection:
    """[face]: which verifier, its decision threshold and image limits."""

    verifier: str = _opt("dlib", choices=FACE_VERIFIERS)
    # Defaults are the verifier's own (face/defaults.py), so the config and a verifier built without
    # it can never disagree. Above 1.0 almost any two faces match, so the range stops there.
    threshold: float = _opt(face_defaults.DEFAULT_THRESHOLD, 0.1, 1.0)
    # Reference photos (phone pictures, often 12 MP and 2-5 MB) pass the same limits as kiosk captures.
    max_image_bytes: int = _opt(face_defaults.DEFAULT_MAX_IMAGE_BYTES, 16 * 1024, 32 * 1024 * 1024)
    max_pixels: int = _opt(face_defaults.DEFAULT_MAX_PIXELS, 10_000, 100_000_000)
    # Verification runs in this many worker processes (0: in the server process, one at a time;
    # -1: one per core), so faces verified per second grow with the cores (face/pool.py).
    processes: int = _opt(-1, -1, 256)
    # Calls that may wait for a free worker; one more is refused at once (RESOURCE_EXHAUSTED, retry later).
    # With the workers, at most three quarters of [server] max_workers: a longer one is shortened at start.
    # Half of it is kept for identifies sent again after a busy answer (face/pool.py).
    queue: int = _opt(16, 0, 10_000)
    # "kiosk" trusts the kiosk's liveness flag without checking its challenge frames: only for kiosks
    # whose client certificates the site controls, when its cores cannot afford the check (deploy.md).
    liveness: str = _opt("platform", choices=FACE_LIVENESS)


@dataclass(frozen=True, slots=True)
class UwbSection:
    """[uwb]: the UWB gateway port URL (empty: no delivery worker) and retry policy."""

    port: str = _opt("")
    max_attempts: int = _opt(20, 1, 1000)
    retry_s: float = _opt(5.0, 0.1, 3600)
    poll_s: float = _opt(1.0, 0.05, 60)


@dataclass(frozen=True, slots=True)
class LoggingSection:
    """[logging]: level and optional file (every handler masks personal numbers)."""

    level: str = _opt("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    file: str = _opt("")


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    """The whole configuration, one attribute per TOML section."""

    server: ServerSection = field(default_factory=ServerSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    rules: RulesSection = field(default_factory=RulesSection)
    face: FaceSection = field(default_factory=FaceSection)
    uwb: UwbSection = field(default_factory=UwbSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    @property
    def production(self) -> bool:
        """True in production mode (stricter start-up checks)."""
        return self.security.mode == "production"

    @property
    def pool_size(self) -> int:
        """Database connections the pool keeps: [database] pool_size, or when 0 one per request thread.

        A pool smaller than the request threads closes its overflow connections as they come back and
        opens new ones for the next calls: on PostgreSQL a new server process each time (measured:
        check-ins/s 13 % lower with 20 connections for 64 threads, docs/performance.md).
        """
        return self.database.pool_size or self.server.max_workers + BACKGROUND_CONNECTIONS

    def replace(self, **sections: Any) -> PlatformConfig:
        """A copy with whole sections replaced, e.g. database=DatabaseSection(url=...)."""
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type[Any]] = {f.name: f.type for f in dataclasses.fields(PlatformConfig)}  # type: ignore[misc]
_SECTION_CLASSES: dict[str, type[Any]] = {
    "server": ServerSection,
    "database": DatabaseSection,
    "security": SecuritySection,
    "rules": RulesSection,
    "face": FaceSection,
    "uwb": UwbSection,
    "logging": LoggingSection,
}
_ENV_ALIASES = {
    "PLATFORM_DB_URL": ("database", "url"),
    "PLATFORM_DATA_KEY": ("security", "data_key"),
    "PLATFORM_ORGANISER_TOKEN": ("security", "organiser_token"),
}


def _convert(kind: type, raw: Any) -> Any:
    """Convert a TOML or environment value to `kind`; TypeError/ValueError if it is not one."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if not isinstance(raw, str) or raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ValueError(raw)
        return raw.lower() in {"1", "true", "yes"}
    if kind is int:
        if isinstance(raw, (bool, float)):
            raise TypeError(raw)
        return int(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise TypeError(raw)
        return float(raw)
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


def _coerce(section: str, key: str, spec: dataclasses.Field[Any], raw: Any, origin: str) -> Any:
    """Convert and range-check one value, naming where it came from on failure."""
    kind = type(spec.default)
    where = f"Option '{key}' in section '{section}' ({origin})"
    try:
        value = _convert(kind, raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} must be {kind.__name__}, got {raw!r}") from err
    minimum, maximum, choices = spec.metadata["min"], spec.metadata["max"], spec.metadata["choices"]
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where} must be at most {maximum}, got {value}")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def load_config(  # noqa: C901, PLR0912  (file, environment, then per-key checks)
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> PlatformConfig:
    """Read the TOML file (if given), apply environment overrides, check everything."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"configuration file {path} does not exist") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"configuration file {path} is not valid TOML: {err}") from err
    values: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in _SECTION_CLASSES}
    for section, table in raw.items():
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"Unknown section '{section}' in {origin} (known: {', '.join(_SECTION_CLASSES)})")
        if not isinstance(table, dict):
            raise ConfigError(f"'{section}' in {origin} must be a [section]")
        for key, value in table.items():
            values[section][key] = (value, origin)
    for name, value in env.items():
        if name in _ENV_ALIASES:
            section, key = _ENV_ALIASES[name]
        elif name.startswith("PLATFORM_"):
            section, _, key = name.removeprefix("PLATFORM_").lower().partition("_")
            if section not in _SECTION_CLASSES:
                continue  # other programs' PLATFORM_* variables (e.g. PLATFORM_TEST_PG_URL)
        else:
            continue
        values[section][key] = (value, f"environment {name}")
    sections: dict[str, Any] = {}
    for section, cls in _SECTION_CLASSES.items():
        specs = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, (value, where) in values[section].items():
            if key not in specs:
                raise ConfigError(f"Unknown option '{key}' in section '{section}' ({where}); known: {', '.join(specs)}")
            kwargs[key] = _coerce(section, key, specs[key], value, where)
        sections[section] = cls(**kwargs)
    config = PlatformConfig(**sections)
    _check_across_sections(config)
    return config


def _check_across_sections(config: PlatformConfig) -> None:
    """Limits that depend on each other: a face capture at its limit must fit in one gRPC message."""
    needed = config.face.max_image_bytes + MESSAGE_OVERHEAD_BYTES
    if config.server.max_message_bytes < needed:
        # Otherwise gRPC drops the call with RESOURCE_EXHAUSTED before the platform can answer
        # IMAGE_TOO_LARGE, and the kiosk cannot tell the expert what went wrong.
        raise ConfigError(
            f"Option 'max_message_bytes' in section 'server' must be at least [face] max_image_bytes + "
            f"{MESSAGE_OVERHEAD_BYTES} = {needed}, got {config.server.max_message_bytes}"
        )


def face_places_for(config: PlatformConfig, workers: int) -> tuple[int, int, str | None]:
    """The face workers and [face] queue as the server may use them: a quarter of the request threads stays free.

    An identify holds a request thread while it holds or waits for its place (or its two). With
    places for (nearly) every thread the overload answer never comes: identifies queue in gRPC itself,
    unbounded, and the completions, heartbeats and console calls wait behind them
    (docs/performance.md). A longer queue is shortened, and workers beyond the bound (more cores than
    threads) are not started; the third value then says so, for the log at start. ConfigError if
    what is left cannot hold one identify.
    """
    threads = config.server.max_workers
    most = threads - -(-threads // 4)  # a quarter of the threads, rounded up, stays for other calls
    usable_workers = min(workers, most)
    queue = min(config.face.queue, most - usable_workers)
    # With the platform's liveness check an identify takes two places at once (face/pool.py): with
    # fewer in all, every identify with a face would be answered busy for ever.
    needed = 2 if config.face.liveness == "platform" else 1
    if usable_workers + queue < needed:
        raise ConfigError(
            f"[face] processes {usable_workers} + queue {queue} (of [server] max_workers {threads}) leave fewer"
            f" than the {needed} places one identify takes with [face] liveness = {config.face.liveness!r}:"
            f" raise queue (and max_workers) so that at least {needed} fit"
        )
    if (usable_workers, queue) == (workers, config.face.queue):
        return workers, queue, None
    return (
        usable_workers,
        queue,
        (
            f"[face] shortened: processes {workers} → {usable_workers}, queue {config.face.queue} → {queue};"
            f" the face workers and the identifies waiting for them may hold at most {most} of the {threads}"
            " request threads ([server] max_workers), so the other calls always find one; raise max_workers"
            " for more"
        ),
    )


def check_for_serving(config: PlatformConfig) -> None:
    """Start-up checks for `serve`: production needs a data key and TLS off loopback.

    Organisers sign in as persons (`platform-server accounts`); `organiser_token` is no longer used.
    """
    if not config.production:
        return
    if not config.security.data_key:
        raise ConfigError("production mode needs [security] data_key (or PLATFORM_DATA_KEY): refusing to start")
    if config.security.insecure_kiosks:
        raise ConfigError("[security] insecure_kiosks is a development switch: production mode refuses it")
    # Loopback too: behind a local proxy every caller would be trusted with the kiosk_id it names.
    if not (config.security.tls_cert and config.security.client_ca):
        raise ConfigError(
            f"production mode listening on {config.server.listen} needs [security] tls_cert, tls_key and client_ca"
        )


def check_kiosk_identity_setting(config: PlatformConfig) -> None:
    """Kiosks prove who they are with client certificates unless the development switch says otherwise."""
    if config.security.client_ca:
        return
    if not config.security.insecure_kiosks:
        raise ConfigError(
            "kiosks must prove who they are: set [security] tls_cert, tls_key and client_ca "
            "(for development only: [security] insecure_kiosks = true, or PLATFORM_SECURITY_INSECURE_KIOSKS=1)"
        )
    if config.production:
        raise ConfigError("[security] insecure_kiosks is a development switch: production mode refuses it")
