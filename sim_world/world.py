"""The simulated world a scenario runs in: every device simulator, a private pcscd and a real platform process.

- ID card reader: the SAM simulator on socket://127.0.0.1:PORT (the kiosk's real driver opens it);
- bank card and wristband readers: a private pcscd with the vpcd driver; slot 0 is the band reader at
  the arm, slot 1 the bank card reader; virtual cards are plugged into them;
- camera: OpenCV reading an image folder that the person's face clip is linked into;
- arm: the arm simulator on socket://, whose reader hook puts the band it carries into vpcd slot 0;
- UWB gateway: the gateway simulator on socket://, which the platform's delivery worker writes to;
- platform: `platform-server serve` as a child process on a SQLite file, seeded through the
  platform's own services, so it can be SIGKILLed and restarted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import grpc

# Lazy (lazy_imports): the platform's code runs only for seeding; the health messages when waiting for it.
from grpc_health.v1 import health_pb2, health_pb2_grpc

from band_reader.simulator import MifareBand
from camera.simulator import make_no_face_clip
from checkin.config import KioskConfig, hash_pin, load_config
from device_kit import ports
from id_card_reader.models import IdentityCard
from id_card_reader.simulator import SamReaderEmulator, SamReaderSimulator, placeholder_wlt
from pcsc import PcscDaemon
from platform_server import bootstrap
from platform_server import config as platform_config
from platform_server.services import accounts, batches, kiosks, roster
from receipt_printer.simulator import PrinterSimulator
from robot_arm.simulator import ArmSimulator, SimSettings, default_bands
from sim_world.faces import resolve_face
from uwb.simulator import GatewaySimulator

if TYPE_CHECKING:
    from pcsc import VirtualCard, VirtualCardSlot
    from sim_world.model import Expert, Scenario

log = logging.getLogger(__name__)

KIOSK_ID: Final = "K1"
HOTEL_CODE: Final = "GJFD"
STAFF_PIN: Final = "246810"
#: Development data keys of the simulated world only: its data is made up, and the files are temporary.
PLATFORM_KEY: Final = "scenario world platform key, made-up data only"
KIOSK_KEY: Final = "scenario world kiosk key, made-up data only"
PLATFORM_SERVER: Final = Path(sys.executable).with_name("platform-server")
#: The operations console's demo sign-in (made-up world only); `make demo` prints it.
CONSOLE_USER: Final = "demo"
CONSOLE_PASSWORD: Final = "demo-console-only"  # noqa: S105  (the simulated world's, printed by make demo)


class WorldError(RuntimeError):
    """The simulated world could not be set up (a simulator, pcscd or the platform would not start)."""


def identity_for(expert: Expert) -> IdentityCard:
    """The ID card an expert of the scenario puts on the reader (birth date and sex from the number)."""
    number = expert.id_number.upper()
    birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    return IdentityCard(
        name=expert.name,
        sex_code="1" if int(number[16]) % 2 else "2",
        nation_code="01",
        birth_date=birth,
        address="北京市东城区东长安街1号",
        id_number=number,
        issuing_authority="北京市公安局东城分局",
        valid_from=dt.date(2020, 1, 1),
        valid_to=dt.date(2040, 1, 1),
        photo_wlt=placeholder_wlt(number),
    )


class StampedCard:
    """A virtual card that notes when it went into a slot and when pcscd first read its ATR after power-up.

    That second moment is when the reader "sees" the card: pcscd polls each vpcd slot for presence
    about every 0.4 s, so the gap is the simulated reader's detection latency, reported on its own
    (a USB CCID reader signals a card by interrupt). The card's behaviour is unchanged.
    """

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.inserted = time.monotonic()
        self.seen: float | None = None
        self._powered = False

    @property
    def atr(self) -> bytes:
        """The card's ATR; the first read after power-up is pcscd noticing the card."""
        if self._powered and self.seen is None:
            self.seen = time.monotonic()
        return self.card.atr

    def reset(self) -> None:
        """Power-up or reset, passed on."""
        self._powered = True
        self.card.reset()

    def transmit(self, apdu: bytes) -> bytes:
        """APDUs, passed on."""
        return self.card.transmit(apdu)

    @property
    def detect_s(self) -> float | None:
        """Seconds from insertion until pcscd saw the card (None: not yet)."""
        return None if self.seen is None else self.seen - self.inserted


@dataclass
class Band:
    """One wristband of the world: its RFID UID (what the reader sees) and UWB tag id."""

    uid: str
    tag_id: int


@dataclass
class World:
    """Everything simulated, started by `start()` and stopped by `stop()`."""

    scenario: Scenario
    work: Path
    band_count: int
    speech: bool = False
    bands: list[Band] = field(default_factory=list)
    platform_port: int = 0
    platform_metrics_port: int = 0  # the platform's health port: GET /metrics
    pcscd: PcscDaemon | None = None
    id_card: SamReaderEmulator | None = None
    id_card_server: SamReaderSimulator | None = None
    arm: ArmSimulator | None = None
    uwb: GatewaySimulator | None = None
    #: The receipt printer simulator (slip PNGs in work/slips); None in a world without a printer.
    with_printer: bool = True
    printer: PrinterSimulator | None = None
    platform: subprocess.Popen[bytes] | None = None
    #: The operations console child (`platform-server console`), when SCENARIO_CONSOLE_LISTEN names host:port.
    console: subprocess.Popen[bytes] | None = None
    #: Called with the band's UID whenever the arm brings a band to the reader (after it is in the field).
    on_band_at_reader: list[object] = field(default_factory=list)
    #: The last band and bank card put into the readers, with their detection times.
    last_band: StampedCard | None = None
    last_bank_card: StampedCard | None = None
    _band_slot: VirtualCardSlot | None = None
    _bank_slot: VirtualCardSlot | None = None
    _restart_timer: threading.Timer | None = None
    camera_link: Path = field(init=False)

    def __post_init__(self) -> None:
        self.camera_link = self.work / "camera"
        uids = default_bands(self.band_count)
        self.bands = [Band(uid, i + 1) for i, uid in enumerate(uids)]

    # ---- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start pcscd, the simulators and the platform; raise WorldError naming what failed."""
        self.work.mkdir(parents=True, exist_ok=True)
        # A world starts empty: a platform database or kiosk queue left by an earlier run is removed.
        for name in ("platform.db", "kiosk-queue.sqlite3", "kiosk-queue.sqlite3-wal", "kiosk-queue.sqlite3-shm"):
            (self.work / name).unlink(missing_ok=True)
        self.pcscd = PcscDaemon(workdir=self.work / "pcscd")
        try:
            self.pcscd.start()
        except Exception as err:
            raise WorldError(f"private pcscd did not start: {err}") from err
        # Before any PC/SC call in this process: the kiosk's readers must reach our private pcscd.
        self.pcscd.export_env()
        self._band_slot = self.pcscd.slot(0)
        self._bank_slot = self.pcscd.slot(1)
        self.id_card = SamReaderEmulator([], present=None)
        self.id_card_server = SamReaderSimulator(self.id_card).start()
        self.uwb = GatewaySimulator(tags=tuple(b.tag_id for b in self.bands), dump_path=self.work / "uwb-dump.json")
        self.uwb.start()
        self.arm = ArmSimulator(
            SimSettings(bands=tuple(b.uid for b in self.bands), speed=self.scenario.arm_speed, pickup_take_after=None),
            on_band_at_reader=self._band_arrives,
            on_band_left_reader=self._band_leaves,
        ).start()
        if self.with_printer:
            (self.work / "slips").mkdir(exist_ok=True)
            # Slip PNGs are rendered after each check-in (save_pngs), not while the kiosk is being timed.
            self.printer = PrinterSimulator(output_dir=self.work / "slips", render_on_cut=False).start()
        # Until the first expert steps up, the camera sees the empty lobby.
        self.show_camera(make_no_face_clip(self.work / "clips" / "lobby", frames=15))
        # Below the ephemeral range: the platform binds them later (again after a restart), and a port-0
        # server of another process must not be handed the same port meanwhile (device_kit/ports.py).
        self.platform_port = ports.free_port()
        self.platform_metrics_port = ports.free_port()
        self._seed_platform()
        self.start_platform()
        self.start_console(os.environ.get("SCENARIO_CONSOLE_LISTEN", ""))

    def stop(self) -> None:
        """Stop everything that was started (safe after a partial start)."""
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        self.kill_platform(graceful=True)
        if self.console is not None and self.console.poll() is None:
            os.killpg(self.console.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.console.wait(timeout=15)
        if self.printer is not None:
            with contextlib.suppress(Exception):
                self.printer.save_pngs()
        for stopper in (self.arm, self.uwb, self.id_card_server, self.printer):
            if stopper is not None:
                with contextlib.suppress(Exception):
                    stopper.stop()
        if self.pcscd is not None:
            with contextlib.suppress(Exception):
                self.pcscd.stop()

    # ---- the arm's reader hook -----------------------------------------------------------------

    def _band_arrives(self, uid: str) -> None:
        # The band enters the reader's field: a MIFARE tag with its UID appears in vpcd slot 0.
        assert self._band_slot is not None
        self.last_band = StampedCard(MifareBand(uid))
        self._band_slot.insert(self.last_band)
        for hook in list(self.on_band_at_reader):
            hook(uid)  # type: ignore[operator]

    def _band_leaves(self) -> None:
        assert self._band_slot is not None
        self._band_slot.remove()

    def insert_bank_card(self, card: VirtualCard, *, wait: bool = True) -> StampedCard:
        """The person inserts a (virtual) bank card into the kiosk's card reader."""
        assert self._bank_slot is not None
        self.last_bank_card = StampedCard(card)
        self._bank_slot.insert(self.last_bank_card, wait=wait)
        return self.last_bank_card

    def remove_bank_card(self) -> None:
        """The person takes the bank card back."""
        assert self._bank_slot is not None
        self._bank_slot.remove()

    def show_camera(self, clip: Path) -> None:
        """Point the simulated camera (an image folder) at a clip: what stands in front of the kiosk now."""
        tmp = self.work / "camera.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(clip.resolve(), target_is_directory=True)
        tmp.replace(self.camera_link)  # atomic: a capture opening now sees the old clip or the new one

    # ---- the platform --------------------------------------------------------------------------

    @property
    def platform_db(self) -> Path:
        """The platform's SQLite file."""
        return self.work / "platform.db"

    @property
    def platform_config(self) -> Path:
        """The platform's TOML configuration."""
        return self.work / "platform.toml"

    @property
    def platform_metrics_url(self) -> str:
        """The platform's Prometheus figures (its health port), read by the runner around each check-in."""
        return f"http://127.0.0.1:{self.platform_metrics_port}/metrics"

    def _write_platform_config(self) -> None:
        assert self.uwb is not None
        self.platform_config.write_text(
            f"""# Written by the scenario runner for one simulated world.
[server]
listen = "127.0.0.1:{self.platform_port}"
health_listen = "127.0.0.1:{self.platform_metrics_port}"
[database]
url = "sqlite:///{self.platform_db}"
[security]
data_key = "{PLATFORM_KEY}"
# The simulated world's kiosk talks plaintext on loopback: the development switch, said loudly in the log.
insecure_kiosks = true
[rules]
event_poll_s = 0.2
{f"identification_ttl_s = {self.scenario.identification_ttl_s}" if self.scenario.identification_ttl_s else ""}
[face]
verifier = "dlib"
[uwb]
port = "{self.uwb.url}"
max_attempts = 200
retry_s = 0.2
poll_s = 0.05
[logging]
level = "INFO"
""",
            encoding="utf-8",
        )

    def _seed_platform(self) -> None:
        """Batch, rooms, bands, invitations, reference photos and this kiosk, through the platform's services."""
        self._write_platform_config()
        platform = bootstrap.build(
            platform_config.load_config(self.platform_config, environ={}), start_uwb_worker=False
        )
        try:
            ctx, uow = platform.ctx, platform.new_uow()
            now = ctx.clock()
            code = self.scenario.batch_code
            batches.create_batch(
                uow,
                ctx,
                batches.BatchSpec(
                    code=code,
                    name="演示批次：市政工程施工评标 / Demo evaluation",
                    venue="公共资源交易中心三楼第2评标室",
                    hotel_code=HOTEL_CODE,
                    hotel_name="国际饭店",
                    hotel_address="长安街1号",
                    evaluation_start=now + dt.timedelta(hours=3),
                    evaluation_end=now + dt.timedelta(hours=11),
                    check_in_opens=now - dt.timedelta(minutes=5),
                    allow_id_only=self.scenario.allow_id_only,
                ),
                actor="scenario",
            )
            invited = [e for e in self.scenario.experts.values() if e.invited]
            rows = [
                roster.InvitationRow(e.id_number, e.name, f"138{i:08d}", "评标专家库", "工程")
                for i, e in enumerate(invited)
            ]
            rooms = [f"{floor}{n:02d}" for floor in (12, 13, 14) for n in range(1, 21)]
            with uow:
                roster.write_rooms(uow, ctx, code, rooms, actor="scenario")
                roster.write_bands(uow, ctx, [(b.uid, f"{b.tag_id:04X}") for b in self.bands], actor="scenario")
                roster.write_invitations(uow, ctx, code, roster.prepare(ctx.data_key, rows), actor="scenario")
                uow.commit()
            kiosks.register_kiosk(uow, ctx, KIOSK_ID, name="场景终端", location="大堂", batch_code=code)
            accounts.add_account(
                uow,
                username=CONSOLE_USER,
                role=accounts.Role.ORGANISER,
                display_name="演示组织方 Demo organiser",
                password=CONSOLE_PASSWORD,
                actor="scenario",
                at=now,
            )
            verifier = ctx.face_verifier
            if verifier is None:  # pragma: no cover - the world's config always names dlib
                raise WorldError("the platform has no face verifier")
            with uow:
                ids = roster.expert_ids_by_hash(uow, roster.hashes_of(ctx.data_key, [e.id_number for e in invited]))
                for expert in invited:
                    face = resolve_face(expert.photo, base=self.scenario.path.parent, work=self.work / "faces")
                    if face.path is None:
                        log.warning("expert %s has no reference photo: %s", expert.key, face.reason)
                        continue
                    data = face.path.read_bytes()
                    encoding = verifier.encode_reference(data)
                    expert_id = ids[roster.hashes_of(ctx.data_key, [expert.id_number])[0]]
                    roster.write_reference_photo(uow, ctx, expert_id, data, encoding, actor="scenario")
                uow.commit()
        finally:
            platform.close()

    def start_platform(self, timeout: float = 60.0) -> None:
        """Start `platform-server serve` on the world's port and wait (bounded) until it answers health checks."""
        if not PLATFORM_SERVER.exists():
            raise WorldError(f"{PLATFORM_SERVER} is missing: the platform's console script is not installed")
        log_file = (self.work / "platform.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PCSCLITE_CSOCK_NAME", None)
        self.platform = subprocess.Popen(  # noqa: S603 - fixed argument list
            [str(PLATFORM_SERVER), "--config", str(self.platform_config), "serve"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        self._wait_platform_ready(timeout)

    def start_console(self, listen: str) -> None:
        """Start the operations console on `listen` (host:port) over the world's database; "" starts none."""
        if not listen:
            return
        log_file = (self.work / "console.log").open("ab")
        self.console = subprocess.Popen(  # noqa: S603 - fixed argument list
            [str(PLATFORM_SERVER), "--config", str(self.platform_config), "console", "--listen", listen],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        log_file.close()

    def _wait_platform_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"127.0.0.1:{self.platform_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.platform is not None and self.platform.poll() is not None:
                    raise WorldError(
                        f"platform-server exited with {self.platform.returncode}: see {self.work}/platform.log"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorldError(
                        f"platform-server did not answer within {timeout:.0f} s: see {self.work}/platform.log"
                    )
                try:
                    # wait_for_ready blocks until the port accepts (or the per-try deadline), no sleep needed.
                    reply = stub.Check(
                        health_pb2.HealthCheckRequest(), timeout=min(2.0, remaining), wait_for_ready=True
                    )
                except grpc.RpcError:
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return

    def kill_platform(self, *, graceful: bool = False) -> None:
        """SIGKILL the platform process (SIGTERM when graceful), and reap it."""
        process, self.platform = self.platform, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def restart_platform_after(self, seconds: float) -> threading.Timer:
        """Start the platform again after `seconds` of downtime (a scenario parameter, not a wait)."""
        timer = threading.Timer(seconds, self._restart_quietly)
        timer.daemon = True
        self._restart_timer = timer
        timer.start()
        return timer

    def _restart_quietly(self) -> None:
        try:
            self.start_platform()
        except WorldError:
            log.exception("platform restart failed")

    # ---- the kiosk's configuration -------------------------------------------------------------

    def kiosk_config(
        self, *, done_return_s: int = 20, camera: str | None = None, start_on_id_card: bool = True
    ) -> KioskConfig:
        """The kiosk's configuration: every device URL and reader name pointing into this world.

        `camera` replaces the world's camera (the image-folder link) with another source: a webcam index.
        """
        assert self.pcscd is not None
        assert self.id_card_server is not None
        assert self.arm is not None
        path = self.work / "kiosk.toml"
        path.write_text(
            f"""# Written by the scenario runner: the kiosk's devices are this world's simulators.
[kiosk]
id = "{KIOSK_ID}"
[platform]
address = "127.0.0.1:{self.platform_port}"
call_timeout_s = 3.0
identify_timeout_s = 10.0
max_attempts = 2
backoff_initial_s = 0.1
backoff_max_s = 0.2
[timeouts]
device_poll_s = 1.0
done_return_s = {done_return_s}
[flow]
start_on_id_card = {"true" if start_on_id_card else "false"}
[staff]
pin_hash = "{hash_pin(STAFF_PIN)}"
[data]
key = "{KIOSK_KEY}"
queue_path = "{self.work / "kiosk-queue.sqlite3"}"
[heartbeat]
interval_s = 0.5
replay_backoff_initial_s = 0.2
replay_backoff_max_s = 1.0
[speech]
enabled = {"true" if self.speech else "false"}
[screen]
fullscreen = false
[devices]
id_card_port = "{self.id_card_server.url}"
bank_reader = "{self.pcscd.reader_names[1]}"
band_reader = "{self.pcscd.reader_names[0]}"
camera = "{camera if camera is not None else self.camera_link}"
arm_port = "{self.arm.url}"
pickup_timeout_s = 5.0
face_timeout_s = 15.0
# The simulated clip repeats its actions every 4 s: 12 s gives a loaded machine three chances to see one.
blink_deadline_s = 12.0
printer = "{self.printer.url if self.printer is not None else ""}"
""",
            encoding="utf-8",
        )
        return load_config(path, env={})

    def tag_for(self, uid: str) -> int | None:
        """The UWB tag id of the band with this RFID UID."""
        return next((b.tag_id for b in self.bands if b.uid == uid), None)
