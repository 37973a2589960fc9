"""Thin adapters from the device packages to the flow's ports (checkin.flow.ports).

Each adapter holds one real driver, opens it lazily (a device that is unplugged at start-up makes the
kiosk go out of service, and it comes back by itself once the device answers), and translates the
device package's own exceptions into the port errors with `raise ... from err`. Nothing here knows
whether a driver talks to hardware or to a simulator: that is decided by the URL or reader name the
composition root (checkin.app) passes in.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import cv2

from band_reader import BandUidReader
from bank_card_reader import (
    BankCardData,
    BankCardError,
    BankCardReader,
    InvalidCardNumberError,
    NoCardPresentError,
    ReaderUnavailableError,
    parse_swipe,
)
from camera.driver import CaptureWorker, OpenCvCamera
from camera.errors import CameraError
from camera.protocol import parse_source
from checkin.face.capture_session import FaceCaptureSession
from checkin.face.models import CaptureSettings, LivenessState
from checkin.flow.models import DeviceHealth, DeviceState, FaceFrames
from checkin.flow.ports import (
    BindDecision,
    DeviceFaultError,
    DispenseOutcome,
    DispensePhase,
    DispenseReport,
    InvalidEntryError,
    NothingPresentedError,
    UnreadableError,
)
from id_card_reader import IdCardConnectionError, IdCardError, IdCardReader, NoCardError, SamSelfTestError
from pcsc import PcscError, list_readers
from robot_arm import models as arm_models
from robot_arm.errors import ArmError
from robot_arm.models import DispenseStep

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from PIL import Image

    from camera.models import Frame
    from checkin.face.face_analysis import FaceAnalyser
    from checkin.flow.models import CompleteRequest, CompleteResult, IdentifyRequest, IdentifyResult
    from checkin.flow.ports import IdentityCard, PlatformPort
    from robot_arm.dispenser import WristbandDispenser
    from robot_arm.models import ArmController

log = logging.getLogger(__name__)


# ---- step timings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSpan:
    """One timed step of the kiosk (a device read, a platform call): monotonic start and end, and how it ended."""

    step: str
    start: float
    end: float
    ok: bool

    @property
    def seconds(self) -> float:
        """How long the step took."""
        return self.end - self.start


class StepTimings:
    """The kiosk's most recent device and platform steps with their times: where a check-in's seconds go.

    Only step names and times are kept, never what was read or sent. The list is bounded, so a kiosk
    that runs for months holds the last few hundred steps; the scenario runner turns the steps of one
    check-in into its time breakdown (docs/scenario-format.md), and at DEBUG each step is logged.
    """

    def __init__(self, keep: int = 512) -> None:
        self._spans: collections.deque[StepSpan] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def span(self, step: str) -> Iterator[None]:
        """Time the body as `step` (ok unless it raises)."""
        start = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.add(StepSpan(step, start, time.monotonic(), ok))

    def add(self, span: StepSpan) -> None:
        """Record a step timed elsewhere."""
        with self._lock:
            self._spans.append(span)
        log.debug("step %s %.1f ms%s", span.step, span.seconds * 1000, "" if span.ok else " (failed)")

    def between(self, start: float, end: float) -> list[StepSpan]:
        """Steps that ended inside [start, end] (monotonic seconds), oldest first."""
        with self._lock:
            return [s for s in self._spans if start <= s.end <= end]


class TimedPlatform:
    """The flow's PlatformPort with each call timed (identify, complete_check_in) into StepTimings."""

    def __init__(self, platform: PlatformPort, timings: StepTimings) -> None:
        self._platform = platform
        self._timings = timings

    def identify(self, request: IdentifyRequest) -> IdentifyResult:
        """IdentifyExpert, timed as platform.identify."""
        with self._timings.span("platform.identify"):
            return self._platform.identify(request)

    def complete_check_in(self, request: CompleteRequest) -> CompleteResult:
        """CompleteCheckIn, timed as platform.complete."""
        with self._timings.span("platform.complete"):
            return self._platform.complete_check_in(request)


# ---- ID card reader ------------------------------------------------------------------------------


#: Seconds between find-card polls while the ID card screen waits (the flow reads only then). A find
#: is about 20 bytes each way on the 115200-baud link (2 ms), so 20 a second is 4% of the link; the
#: driver's 0.2 s default added 0.1 s on average (0.2 s at worst) between the card landing and the read.
ID_CARD_POLL_S: Final = 0.05
CAMERA_RELEASE_S: Final = 2.0  # how long a new capture waits for the last one's camera thread to let go


class IdCardAdapter:
    """IdCardPort and SelfTestPort over id_card_reader.IdCardReader at a pyserial URL."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "id_card_reader",
        poll_interval_s: float = ID_CARD_POLL_S,
        timings: StepTimings | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.poll_interval_s = poll_interval_s
        self._timings = timings or StepTimings(keep=16)
        self._reader: IdCardReader | None = None
        self._lock = threading.Lock()

    def _open(self) -> IdCardReader:
        with self._lock:
            if self._reader is None:
                self._reader = IdCardReader.open(self.url)
                self._reader.poll_interval = self.poll_interval_s
            return self._reader

    def _drop(self) -> None:
        """Forget a reader whose link failed, so the next call opens it again."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Close the serial link."""
        self._drop()

    def read_identity(self, timeout: float) -> IdentityCard:
        """Wait up to `timeout` s for an ID card and read it."""
        try:
            with self._timings.span("id_card.read"):
                return self._open().read_identity(timeout)
        except NoCardError as err:
            raise NothingPresentedError(str(err)) from err
        except IdCardConnectionError as err:
            self._drop()
            raise DeviceFaultError(f"ID card reader {self.url}: {err}") from err
        except SamSelfTestError as err:
            raise DeviceFaultError(f"ID card reader {self.url}: {err}") from err
        except IdCardError as err:  # removed mid-read, bad data, damaged frames after the retries
            raise UnreadableError(str(err)) from err

    def health(self) -> DeviceHealth:
        """SAM status: OK when the module answers 0x90."""
        try:
            status = self._open().status()
        except IdCardConnectionError as err:
            self._drop()
            return DeviceHealth(self.name, DeviceState.OFFLINE, type(err).__name__)
        except IdCardError as err:
            return DeviceHealth(self.name, DeviceState.FAULT, type(err).__name__)
        if not status.ok:
            return DeviceHealth(self.name, DeviceState.FAULT, f"SW3 {status.sw3:02X}")
        return DeviceHealth(self.name, DeviceState.OK)

    def self_test(self) -> DeviceHealth:
        """The same status query (the SAM runs its self-test on it)."""
        return self.health()


# ---- bank card reader ----------------------------------------------------------------------------


def _reader_health(device: str, reader_name: str) -> DeviceHealth:
    """OK when pcscd answers and lists the reader by name."""
    try:
        names = list_readers()
    except PcscError as err:
        return DeviceHealth(device, DeviceState.OFFLINE, type(err).__name__)
    if reader_name not in names:
        return DeviceHealth(device, DeviceState.OFFLINE, "reader not listed by pcscd")
    return DeviceHealth(device, DeviceState.OK)


class BankCardAdapter:
    """BankCardPort and SelfTestPort over bank_card_reader.BankCardReader on a named PC/SC reader."""

    def __init__(self, reader_name: str, *, name: str = "bank_card_reader", timings: StepTimings | None = None) -> None:
        self.reader_name = reader_name
        self.name = name
        self._timings = timings or StepTimings(keep=16)
        self._reader = BankCardReader(reader_name)

    def read_card(self, timeout: float) -> BankCardData:
        """Wait up to `timeout` s for a card inserted or tapped, then read its number."""
        try:
            with self._timings.span("bank_card.read"):
                return self._reader.read_card(timeout)
        except NoCardPresentError as err:
            raise NothingPresentedError(str(err)) from err
        except ReaderUnavailableError as err:
            raise DeviceFaultError(str(err)) from err
        except InvalidCardNumberError as err:
            raise InvalidEntryError(str(err)) from err
        except BankCardError as err:  # dead chip, removed, no supported application, bad TLV
            raise UnreadableError(str(err)) from err

    def parse_swipe(self, text: str) -> BankCardData:
        """Track text typed by a keyboard-wedge stripe reader."""
        try:
            return parse_swipe(text)
        except InvalidCardNumberError as err:
            raise InvalidEntryError(str(err)) from err
        except BankCardError as err:
            raise UnreadableError(str(err)) from err

    def cancel(self) -> None:
        """End a read waiting in another thread."""
        self._reader.cancel()

    def health(self) -> DeviceHealth:
        """The reader is listed by pcscd."""
        return _reader_health(self.name, self.reader_name)

    def self_test(self) -> DeviceHealth:
        """Same as health: a read needs a card."""
        return self.health()


# ---- wristband UID reader ------------------------------------------------------------------------


class BandReaderAdapter:
    """The band UID reader as the dispenser's read_uid(timeout), and its SelfTestPort."""

    def __init__(self, reader_name: str, *, name: str = "band_reader", timings: StepTimings | None = None) -> None:
        self.reader_name = reader_name
        self.name = name
        self._timings = timings or StepTimings(keep=16)
        self._reader = BandUidReader(reader_name)

    def read_uid(self, timeout: float) -> str:
        """UID of the band the arm holds at the reader (the dispenser treats any error as unreadable)."""
        with self._timings.span("band.read_uid"):
            return self._reader.read_uid(timeout)

    def health(self) -> DeviceHealth:
        """The reader is listed by pcscd."""
        return _reader_health(self.name, self.reader_name)

    def self_test(self) -> DeviceHealth:
        """Same as health: a read needs a band."""
        return self.health()


# ---- camera --------------------------------------------------------------------------------------


class _RecordingFeed:
    """A CaptureWorker seen through the frames it handed to the session (first/last media time, last image)."""

    def __init__(self, worker: CaptureWorker) -> None:
        self._worker = worker
        self.first: Frame | None = None
        self.last: Frame | None = None

    @property
    def finished(self) -> bool:
        return self._worker.finished

    def wait_for_frame(self, after_index: int, timeout: float) -> Frame | None:
        frame = self._worker.wait_for_frame(after_index, timeout)
        if frame is not None:
            if self.first is None:
                self.first = frame
            self.last = frame
        return frame


class FaceCaptureAdapter:
    """FaceCapturePort over the OpenCV camera and the capture session, and the camera's SelfTestPort.

    The camera is opened for each capture and released after it: its light is on only while the face
    screen shows, and a camera unplugged between experts is found at the next capture. The source is
    a device index or a video file/image folder (a simulator is just a file): camera.protocol.
    """

    #: How long after the last frame a finished session may still be waited for.
    _RESULT_POLL_S: Final = 0.05

    def __init__(
        self,
        source: str,
        *,
        settings: CaptureSettings,
        timeout_s: float,
        analyser_factory: Callable[[], FaceAnalyser],
        name: str = "camera",
        timings: StepTimings | None = None,
    ) -> None:
        self.source = source
        self._timings = timings or StepTimings(keep=16)
        self.settings = settings
        self.timeout_s = timeout_s
        self.name = name
        self._analyser_factory = analyser_factory
        self._analyser: FaceAnalyser | None = None
        self._lock = threading.Lock()
        self._worker: CaptureWorker | None = None
        # The last capture's camera thread, told to stop but not waited for: the answer goes to the flow
        # at once, and the next capture waits for it before opening the camera again.
        self._stopping_worker: CaptureWorker | None = None
        self._session: FaceCaptureSession | None = None
        self._cancelled = threading.Event()
        #: Media seconds of camera input the last capture took (first to last frame analysed): the time
        #: the kiosk waited for the person to face the camera and blink. Read by the scenario runner.
        self.last_media_s = 0.0

    def _analyser_once(self) -> FaceAnalyser:
        with self._lock:
            if self._analyser is None:
                self._analyser = self._analyser_factory()
            return self._analyser

    def warm_up(self) -> None:
        """Load the face analysis models now instead of at the first capture."""
        self._analyser_once()

    def capture(self, on_hint: Callable[[str], None]) -> FaceFrames:
        """Run one capture session on a freshly opened camera until a verdict, a cancel or the timeout."""
        with self._timings.span("face.capture"):
            return self._capture(on_hint)

    def _capture(self, on_hint: Callable[[str], None]) -> FaceFrames:
        analyser = self._analyser_once()
        self._cancelled.clear()
        self.last_media_s = 0.0
        self._wait_for_previous_camera()
        try:
            camera = OpenCvCamera(self.source, loop=True)
        except (CameraError, ValueError) as err:
            raise DeviceFaultError(f"camera {self.source}: {err}") from err
        worker = CaptureWorker(camera)
        feed = _RecordingFeed(worker)
        session = FaceCaptureSession(feed, analyser, self.settings, on_status=lambda s: on_hint(s.hint.value))
        with self._lock:
            self._worker, self._session = worker, session
        worker.start()
        session.start()
        try:
            deadline = time.monotonic() + self.timeout_s
            result = None
            while result is None and not self._cancelled.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or worker.finished:
                    break
                result = session.wait_result(min(remaining, 0.5))
            if feed.first is not None and feed.last is not None:
                self.last_media_s = feed.last.timestamp - feed.first.timestamp
            if worker.error is not None and result is None:
                raise DeviceFaultError(f"camera {self.source}: {worker.error}") from worker.error
            if result is None:
                raise NothingPresentedError("no usable face before the capture's deadline")
            if result.liveness is LivenessState.PASSED and result.jpeg_frames:
                # Every quality gate passed for each frame sent: the session has no finer score.
                return FaceFrames(
                    images_jpeg=result.jpeg_frames,
                    quality=1.0,
                    liveness_passed=True,
                    challenge=result.challenge.value if result.challenge else "",
                    challenge_id=uuid.uuid4().hex,
                    challenge_frames=tuple((f.jpeg, f.at_ms) for f in result.challenge_frames),
                )
            # No blink before the deadline. The flow drops these frames at once (never sent); it
            # needs one to tell "not live" from "nobody there".
            last = feed.last
            evidence = _jpeg(last) if last is not None else b""
            if not evidence:
                raise NothingPresentedError("the liveness check ended without a frame")
            return FaceFrames(images_jpeg=(evidence,), quality=0.0, liveness_passed=False)
        finally:
            session.clear()
            # Not waited for here: the read in progress would hold the answer up to a frame interval
            # (about 50 ms of every check-in). Dropped frames and no later one are kept (request_stop).
            worker.request_stop()
            with self._lock:
                self._worker = self._session = None
                self._stopping_worker = worker

    def _wait_for_previous_camera(self) -> None:
        """The previous capture's camera thread has released the device before it is opened again."""
        with self._lock:
            previous, self._stopping_worker = self._stopping_worker, None
        if previous is not None and not previous.join(CAMERA_RELEASE_S):
            log.warning("the previous capture's camera thread is still running after %.0f s", CAMERA_RELEASE_S)

    def cancel(self) -> None:
        """Make a running capture() return as soon as it can."""
        self._cancelled.set()
        with self._lock:
            session = self._session
        if session is not None:
            session.clear()

    def clear(self) -> None:
        """Drop every frame held (the capture session clears itself when it ends)."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.clear()

    def preview(self) -> Image.Image | None:
        """The newest camera frame as a PIL image, for the UI's live preview (None when the camera is off)."""
        from PIL import Image  # noqa: PLC0415 - only the UI needs PIL here

        with self._lock:
            worker = self._worker
        frame = worker.latest() if worker is not None else None
        if frame is None:
            return None
        return Image.fromarray(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))

    def health(self) -> DeviceHealth:
        """The configured source is a device index, a video file or an image folder that exists."""
        try:
            parse_source(self.source)
        except CameraError as err:
            return DeviceHealth(self.name, DeviceState.OFFLINE, type(err).__name__)
        return DeviceHealth(self.name, DeviceState.OK)

    def self_test(self) -> DeviceHealth:
        """Open the camera and read one frame."""
        self._wait_for_previous_camera()
        try:
            camera = OpenCvCamera(self.source, paced=False)
            camera.open()
            try:
                camera.read()
            finally:
                camera.close()
        except CameraError as err:
            return DeviceHealth(self.name, DeviceState.FAULT, type(err).__name__)
        return DeviceHealth(self.name, DeviceState.OK)


def _jpeg(frame: Frame) -> bytes:
    ok, buffer = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return bytes(buffer) if ok else b""


# ---- the arm -------------------------------------------------------------------------------------

_OUTCOMES: Final = {
    arm_models.DispenseOutcome.HANDED_OUT: DispenseOutcome.HANDED_OUT,
    arm_models.DispenseOutcome.NOT_TAKEN: DispenseOutcome.NOT_TAKEN,
    arm_models.DispenseOutcome.REJECTED: DispenseOutcome.REJECTED,
    # Nothing left the stock: for the flow that is a band never offered.
    arm_models.DispenseOutcome.NOT_DISPENSED: DispenseOutcome.REJECTED,
}


class DispenserAdapter:
    """DispenserPort over robot_arm.dispenser.WristbandDispenser."""

    def __init__(self, dispenser: WristbandDispenser, *, timings: StepTimings | None = None) -> None:
        self._dispenser = dispenser
        self._timings = timings or StepTimings(keep=16)
        self._lock = threading.Lock()

    def start_up(self) -> arm_models.StartUpReport:
        """Home the arm and clear out any band left from before (run once at kiosk start)."""
        return self._dispenser.start_up()

    def dispense(
        self, bind: Callable[[str], BindDecision], on_progress: Callable[[DispensePhase], None]
    ) -> DispenseReport:
        """One band: pick, read, bind, hand out or reject."""

        def progress(p: arm_models.DispenseProgress) -> None:
            if p.step is DispenseStep.PRESENTING:
                on_progress(DispensePhase.AT_PICKUP)
            elif p.step is DispenseStep.PREPARING:
                on_progress(DispensePhase.PREPARING)

        def arm_bind(uid: str) -> arm_models.BindDecision:
            decision = bind(uid)
            if decision.bound:
                return arm_models.BindDecision.accepted()
            return arm_models.BindDecision.refused(decision.reason or "refused")

        with self._lock:  # one dispense at a time; on_progress belongs to this call
            self._dispenser.on_progress = progress
            try:
                with self._timings.span("arm.dispense"):
                    result = self._dispenser.dispense(arm_bind)
            except ArmError as err:
                raise DeviceFaultError(f"dispense failed: {err}") from err
            finally:
                self._dispenser.on_progress = None
        reason = result.reason.value.upper() if result.reason is not None else ""
        if result.fault is not None:
            reason = f"{reason} E{int(result.fault)}".strip()
        return DispenseReport(
            outcome=_OUTCOMES[result.outcome], uid=result.uid, reason=reason, needs_staff=result.needs_staff
        )

    def fetch_band(self) -> str | None:
        """BandFetchPort: bring a band to the reader and read its UID ahead of the dispense."""
        with self._lock, self._timings.span("arm.fetch_ahead"):
            try:
                return self._dispenser.fetch()
            except ArmError as err:
                log.warning("fetching a band ahead failed: %s", err)
                return None

    def put_away_band(self) -> bool:
        """BandFetchPort: the band fetched ahead goes to the reject bin (the expert left)."""
        with self._lock:
            try:
                return self._dispenser.put_away() is not None
            except ArmError as err:
                log.warning("putting away the band fetched ahead failed: %s", err)
                return False


class ArmHealth:
    """SelfTestPort of the arm: its status without moving it; self-test runs the start-up (homing)."""

    def __init__(self, arm: ArmController, dispenser: DispenserAdapter, *, name: str = "arm") -> None:
        self._arm = arm
        self._dispenser = dispenser
        self.name = name

    def health(self) -> DeviceHealth:
        """FAULT on an alarm, e-stop, open door or lost homing; OK otherwise (a band in hand is normal)."""
        try:
            status = self._arm.status()
        except ArmError as err:
            return DeviceHealth(self.name, DeviceState.OFFLINE, type(err).__name__)
        problems = []
        if status.alarm is not None:
            problems.append(f"alarm E{int(status.alarm)}")
        if status.estop:
            problems.append("e-stop")
        if status.door_open:
            problems.append("door open")
        if not status.homed:
            problems.append("not homed")
        if problems:
            return DeviceHealth(self.name, DeviceState.FAULT, ", ".join(problems))
        return DeviceHealth(self.name, DeviceState.OK)

    def self_test(self) -> DeviceHealth:
        """Run the arm's start-up: home, and clear out any band left in the gripper or slot."""
        report = self._dispenser.start_up()
        if report.ready:
            return DeviceHealth(self.name, DeviceState.OK, f"rejected {report.rejected}")
        return DeviceHealth(self.name, DeviceState.FAULT, "; ".join(report.problems))


class ArmStock:
    """StockPort: the band count comes from the arm's own stock sensor, the truth after any refill."""

    def __init__(self, arm: ArmController) -> None:
        self._arm = arm

    def level(self) -> int:
        """Bands in the magazine, as the arm counts them."""
        return self._arm.status().stock

    def refill(self, added: int) -> int:
        """Staff added bands: log their count and return what the sensor reads now."""
        level = self.level()
        log.info("stock refill: staff added %d band(s); the arm counts %d", added, level)
        return level
