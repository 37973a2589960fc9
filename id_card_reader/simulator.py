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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from device_kit.clock import Clock, SystemClock
from device_kit.control import ControlClient, ControlError
from device_kit.faults import FaultSet
from device_kit.faults import FaultSpec as KitFaultSpec
from device_kit.server import SimulatorServer
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
    import socket
    from collections.abc import Callable, Iterable, Sequence

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


_FAULT_HELP: Final = {
    Fault.NO_CARD: "无卡 / no card: finding a card fails",
    Fault.REMOVED_MID_READ: "读卡中移走 / the card leaves the field during the read",
    Fault.BAD_CHECKSUM: "校验和错 / a reply with a damaged check byte",
    Fault.SLOW_READER: "阅读器慢 / replies come late by `seconds`",
    Fault.SAM_SELF_TEST_FAILURE: "SAM 自检失败 / every command answers 0x60",
    Fault.GARBAGE_BYTES: "噪声 / noise and a fake preamble before the reply",
    Fault.SHORT_FRAME: "短帧 / the reply stops half-way",
    Fault.NO_ANSWER: "无应答 / nothing is answered (reader off)",
    Fault.REPLY_SW3: "指定状态 / the next read answers status `sw3` (hex)",
}

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


#: The faults as the device kit declares them (sim-ctl faults): ``times`` 0 means until cleared.
KIT_FAULTS: Final = tuple(
    KitFaultSpec(
        fault.value,
        _FAULT_HELP[fault],
        {
            **({"sw3": "41"} if fault is Fault.REPLY_SW3 else {}),
            **({"seconds": DEFAULT_SLOW_DELAY} if fault is Fault.SLOW_READER else {}),
            "times": 0 if fault in PERSISTENT else 1,
        },
    )
    for fault in Fault
)


class SamReaderSimulator(SimulatorServer):
    """Serves an emulator on TCP (socket://HOST:PORT) or on a pty, on the device kit's server.

    Faults go through the kit's one interface (``inject(name, **params)``, ``clear()``, ``faults``,
    the JSON-lines control channel and ``sim-ctl``); the emulator keeps them, since it counts firings.
    The control channel also takes ``{"op": "place", "index": 1}`` and ``{"op": "remove"}``.
    """

    name = "sam-sim"
    control_ops_help = ", place, remove"

    def __init__(
        self,
        emulator: SamReaderEmulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pty: bool = False,
        control_port: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(FaultSet(KIT_FAULTS), host, port, control_port=control_port)
        self.emulator = emulator
        #: A slow reader's replies wait on this clock (a ManualClock in tests).
        self.clock: Clock = clock or SystemClock()
        self._use_pty = pty
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self._pty_path = ""
        #: Set by stop(): a slow reply's wait ends at once.
        self._stopped = threading.Event()

    def start(self) -> Self:
        """Bind and start serving; ``url`` is what the driver opens (a pty path with ``pty=True``)."""
        self._stopped.clear()
        super().start()
        if self._use_pty:
            self._pty_master, self._pty_slave = os.openpty()
            self._pty_path = os.ttyname(self._pty_slave)
            self._spawn(self._serve_pty, name="sam-sim-pty")
        log.info("SAM reader simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port or pty."""
        self._stopped.set()
        super().stop()
        for fd in (self._pty_master, self._pty_slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pty_master = self._pty_slave = None

    @property
    def url(self) -> str:
        """socket://HOST:PORT, or the pty's path when serving a pty."""
        return self._pty_path or super().url

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the TCP server."""
        return self._host, self.port

    # ------------------------------------------------------------ faults: the kit's interface, the emulator's store

    def inject(self, name: str, **params: Any) -> None:
        """Switch a fault on: ``inject("bad_checksum", times=2)``, ``inject("reply_sw3", sw3="33")``."""
        self.faults_set.inject(name, **params)  # the kit checks the name, keys and types
        values = self.faults_set.snapshot()[name]
        self.faults_set.clear(name)
        value = f":{values['sw3']}" if "sw3" in values else f":{values['seconds']}" if "seconds" in values else ""
        times = int(values["times"])
        self.emulator.inject(f"{name}{value}@{'always' if times == 0 else times}")

    def clear(self, name: str | None = None) -> None:
        """Switch one fault (or all) off."""
        if name is not None:
            self.faults_set.spec(name)
        self.emulator.clear_faults(None if name is None else Fault(name))

    def active_faults(self) -> dict[str, Any]:
        """What is armed, as NAME[:VALUE]@COUNT."""
        return {spec.partition(":")[0].partition("@")[0]: spec for spec in self.emulator.state()["faults"]}

    def control_status(self) -> dict[str, Any]:
        """The card on the reader (masked), identities loaded and replies per command."""
        state = self.emulator.state()
        return {"state": state, "card": state["card"]}

    def control_action(self, op: str, request: dict[str, Any]) -> bool:
        """``place`` (index or id_number) and ``remove``: the card on the reader."""
        if op == "place":
            target = request.get("index", request.get("id_number", 0))
            if not isinstance(target, int | str):
                raise SimulatorConfigError("place takes an index (number) or an id_number (string)")
            self.emulator.place(target)
        elif op == "remove":
            self.emulator.remove()
        else:
            return False
        return True

    def handle_control(self, line: bytes) -> dict[str, Any]:
        """One control request to its reply; the emulator's refusals become the error line."""
        try:
            return super().handle_control(line)
        except SimulatorConfigError as err:
            return {"ok": False, "error": str(err)}

    # ------------------------------------------------------------ the wire

    def serve_connection(self, conn: socket.socket) -> None:
        """Answer the host's frames on one connection (the kit's accept loop calls this)."""
        log.info("host connected")
        conn.settimeout(0.1)
        self._serve_link(conn.recv, conn.sendall)
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
        while self.running:
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
                    if output.delay and self.clock.sleep(output.delay, stop=self._stopped):
                        return
                    try:
                        send(output.data)
                    except OSError:
                        return


class SimulatorControl(ControlClient):
    """Client of a simulator process's control channel (for tests and the kiosk's scenario runner)."""

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the reply, or raise SimulatorConfigError with the simulator's reason."""
        try:
            return super().request(op, **fields)
        except ControlError as err:
            raise SimulatorConfigError(str(err)) from err

    def place(self, index: int = 0) -> dict[str, Any]:
        """Put identity #index on the reader."""
        return dict(self.request("place", index=index)["state"])

    def remove(self) -> dict[str, Any]:
        """Take the card off."""
        return dict(self.request("remove")["state"])

    def inject_spec(self, spec: str) -> dict[str, Any]:
        """Arm a fault given as NAME[:VALUE][@COUNT|@always], e.g. 'bad_checksum@2' or 'slow_reader:0.2'."""
        parsed = FaultSpec.parse(spec)
        params: dict[str, Any] = {"times": 0 if parsed.remaining is None else parsed.remaining}
        if parsed.fault is Fault.REPLY_SW3 and parsed.value is not None:
            params["sw3"] = f"{int(parsed.value):02X}"
        elif parsed.fault is Fault.SLOW_READER and parsed.value is not None:
            params["seconds"] = parsed.value
        return dict(self.request("inject", fault=parsed.fault.value, params=params)["state"])

    def state(self) -> dict[str, Any]:
        """What the simulator holds now."""
        return dict(self.request("status")["state"])


__all__ = [
    "KIT_FAULTS",
    "SAMPLE_IDENTITIES",
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
