"""A SAM ID card reader simulator: the same frames from the other end, with named, scriptable faults.

Three layers, so tests, demos and the kiosk's scenario runner can each pick the one they need:

- `SamReaderEmulator`: the reader's state (which identity lies on it, which faults are armed) and
  its answer to every request frame. Pure logic, thread-safe, no I/O.
- `SamReaderSimulator`: serves an emulator on TCP (reach it as socket://HOST:PORT) or on a pty
  (reach it as /dev/pts/N), like a real reader on its serial line.
- `ControlServer` / `SimulatorControl`: a JSON-lines TCP channel to place and remove cards and
  inject faults while a simulator process runs (see docs/id-card-simulator.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import json
import logging
import os
import random
import select
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from id_card_reader.errors import FrameChecksumError, IdCardError, IdCardProtocolError, Sw3
from id_card_reader.models import IdentityCard
from id_card_reader.protocol import (
    PHOTO_LEN,
    PREAMBLE,
    BaseInfo,
    Command,
    FrameAssembler,
    SamFrame,
    build_reply,
    encode_base_info,
    encode_identity_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType

log = logging.getLogger("id_card_reader.sim")
wire_log = logging.getLogger("id_card_reader.sim.wire")


class SimulatorConfigError(IdCardError):
    """A bad identities file, fault name or control command; the message says which and where."""

    key = "simulator_config"


class Fault(enum.StrEnum):
    """Named faults the simulated reader can show (see docs/id-card-simulator.md)."""

    NO_CARD = "no_card"
    REMOVED_MID_READ = "removed_mid_read"
    BAD_CHECKSUM = "bad_checksum"
    SLOW_READER = "slow_reader"
    SAM_SELF_TEST_FAILURE = "sam_self_test_failure"
    GARBAGE_BYTES = "garbage_bytes"
    SHORT_FRAME = "short_frame"
    NO_ANSWER = "no_answer"
    REPLY_SW3 = "reply_sw3"


#: Faults that stay until cleared unless a count is given; the others fire once by default.
PERSISTENT: Final = frozenset({Fault.NO_CARD, Fault.SLOW_READER, Fault.SAM_SELF_TEST_FAILURE, Fault.NO_ANSWER})
DEFAULT_SLOW_DELAY: Final = 0.5


@dataclass(slots=True)
class FaultSpec:
    """An armed fault: `remaining` None means until cleared; `value` is its parameter, if any."""

    fault: Fault
    remaining: int | None
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:  # noqa: C901, PLR0912 - one check per fault parameter
        """Parse NAME[:VALUE][@COUNT|@always], e.g. bad_checksum@3, slow_reader:2.5, reply_sw3:41."""
        spec, _, count_text = text.strip().partition("@")
        name, _, value_text = spec.partition(":")
        try:
            fault = Fault(name)
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise SimulatorConfigError(f"unknown fault {name!r}; known faults: {known}") from None
        value: float | None = None
        if fault is Fault.REPLY_SW3:
            if not value_text:
                raise SimulatorConfigError("fault reply_sw3 needs a hex status, e.g. reply_sw3:41")
            try:
                value = int(value_text, 16)
            except ValueError:
                raise SimulatorConfigError(f"fault reply_sw3 needs a hex status 00..FF, got {value_text!r}") from None
            if not 0 <= value <= 0xFF:
                raise SimulatorConfigError(f"fault reply_sw3 needs a hex status 00..FF, got {value_text!r}")
        elif fault is Fault.SLOW_READER:
            try:
                value = float(value_text) if value_text else DEFAULT_SLOW_DELAY
            except ValueError:
                raise SimulatorConfigError(f"fault slow_reader takes seconds, got {value_text!r}") from None
            if not 0 <= value <= 60:
                raise SimulatorConfigError(f"fault slow_reader delay must be 0..60 s, got {value}")
        elif value_text:
            raise SimulatorConfigError(f"fault {name} takes no value, got {value_text!r}")
        if not count_text:
            remaining = None if fault in PERSISTENT else 1
        elif count_text == "always":
            remaining = None
        elif count_text.isdigit() and int(count_text) > 0:
            remaining = int(count_text)
        else:
            raise SimulatorConfigError(f"fault count must be a positive number or 'always', got {count_text!r}")
        return cls(fault, remaining, value)

    def describe(self) -> str:
        """The spec back as text."""
        value = ""
        if self.fault is Fault.REPLY_SW3 and self.value is not None:
            value = f":{int(self.value):02X}"
        elif self.value is not None:
            value = f":{self.value:g}"
        count = "@always" if self.remaining is None else f"@{self.remaining}"
        return f"{self.fault.value}{value}{count}"


@dataclass(frozen=True, slots=True)
class Output:
    """Bytes to send after a delay (seconds)."""

    data: bytes
    delay: float = 0.0


# --- identities -------------------------------------------------------------------------------


def _parse_day(value: object, where: str) -> dt.date:
    if not isinstance(value, str):
        raise SimulatorConfigError(f"{where} must be a date string YYYY-MM-DD or YYYYMMDD")
    text = value.replace("-", "")
    try:
        return (
            dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else dt.date.fromisoformat(value)
        )
    except ValueError:
        raise SimulatorConfigError(f"{where} is not a date: {value!r}") from None


SEX_WORDS: Final = {"男": "1", "女": "2", "male": "1", "female": "2", "M": "1", "F": "2"}
IDENTITY_KEYS: Final = frozenset(
    {
        "name",
        "sex",
        "nation",
        "birth_date",
        "address",
        "id_number",
        "issuing_authority",
        "valid_from",
        "valid_to",
        "photo_wlt_file",
    }
)


def placeholder_wlt(seed: str) -> bytes:
    """A deterministic 1024-byte stand-in for a WLT photo (no real photo data exists here)."""
    out = b""
    counter = 0
    while len(out) < PHOTO_LEN:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:PHOTO_LEN]


def identity_from_dict(entry: dict[str, Any], where: str, base_dir: Path | None = None) -> IdentityCard:
    """One identities-file entry to an IdentityCard, checked for shape only.

    A file may hold deliberately broken cards (a wrong check digit) to test the driver's checks.
    """
    unknown = set(entry) - IDENTITY_KEYS
    if unknown:
        raise SimulatorConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(IDENTITY_KEYS)}")
    missing = {"name", "sex", "birth_date", "id_number", "valid_from"} - set(entry)
    if missing:
        raise SimulatorConfigError(f"{where}: missing key(s) {sorted(missing)}")
    strings = {k: entry.get(k, "") for k in ("name", "sex", "nation", "address", "id_number", "issuing_authority")}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise SimulatorConfigError(f"{where}: {key} must be a string")
    valid_to_raw = entry.get("valid_to", "长期")
    photo = placeholder_wlt(strings["id_number"])
    if "photo_wlt_file" in entry:
        path = Path(str(entry["photo_wlt_file"]))
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        try:
            photo = path.read_bytes()
        except OSError as err:
            raise SimulatorConfigError(f"{where}: cannot read photo_wlt_file {path}: {err.strerror}") from err
        if len(photo) != PHOTO_LEN:
            raise SimulatorConfigError(f"{where}: photo_wlt_file must be {PHOTO_LEN} bytes, got {len(photo)}")
    card = IdentityCard(
        name=strings["name"],
        sex_code=SEX_WORDS.get(strings["sex"], strings["sex"]),
        nation_code=strings["nation"] or "01",
        birth_date=_parse_day(entry["birth_date"], f"{where}: birth_date"),
        address=strings["address"],
        id_number=strings["id_number"],
        issuing_authority=strings["issuing_authority"],
        valid_from=_parse_day(entry["valid_from"], f"{where}: valid_from"),
        valid_to=None if valid_to_raw == "长期" else _parse_day(valid_to_raw, f"{where}: valid_to"),
        photo_wlt=photo,
    )
    try:
        encode_identity_text(card)
    except ValueError as err:
        raise SimulatorConfigError(f"{where}: {err}") from err
    return card


def load_identities(path: Path) -> list[IdentityCard]:
    """Read an identities file: a JSON list of objects (format in docs/id-card-simulator.md)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SimulatorConfigError(f"cannot read identities file {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise SimulatorConfigError(f"identities file {path} is not JSON: line {err.lineno}: {err.msg}") from err
    if not isinstance(raw, list) or not raw:
        raise SimulatorConfigError(f"identities file {path} must hold a non-empty JSON list of identities")
    cards = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise SimulatorConfigError(f"{path}: entry {i} must be a JSON object")
        cards.append(identity_from_dict(entry, f"{path}: entry {i}", path.parent))
    return cards


SAMPLE_IDENTITIES: Final = Path(__file__).with_name("sample_identities.json")


def identity_to_dict(card: IdentityCard) -> dict[str, str]:
    """An IdentityCard as an identities-file entry (without the photo)."""
    return {
        "name": card.name,
        "sex": card.sex_code,
        "nation": card.nation_code,
        "birth_date": card.birth_date.isoformat(),
        "address": card.address,
        "id_number": card.id_number,
        "issuing_authority": card.issuing_authority,
        "valid_from": card.valid_from.isoformat(),
        "valid_to": "长期" if card.valid_to is None else card.valid_to.isoformat(),
    }


# --- the reader's behaviour ----------------------------------------------------------------------


class SamReaderEmulator:
    """The simulated reader: a SAM, a card field that holds one identity or none, and armed faults."""

    SAM_ID_DATA: Final = (
        bytes([5, 0, 1, 0]) + (20230101).to_bytes(4, "little") + (42).to_bytes(4, "little") + (7).to_bytes(4, "little")
    )

    def __init__(
        self,
        identities: Sequence[IdentityCard] = (),
        *,
        present: int | None = 0,
        faults: Iterable[str] = (),
        seed: int = 0,
    ) -> None:
        self.identities = list(identities)
        self._lock = threading.Lock()
        self._present: IdentityCard | None = None
        self._selected = False
        self._faults: list[FaultSpec] = []
        self._random = random.Random(seed)
        #: Replies sent per command name, for tests and the state report.
        self.counts: dict[str, int] = {}
        if present is not None and self.identities:
            self.place(present)
        for spec in faults:
            self.inject(spec)

    # control -------------------------------------------------------------------------------------

    def place(self, identity: IdentityCard | int | str) -> IdentityCard:
        """Put a card on the reader: an IdentityCard, an index into the identities, or an ID number."""
        if isinstance(identity, IdentityCard):
            card = identity
        elif isinstance(identity, int):
            if not 0 <= identity < len(self.identities):
                raise SimulatorConfigError(f"no identity #{identity}; the simulator holds {len(self.identities)}")
            card = self.identities[identity]
        else:
            matches = [c for c in self.identities if c.id_number == identity]
            if not matches:
                raise SimulatorConfigError("no identity with that ID number is loaded")
            card = matches[0]
        with self._lock:
            self._present = card
            self._selected = False
        log.info("card placed: %s", card.masked_id_number)
        return card

    def remove(self) -> None:
        """Take the card off the reader."""
        with self._lock:
            self._present = None
            self._selected = False
        log.info("card removed")

    def inject(self, spec: str | FaultSpec) -> FaultSpec:
        """Arm a fault (NAME[:VALUE][@COUNT])."""
        parsed = FaultSpec.parse(spec) if isinstance(spec, str) else spec
        with self._lock:
            self._faults = [f for f in self._faults if f.fault is not parsed.fault]
            self._faults.append(parsed)
        log.info("fault armed: %s", parsed.describe())
        return parsed

    def clear_faults(self, fault: Fault | None = None) -> None:
        """Disarm one fault, or all."""
        with self._lock:
            self._faults = [f for f in self._faults if fault is not None and f.fault is not fault]

    def state(self) -> dict[str, Any]:
        """What the reader holds now, for the control channel (ID number masked)."""
        with self._lock:
            return {
                "card": None if self._present is None else self._present.masked_id_number,
                "faults": [f.describe() for f in self._faults],
                "identities": len(self.identities),
                "counts": dict(self.counts),
            }

    # the wire ---------------------------------------------------------------------------------------

    def _take(self, fault: Fault) -> FaultSpec | None:
        """Consume one firing of an armed fault (lock held)."""
        for spec in self._faults:
            if spec.fault is fault:
                if spec.remaining is not None:
                    spec.remaining -= 1
                    if spec.remaining <= 0:
                        self._faults.remove(spec)
                return spec
        return None

    def _armed(self, fault: Fault) -> FaultSpec | None:
        return next((s for s in self._faults if s.fault is fault), None)

    def handle(self, item: SamFrame | IdCardProtocolError) -> list[Output]:
        """The bytes the reader sends in answer to one received frame (or damaged frame)."""
        with self._lock:
            if self._take(Fault.NO_ANSWER):
                return []
            if isinstance(item, IdCardProtocolError):
                code = Sw3.TERMINAL_CHECKSUM if isinstance(item, FrameChecksumError) else Sw3.TERMINAL_LENGTH
                return self._shape(build_reply(code), "damaged")
            try:
                command_value, data = item.as_request()
            except IdCardProtocolError:
                return self._shape(build_reply(Sw3.TERMINAL_LENGTH), "short")
            try:
                command = Command(command_value)
            except ValueError:
                return self._shape(build_reply(Sw3.BAD_COMMAND), f"{command_value:04X}")
            self.counts[command.name] = self.counts.get(command.name, 0) + 1
            return self._shape(self._answer(command, data), command.name)

    def _answer(self, command: Command, data: bytes) -> bytes:  # noqa: C901, PLR0911 - one answer per command
        _ = data
        if self._armed(Fault.SAM_SELF_TEST_FAILURE):
            return build_reply(Sw3.SAM_SELF_TEST_FAILED)
        if command in (Command.READ_BASE_INFO, Command.READ_BASE_INFO_FINGERPRINT):
            forced = self._take(Fault.REPLY_SW3)
            if forced is not None and forced.value is not None:
                return build_reply(int(forced.value))
        match command:
            case Command.GET_SAM_STATUS | Command.RESET_SAM | Command.SET_MAX_RF_BYTE:
                return build_reply(Sw3.SUCCESS)
            case Command.READ_SAM_ID:
                return build_reply(Sw3.SUCCESS, self.SAM_ID_DATA)
            case Command.FIND_CARD:
                self._selected = False
                if self._present is None or self._armed(Fault.NO_CARD):
                    return build_reply(Sw3.FIND_FAILED)
                return build_reply(Sw3.CARD_FOUND, bytes(4))
            case Command.SELECT_CARD:
                if self._present is None or self._armed(Fault.NO_CARD):
                    return build_reply(Sw3.SELECT_FAILED)
                self._selected = True
                return build_reply(Sw3.SUCCESS, bytes(8))
            case Command.READ_BASE_INFO | Command.READ_BASE_INFO_FINGERPRINT:
                card = self._present
                if card is None or not self._selected:
                    return build_reply(Sw3.READ_FAILED)
                if self._take(Fault.REMOVED_MID_READ):
                    # The card left the RF field half-way: the SAM reports a failed read, and the
                    # field is empty from now on.
                    self._present = None
                    self._selected = False
                    log.info("fault removed_mid_read: card taken off during the read")
                    return build_reply(Sw3.READ_FAILED)
                info = BaseInfo(encode_identity_text(card), card.photo_wlt)
                with_fp = command is Command.READ_BASE_INFO_FINGERPRINT
                return build_reply(Sw3.SUCCESS, encode_base_info(info, with_fingerprint=with_fp))
        return build_reply(Sw3.BAD_COMMAND)  # pragma: no cover - every Command is matched above

    def _shape(self, reply: bytes, label: str) -> list[Output]:
        """Apply the output faults (lock held): delay, noise, damage, truncation."""
        delay = 0.0
        slow = self._armed(Fault.SLOW_READER)
        if slow is not None:
            self._take(Fault.SLOW_READER)
            delay = slow.value or 0.0
        if self._take(Fault.BAD_CHECKSUM):
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        if self._take(Fault.SHORT_FRAME):
            reply = reply[: max(len(PREAMBLE) + 3, len(reply) // 2)]
        out = [Output(reply, delay)]
        if self._take(Fault.GARBAGE_BYTES):
            # Noise, then a fake preamble with an impossible length, then the real reply.
            noise = bytes(self._random.randrange(256) for _ in range(self._random.randint(3, 40)))
            out.insert(0, Output(noise + PREAMBLE + b"\xff\xff" + noise[:5], delay))
            out[1] = Output(reply, 0.0)
        wire_log.debug(
            "<<< %s: %d byte(s)%s", label, sum(len(o.data) for o in out), f" after {delay:g} s" if delay else ""
        )
        return out


# --- transports ----------------------------------------------------------------------------------


class SamReaderSimulator:
    """Serves an emulator on TCP (socket://HOST:PORT) or on a pty, one host connection at a time."""

    def __init__(
        self, emulator: SamReaderEmulator, *, host: str = "127.0.0.1", port: int = 0, pty: bool = False
    ) -> None:
        self.emulator = emulator
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self._client: socket.socket | None = None
        self._host = host
        self._port = port
        self._use_pty = pty
        self.url = ""

    def start(self) -> Self:
        """Bind and start serving; `url` is what the driver opens."""
        if self._use_pty:
            master, slave = os.openpty()
            self._pty_master, self._pty_slave = master, slave
            self.url = os.ttyname(slave)
            self._spawn(self._serve_pty, "sam-sim-pty")
        else:
            server = socket.create_server((self._host, self._port))
            server.settimeout(0.1)
            self._server = server
            host, port = server.getsockname()[:2]
            self.url = f"socket://{host}:{port}"
            self._spawn(self._serve_tcp, "sam-sim-tcp")
        log.info("SAM reader simulator serving on %s", self.url)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the TCP server."""
        if self._server is None:
            raise SimulatorConfigError("the simulator serves a pty, not TCP")
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and release the port or pty."""
        self._stop.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2)
        if self._server is not None:
            self._server.close()
        for fd in (self._pty_master, self._pty_slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> Self:
        return self.start() if not self.url else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve_tcp(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            log.info("host connected from %s:%s", *peer[:2])
            self._client = client
            with client:
                client.settimeout(0.1)
                self._serve_link(client.recv, client.sendall)
            self._client = None
            log.info("host disconnected")

    def _serve_pty(self) -> None:
        master = self._pty_master
        assert master is not None

        def receive(size: int) -> bytes:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                raise TimeoutError
            return os.read(master, size)

        def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(master, view) :]

        self._serve_link(receive, send)

    def _serve_link(self, receive: Callable[[int], bytes], send: Callable[[bytes], object]) -> None:
        assembler = FrameAssembler()
        while not self._stop.is_set():
            try:
                data = receive(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for item in assembler.feed(data):
                if isinstance(item, SamFrame):
                    wire_log.debug(">>> %s", item.body[:2].hex(" ").upper())
                for output in self.emulator.handle(item):
                    if output.delay and self._stop.wait(output.delay):
                        return
                    try:
                        send(output.data)
                    except OSError:
                        return


# --- control channel ---------------------------------------------------------------------------


class ControlServer:
    """JSON-lines control of a running simulator: one request object per line, one reply per line."""

    def __init__(self, emulator: SamReaderEmulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sam-sim-control", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the control channel listens on."""
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> Self:
        """Start answering control requests."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and close the port."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_client, args=(client,), daemon=True).start()

    def _serve_client(self, client: socket.socket) -> None:
        with client, client.makefile("rwb") as stream:
            for line in stream:
                reply = self.execute(line)
                stream.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
                stream.flush()

    def execute(self, line: bytes | str) -> dict[str, Any]:
        """Run one control request and return its reply object."""
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "a control request is one JSON object per line"}
        try:
            self._apply(request)
        except SimulatorConfigError as err:
            return {"ok": False, "error": str(err)}
        return {"ok": True, "state": self.emulator.state()}

    def _apply(self, request: object) -> None:
        if not isinstance(request, dict):
            raise SimulatorConfigError("a control request is a JSON object")
        op = request.get("op")
        match op:
            case "place":
                target = request.get("index", request.get("id_number", 0))
                if not isinstance(target, int | str):
                    raise SimulatorConfigError("place takes an index (number) or an id_number (string)")
                self.emulator.place(target)
            case "remove":
                self.emulator.remove()
            case "inject":
                self.emulator.inject(str(request.get("fault", "")))
            case "clear":
                name = request.get("fault")
                self.emulator.clear_faults(FaultSpec.parse(str(name)).fault if name else None)
            case "state":
                pass
            case _:
                raise SimulatorConfigError(f"unknown op {op!r}; ops: place, remove, inject, clear, state")


class SimulatorControl:
    """Client of a simulator process's control channel (for tests and the kiosk's scenario runner)."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise SimulatorConfigError(f"cannot reach the simulator control channel at {host}:{port}: {err}") from err
        self._stream = self._sock.makefile("rwb")

    def request(self, **request: Any) -> dict[str, Any]:
        """Send one request; return the state, or raise SimulatorConfigError with the simulator's reason."""
        self._stream.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
        self._stream.flush()
        line = self._stream.readline()
        if not line:
            raise SimulatorConfigError("the simulator closed the control channel")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise SimulatorConfigError(str(reply.get("error")))
        state: dict[str, Any] = reply["state"]
        return state

    def place(self, index: int = 0) -> dict[str, Any]:
        """Put identity #index on the reader."""
        return self.request(op="place", index=index)

    def remove(self) -> dict[str, Any]:
        """Take the card off."""
        return self.request(op="remove")

    def inject(self, fault: str) -> dict[str, Any]:
        """Arm a fault, e.g. 'removed_mid_read' or 'bad_checksum@2'."""
        return self.request(op="inject", fault=fault)

    def clear(self, fault: str | None = None) -> dict[str, Any]:
        """Disarm one fault, or all."""
        return self.request(op="clear", fault=fault) if fault else self.request(op="clear")

    def state(self) -> dict[str, Any]:
        """What the simulator holds now."""
        return self.request(op="state")

    def close(self) -> None:
        """Close the channel."""
        self._stream.close()
        self._sock.close()


__all__ = [
    "SAMPLE_IDENTITIES",
    "ControlServer",
    "Fault",
    "FaultSpec",
    "SamReaderEmulator",
    "SamReaderSimulator",
    "SimulatorConfigError",
    "SimulatorControl",
    "identity_from_dict",
    "identity_to_dict",
    "load_identities",
    "placeholder_wlt",
]
