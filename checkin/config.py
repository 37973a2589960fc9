"""The kiosk's configuration: a TOML file plus CHECKIN_<SECTION>_<OPTION> environment overrides.

Every option has a type, a default and a range; unknown sections or options are refused, and each
error names the option and section (Klipper style). A config error is fatal at start-up and is
kept apart from the runtime errors an expert may see. Also the staff PIN hashing (scrypt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_PREFIX = "CHECKIN_"

# scrypt cost: about 50 ms on a kiosk CPU, enough to make guessing a 6-digit PIN from a stolen
# config slow, cheap enough for a staff member's login.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which option and why."""


@dataclass(frozen=True, slots=True)
class _Option:
    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


_SPEC: Mapping[str, Mapping[str, _Option]] = {
    "kiosk": {
        "id": _Option(str, ""),
        "language": _Option(str, "zh", choices=("zh", "en")),
        "timezone": _Option(str, "Asia/Shanghai"),
        "software_version": _Option(str, "0.1.0"),
    },
    "platform": {
        "address": _Option(str, "127.0.0.1:50051"),
        "ca_cert": _Option(str, ""),
        "client_cert": _Option(str, ""),
        "client_key": _Option(str, ""),
        "server_name": _Option(str, ""),
        "call_timeout_s": _Option(float, 5.0, 0.1, 120.0),
        "identify_timeout_s": _Option(float, 10.0, 0.1, 120.0),
        "max_attempts": _Option(int, 4, 1, 10),
        "backoff_initial_s": _Option(float, 0.2, 0.0, 10.0),
        "backoff_max_s": _Option(float, 2.0, 0.0, 60.0),
        "busy_wait_s": _Option(float, 60.0, 0.0, 600.0),
    },
    "timeouts": {
        "inactivity_s": _Option(float, 60.0, 5.0, 600.0),
        "countdown_s": _Option(int, 15, 3, 60),
        "done_return_s": _Option(int, 20, 3, 120),
        "device_poll_s": _Option(float, 2.0, 0.2, 30.0),
    },
    "flow": {
        "max_face_attempts": _Option(int, 3, 1, 5),
        "max_band_attempts": _Option(int, 2, 1, 5),
        "max_refill": _Option(int, 500, 1, 5000),
        "start_on_id_card": _Option(bool, default=True),
    },
    "staff": {
        "pin_hash": _Option(str, ""),
        "max_pin_failures": _Option(int, 5, 1, 20),
        "pin_lockout_s": _Option(int, 60, 5, 3600),
    },
    "data": {
        "key": _Option(str, ""),
        "queue_path": _Option(str, "var/kiosk-queue.sqlite3"),
    },
    "heartbeat": {
        "interval_s": _Option(float, 5.0, 0.5, 300.0),
        "replay_backoff_initial_s": _Option(float, 1.0, 0.05, 60.0),
        "replay_backoff_max_s": _Option(float, 60.0, 0.1, 3600.0),
    },
    "speech": {
        "enabled": _Option(bool, default=True),
        "rate": _Option(int, 150, 60, 300),
        "voice": _Option(str, "cmn"),
    },
    "screen": {
        "width": _Option(int, 1280, 800, 3840),
        "height": _Option(int, 800, 600, 2160),
        "fullscreen": _Option(bool, default=True),
    },
    # Where each device is: a real port/reader or a simulator, chosen only by these values (docs/technician-kiosk.md).
    "devices": {
        "id_card_port": _Option(str, "socket://127.0.0.1:7101"),
        "bank_reader": _Option(str, "Kiosk Virtual PCD 00 01"),
        "band_reader": _Option(str, "Kiosk Virtual PCD 00 00"),
        "camera": _Option(str, "0"),
        "arm_port": _Option(str, "socket://127.0.0.1:7001"),
        "pickup_timeout_s": _Option(float, 20.0, 1.0, 600.0),
        "face_timeout_s": _Option(float, 20.0, 2.0, 120.0),
        "blink_deadline_s": _Option(float, 8.0, 1.0, 120.0),
        # The receipt printer's URL (socket://HOST:9100 for a network printer); empty: no printer.
        "printer": _Option(str, ""),
        "printer_timeout_s": _Option(float, 1.0, 0.05, 30.0),
    },
}


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """How to reach the platform."""

    address: str
    ca_cert: Path | None
    client_cert: Path | None
    client_key: Path | None
    server_name: str
    call_timeout_s: float
    identify_timeout_s: float
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    #: How long the flow keeps resending an identify the platform answers "busy" (RESOURCE_EXHAUSTED
    #: with retry-after-ms), each time after the advised wait.
    busy_wait_s: float = 60.0


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """[devices]: where each device is (real or simulated, by URL or reader name only) and its waits."""

    id_card_port: str = "socket://127.0.0.1:7101"
    bank_reader: str = "Kiosk Virtual PCD 00 01"
    band_reader: str = "Kiosk Virtual PCD 00 00"
    camera: str = "0"
    arm_port: str = "socket://127.0.0.1:7001"
    pickup_timeout_s: float = 20.0
    face_timeout_s: float = 20.0
    blink_deadline_s: float = 8.0
    printer: str = ""
    printer_timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class KioskConfig:
    """Everything the kiosk reads from its configuration, validated."""

    kiosk_id: str
    language: str
    timezone: str
    software_version: str
    platform: PlatformSettings
    inactivity_s: float
    countdown_s: int
    done_return_s: int
    device_poll_s: float
    max_face_attempts: int
    max_band_attempts: int
    max_refill: int
    staff_pin_hash: str
    max_pin_failures: int
    pin_lockout_s: int
    data_key: str
    queue_path: Path
    heartbeat_interval_s: float
    replay_backoff_initial_s: float
    replay_backoff_max_s: float
    speech_enabled: bool
    speech_rate: int
    speech_voice: str
    screen_width: int
    screen_height: int
    fullscreen: bool
    devices: DeviceSettings = field(default_factory=DeviceSettings)
    #: An ID card placed on the reader at the home screen starts the check-in.
    start_on_id_card: bool = True


def _coerce(section: str, name: str, option: _Option, raw: object) -> object:  # noqa: C901, PLR0912 - one branch per type
    where = f"Option '{name}' in section '{section}'"
    value: object
    if option.kind is bool:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            value = raw.lower() in {"1", "true", "yes", "on"}
        else:
            raise ConfigError(f"{where} must be true or false, not {raw!r}")
    elif option.kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ConfigError(f"{where} must be a whole number, not {raw!r}")
        try:
            value = int(raw)
        except ValueError as err:
            raise ConfigError(f"{where} must be a whole number, not {raw!r}") from err
    elif option.kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ConfigError(f"{where} must be a number, not {raw!r}")
        try:
            value = float(raw)
        except ValueError as err:
            raise ConfigError(f"{where} must be a number, not {raw!r}") from err
    else:
        if not isinstance(raw, str):
            raise ConfigError(f"{where} must be text, not {raw!r}")
        value = raw
    if isinstance(value, int | float) and not isinstance(value, bool):
        if option.minimum is not None and value < option.minimum:
            raise ConfigError(f"{where} must be at least {option.minimum}, not {value}")
        if option.maximum is not None and value > option.maximum:
            raise ConfigError(f"{where} must be at most {option.maximum}, not {value}")
    if option.choices and value not in option.choices:
        raise ConfigError(f"{where} must be one of {', '.join(option.choices)}, not {value!r}")
    return value


def _merge(data: Mapping[str, object], env: Mapping[str, str]) -> dict[str, dict[str, object]]:
    values: dict[str, dict[str, object]] = {s: {k: o.default for k, o in opts.items()} for s, opts in _SPEC.items()}
    for section, body in data.items():
        if section not in _SPEC:
            raise ConfigError(f"Unknown section '{section}' (known: {', '.join(_SPEC)})")
        if not isinstance(body, dict):
            raise ConfigError(f"Section '{section}' must be a table")
        for name, raw in body.items():
            if name not in _SPEC[section]:
                raise ConfigError(f"Unknown option '{name}' in section '{section}'")
            values[section][name] = _coerce(section, name, _SPEC[section][name], raw)
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, name = rest.partition("_")
        if section in _SPEC and name in _SPEC[section]:
            values[section][name] = _coerce(section, name, _SPEC[section][name], raw)
    return values


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> KioskConfig:
    """Read and validate the kiosk's configuration; raise ConfigError naming the bad option."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"Configuration file {path} does not exist") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"Configuration file {path} is not valid TOML: {err}") from err
    v = _merge(data, os.environ if env is None else env)
    return _build(v)


def _path_or_none(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _build(v: dict[str, dict[str, object]]) -> KioskConfig:
    kiosk, platform, staff, data = v["kiosk"], v["platform"], v["staff"], v["data"]
    if not kiosk["id"]:
        raise ConfigError("Option 'id' in section 'kiosk' is required (the kiosk's registered id, e.g. K1)")
    if not staff["pin_hash"]:
        raise ConfigError("Option 'pin_hash' in section 'staff' is required (see docs/user-guide.md: hash-pin)")
    if not str(staff["pin_hash"]).startswith("scrypt$"):
        raise ConfigError("Option 'pin_hash' in section 'staff' must be a scrypt$... hash, never the PIN itself")
    if not data["key"]:
        raise ConfigError("Option 'key' in section 'data' is required (or set CHECKIN_DATA_KEY)")
    tls = [platform["ca_cert"], platform["client_cert"], platform["client_key"]]
    if any(tls) and not all(tls):
        raise ConfigError("Options 'ca_cert', 'client_cert' and 'client_key' in section 'platform' go together")
    if not any(tls) and not _is_loopback(str(platform["address"])):
        raise ConfigError(
            f"Option 'ca_cert' in section 'platform' is required: {platform['address']} is not on loopback, "
            "and the kiosk only talks to a remote platform over TLS with its client certificate"
        )
    for name in ("ca_cert", "client_cert", "client_key"):
        if platform[name] and not Path(str(platform[name])).is_file():
            raise ConfigError(f"Option '{name}' in section 'platform' names {platform[name]}, which is not a file")
    hb = v["heartbeat"]
    if float(str(hb["replay_backoff_initial_s"])) > float(str(hb["replay_backoff_max_s"])):
        raise ConfigError(
            "Option 'replay_backoff_initial_s' in section 'heartbeat' must not exceed replay_backoff_max_s"
        )
    t, f, sp, sc = v["timeouts"], v["flow"], v["speech"], v["screen"]
    return KioskConfig(
        kiosk_id=str(kiosk["id"]),
        language=str(kiosk["language"]),
        timezone=str(kiosk["timezone"]),
        software_version=str(kiosk["software_version"]),
        platform=PlatformSettings(
            address=str(platform["address"]),
            ca_cert=_path_or_none(platform["ca_cert"]),
            client_cert=_path_or_none(platform["client_cert"]),
            client_key=_path_or_none(platform["client_key"]),
            server_name=str(platform["server_name"]),
            call_timeout_s=float(str(platform["call_timeout_s"])),
            identify_timeout_s=float(str(platform["identify_timeout_s"])),
            max_attempts=int(str(platform["max_attempts"])),
            backoff_initial_s=float(str(platform["backoff_initial_s"])),
            backoff_max_s=float(str(platform["backoff_max_s"])),
            busy_wait_s=float(str(platform["busy_wait_s"])),
        ),
        inactivity_s=float(str(t["inactivity_s"])),
        countdown_s=int(str(t["countdown_s"])),
        done_return_s=int(str(t["done_return_s"])),
        device_poll_s=float(str(t["device_poll_s"])),
        max_face_attempts=int(str(f["max_face_attempts"])),
        max_band_attempts=int(str(f["max_band_attempts"])),
        max_refill=int(str(f["max_refill"])),
        start_on_id_card=bool(f["start_on_id_card"]),
        staff_pin_hash=str(staff["pin_hash"]),
        max_pin_failures=int(str(staff["max_pin_failures"])),
        pin_lockout_s=int(str(staff["pin_lockout_s"])),
        data_key=str(data["key"]),
        queue_path=Path(str(data["queue_path"])),
        heartbeat_interval_s=float(str(hb["interval_s"])),
        replay_backoff_initial_s=float(str(hb["replay_backoff_initial_s"])),
        replay_backoff_max_s=float(str(hb["replay_backoff_max_s"])),
        speech_enabled=bool(sp["enabled"]),
        speech_rate=int(str(sp["rate"])),
        speech_voice=str(sp["voice"]),
        screen_width=int(str(sc["width"])),
        screen_height=int(str(sc["height"])),
        fullscreen=bool(sc["fullscreen"]),
        devices=DeviceSettings(
            id_card_port=str(v["devices"]["id_card_port"]),
            bank_reader=str(v["devices"]["bank_reader"]),
            band_reader=str(v["devices"]["band_reader"]),
            camera=str(v["devices"]["camera"]),
            arm_port=str(v["devices"]["arm_port"]),
            pickup_timeout_s=float(str(v["devices"]["pickup_timeout_s"])),
            face_timeout_s=float(str(v["devices"]["face_timeout_s"])),
            blink_deadline_s=float(str(v["devices"]["blink_deadline_s"])),
            printer=str(v["devices"]["printer"]),
            printer_timeout_s=float(str(v["devices"]["printer_timeout_s"])),
        ),
    )


def hash_pin(pin: str) -> str:
    """Hash a staff PIN for the config file: scrypt$N$r$p$salt$hash (base64)."""
    if not pin.isdigit() or not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise ConfigError(f"The staff PIN must be {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_pin(pin: str, stored: str) -> bool:
    """True when `pin` matches the stored scrypt hash (constant-time compare); False for a malformed hash."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        digest = hashlib.scrypt(pin.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)
