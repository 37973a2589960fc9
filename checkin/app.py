"""The kiosk's one composition root: devices, platform client, queue and flow, built from a KioskConfig.

Real or simulated devices are chosen only by the values in [devices] (a serial URL, a PC/SC reader
name, a camera index or file): `socket://127.0.0.1:7101` reaches the ID card simulator exactly as
`/dev/ttyUSB0` reaches the reader. Nothing else in the kiosk constructs a device.

The flow runs on one thread that the host provides through its Scheduler and Worker: Tk's thread in
`checkin-kiosk run`, a checkin.flow_thread.FlowThread in the scenario runner. `build_kiosk` must be
called on that thread (the flow publishes its first view at once).
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checkin.face.models import CaptureSettings
from checkin.flow.machine import CheckInFlow, FlowPorts, FlowSettings
from checkin.flow.printing import NoPrinter
from checkin.flow.runtime import BackgroundEventReporter, HeartbeatSender
from checkin.flow.views import Screen
from checkin.pending_queue import PendingQueue, QueueReplayer
from checkin.platform_client import PlatformClient
from checkin.port_adapters import (
    ArmHealth,
    ArmStock,
    BandReaderAdapter,
    BankCardAdapter,
    DispenserAdapter,
    FaceCaptureAdapter,
    IdCardAdapter,
    StepTimings,
    TimedPlatform,
)
from checkin.slip_printer import ReceiptPrinterAdapter
from checkin.texts import Language
from personal_data import crypto
from robot_arm.dispenser import WristbandDispenser
from robot_arm.driver import ArmDriver

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.config import KioskConfig
    from checkin.face.face_analysis import FaceAnalyser
    from checkin.flow.models import ServiceHealth
    from checkin.flow.ports import Scheduler, SelfTestPort, Worker

log = logging.getLogger(__name__)


def face_analyser_factory(detect_width: int) -> Callable[[], FaceAnalyser]:
    """A loader of the kiosk's face analysis (dlib's models, about 1 s), called on first use."""

    def make() -> FaceAnalyser:
        with warnings.catch_warnings():
            # face_recognition_models finds its files with the deprecated pkg_resources, which warns on
            # stderr at every kiosk start: not news for a technician.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from checkin.face.face_analysis import FaceAnalyser  # noqa: PLC0415 - loads dlib's models (~1 s)

        return FaceAnalyser(detect_width=detect_width)

    return make


@dataclass
class Kiosk:
    """One running kiosk: the flow and everything around it that has a life cycle."""

    config: KioskConfig
    flow: CheckInFlow
    client: PlatformClient
    queue: PendingQueue
    replayer: QueueReplayer
    audit: BackgroundEventReporter
    heartbeat: HeartbeatSender
    id_card: IdCardAdapter
    bank_card: BankCardAdapter
    band_reader: BandReaderAdapter
    face: FaceCaptureAdapter
    arm: ArmDriver
    dispenser: DispenserAdapter
    devices: dict[str, SelfTestPort] = field(default_factory=dict)
    #: The receipt printer, None when [devices] printer is empty.
    printer: ReceiptPrinterAdapter | None = None
    #: Device reads and platform calls with their times (names and times only): the time breakdown.
    timings: StepTimings = field(default_factory=StepTimings)
    _started: bool = False

    def start(self) -> None:
        """Settle the queue left by a crash, then start audit, replayer, arm start-up and heartbeats."""
        if self._started:
            return
        self._started = True
        orphans = self.queue.recover_after_restart()
        if orphans:
            log.warning("%d check-in(s) were in flight when the kiosk stopped: the replayer settles them", orphans)
        self.audit.start()
        self.replayer.start()
        # Homing moves the arm: it runs (after loading the face models) before the first heartbeat can
        # report the arm ready, so the kiosk stays out of service until it is home (or says why not).
        threading.Thread(target=self._arm_start_up, name="arm-start-up", daemon=True).start()

    def _arm_start_up(self) -> None:
        # Load the face models now (about 1 s), not while the first expert looks at the camera.
        try:
            self.face.warm_up()
        except Exception as err:
            log.warning("face analysis could not be loaded: %s", type(err).__name__)
        try:
            report = self.dispenser.start_up()
        except Exception as err:  # the heartbeat reports the arm's state; the kiosk stays out of service
            log.warning("arm start-up failed: %s", type(err).__name__)
        else:
            if report.ready:
                log.info("arm ready (rejected %d band(s) left from before)", report.rejected)
            else:
                log.warning("arm not ready after start-up: %s", "; ".join(report.problems))
        self.heartbeat.start()

    def close(self) -> None:
        """Stop the background threads and close the devices and files."""
        self.heartbeat.stop()
        self.replayer.stop()
        if self._started:
            self.audit.stop(timeout=2.0)
        self.face.cancel()
        self.bank_card.cancel()
        self.id_card.close()
        self.arm.close()
        if self.printer is not None:
            self.printer.close()
        self.client.close()
        self.queue.close()


def flow_settings(config: KioskConfig) -> FlowSettings:
    """The flow's timing and limits from the configuration."""
    return FlowSettings(
        kiosk_id=config.kiosk_id,
        staff_pin_hash=config.staff_pin_hash,
        inactivity_s=config.inactivity_s,
        countdown_s=config.countdown_s,
        done_return_s=config.done_return_s,
        max_face_attempts=config.max_face_attempts,
        device_poll_s=config.device_poll_s,
        max_pin_failures=config.max_pin_failures,
        pin_lockout_s=config.pin_lockout_s,
        max_band_attempts=config.max_band_attempts,
        max_refill=config.max_refill,
        timezone=config.timezone,
        start_on_id_card=config.start_on_id_card,
        home_poll_s=min(0.5, config.device_poll_s),
        platform_busy_wait_s=config.platform.busy_wait_s,
    )


def build_kiosk(config: KioskConfig, *, scheduler: Scheduler, worker: Worker) -> Kiosk:
    """Build the whole kiosk from its configuration; call on the flow's thread, then `start()` it."""
    devices_cfg = config.devices
    key = crypto.DataKey.from_text(config.data_key)
    client = PlatformClient(config.platform, config.kiosk_id)
    queue = PendingQueue(config.queue_path, key)
    replayer = QueueReplayer(
        queue,
        client,
        backoff_initial_s=config.replay_backoff_initial_s,
        backoff_max_s=config.replay_backoff_max_s,
    )
    audit = BackgroundEventReporter(client)
    timings = StepTimings()
    id_card = IdCardAdapter(devices_cfg.id_card_port, timings=timings)
    bank_card = BankCardAdapter(devices_cfg.bank_reader, timings=timings)
    band_reader = BandReaderAdapter(devices_cfg.band_reader, timings=timings)
    capture_settings = CaptureSettings(blink_deadline_s=devices_cfg.blink_deadline_s)
    face = FaceCaptureAdapter(
        devices_cfg.camera,
        settings=capture_settings,
        timeout_s=devices_cfg.face_timeout_s,
        analyser_factory=face_analyser_factory(capture_settings.detect_width),
        timings=timings,
    )
    # ArmDriver connects on its first command (and reconnects by itself), so a missing arm shows as a
    # device fault in the heartbeat instead of stopping the kiosk from starting.
    arm = ArmDriver(devices_cfg.arm_port)
    dispenser = DispenserAdapter(
        WristbandDispenser(arm, band_reader.read_uid, pickup_timeout=devices_cfg.pickup_timeout_s), timings=timings
    )
    stock = ArmStock(arm)
    devices: dict[str, SelfTestPort] = {
        "id_card_reader": id_card,
        "bank_card_reader": bank_card,
        "band_reader": band_reader,
        "camera": face,
        "arm": ArmHealth(arm, dispenser),
    }
    # The printer connects on its first job or status check: a missing printer is a degraded device
    # (slips go to the desk), never a reason to refuse check-ins.
    printer = (
        ReceiptPrinterAdapter(devices_cfg.printer, kiosk_id=config.kiosk_id, timeout_s=devices_cfg.printer_timeout_s)
        if devices_cfg.printer
        else None
    )
    if printer is not None:
        devices["receipt_printer"] = printer
    ports = FlowPorts(
        id_card=id_card,
        bank_card=bank_card,
        face=face,
        dispenser=dispenser,
        platform=TimedPlatform(client, timings),
        pending=queue,
        audit=audit,
        stock=stock,
        scheduler=scheduler,
        worker=worker,
        devices=devices,
        printer=printer if printer is not None else NoPrinter(),
        band_fetch=dispenser,
    )
    flow = CheckInFlow(
        ports,
        flow_settings(config),
        default_language=Language(config.language),
        speech_on=config.speech_enabled,
    )

    def on_health(health: ServiceHealth) -> None:  # heartbeat thread: hand the verdict to the flow's thread
        worker.post(lambda: flow.health_changed(health))

    heartbeat = HeartbeatSender(
        client,
        devices,
        stock,
        pending_depth=queue.depth,
        out_of_service=lambda: flow.view.screen is Screen.OUT_OF_SERVICE,
        on_health=on_health,
        interval_s=config.heartbeat_interval_s,
        software_version=config.software_version,
        printer_paper=(lambda: printer.paper().value) if printer is not None else None,
    )
    return Kiosk(
        config=config,
        flow=flow,
        client=client,
        queue=queue,
        replayer=replayer,
        audit=audit,
        heartbeat=heartbeat,
        id_card=id_card,
        bank_card=bank_card,
        band_reader=band_reader,
        face=face,
        arm=arm,
        dispenser=dispenser,
        devices=devices,
        timings=timings,
        printer=printer,
    )
