"""Serial driver of the dispenser arm: one class for every transport pyserial's `serial_for_url` opens.

A reader thread (pyserial's `ReaderThread` with a line `Packetizer`) matches `$n` replies to requests
by id and dispatches `@` events. Transport faults (a lost line, a dropped link) are retried a bounded
number of times with exponential backoff; a motion is never re-sent blindly: after a lost reply the
driver asks `JOB? n` whether the arm got it, and after a lost link it compares the boot count to
tell a reconnect from a power loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import serial
from serial.threaded import Packetizer

from device_kit.link import Closing, LinkReaderThread
from robot_arm.errors import (
    ArmConfigError,
    ArmConnectionError,
    ArmMotionError,
    ArmPowerLossError,
    ArmProtocolError,
    ArmRefusedError,
    ArmTimeoutError,
)
from robot_arm.protocol import (
    BAUDRATE,
    MAX_LINE_LENGTH,
    MOTION_COMMANDS,
    QUERY_COMMANDS,
    ArmInfo,
    ArmStatus,
    Command,
    ErrorCode,
    Event,
    EventName,
    JobInfo,
    JobState,
    Reply,
    Request,
    Station,
    encode_request,
    next_request_id,
    parse_info,
    parse_job,
    parse_message,
    parse_status,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
wire_log = logging.getLogger("robot_arm.wire")

RESENDABLE: Final = QUERY_COMMANDS | {Command.CLEAR, Command.ESTOP, Command.SYNC}
"""Commands whose repetition has no further effect, so a lost reply may simply be answered by re-sending."""
MAX_REMEMBERED_JOBS: Final = 64


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """One line on the wire, kept in the driver's traffic log for diagnostics."""

    at: float
    direction: str
    """`>>>` host to arm, `<<<` arm to host."""
    line: str


@dataclass(frozen=True, slots=True)
class DriverSettings:
    """Timing and retry settings, range-checked so a bad config fails at start-up with a clear message."""

    baudrate: int = BAUDRATE
    command_timeout: float = 1.0
    """Seconds to wait for the `$n` reply; the arm answers at once, so this only covers the link."""
    motion_timeout: float = 20.0
    """Seconds a single motion may take before the driver asks the arm what happened."""
    retries: int = 3
    """Transport-fault retries per command (lost reply, dropped link)."""
    reconnect_attempts: int = 5
    backoff: float = 0.05
    """First retry delay in seconds; doubled per attempt, capped at 2 s."""

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("baudrate", self.baudrate, 300, 4_000_000),
            ("command_timeout", self.command_timeout, 0.01, 60),
            ("motion_timeout", self.motion_timeout, 0.01, 600),
            ("retries", self.retries, 0, 10),
            ("reconnect_attempts", self.reconnect_attempts, 1, 50),
            ("backoff", self.backoff, 0, 10),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ArmConfigError(f"arm driver setting {name!r} must be between {low} and {high}, got {value}")


READ_POLL: Final = 0.1
"""Read timeout of the port: on socket:// the kit's reader thread polls at device_kit.link.READ_POLL."""


class _LinePacketizer(Packetizer):  # type: ignore[misc]
    """Splits the byte stream into lines for the driver, dropping runaway data with no line end."""

    TERMINATOR = b"\n"

    def __init__(self, driver: ArmDriver) -> None:
        super().__init__()
        self._driver = driver
        self._reader: object = None  # the reader thread of this packetizer's link

    def connection_made(self, transport: object) -> None:
        super().connection_made(transport)
        self._reader = transport

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(self.buffer) > 4 * MAX_LINE_LENGTH:
            # Line noise or a wrong baud rate: never let the buffer grow without bound.
            self._driver._on_garbage(bytes(self.buffer[:40]))  # noqa: SLF001
            del self.buffer[:]

    def handle_packet(self, packet: bytes) -> None:
        self._driver._on_line(bytes(packet))  # noqa: SLF001

    def connection_lost(self, exc: BaseException | None) -> None:
        # Not calling super(): pyserial's base re-raises `exc` on the reader thread.
        self.transport = None
        del self.buffer[:]
        self._driver._on_link_lost(self._reader, exc)  # noqa: SLF001


class _Link:
    """One open serial link and its reader thread."""

    def __init__(self, port: serial.SerialBase, reader: LinkReaderThread) -> None:
        self.port = port
        self.reader = reader
        self.alive = True

    def write(self, data: bytes) -> None:
        self.reader.write(data)

    def close(self, *, wait: bool = True) -> None:
        self.alive = False
        self.reader.alive = False
        if hasattr(self.port, "cancel_read"):
            self.port.cancel_read()
        if not wait:
            # pyserial's socket:// close() sleeps 0.3 s "for quick reconnects"; a reconnect need not wait for it.
            threading.Thread(target=self.close, name="arm-link-close", daemon=True).start()
            return
        if self.reader is not threading.current_thread() and self.reader.is_alive():
            self.reader.join(2 * READ_POLL + 1)
        try:
            self.port.close()
        except (OSError, serial.SerialException):
            log.debug("closing the arm port failed", exc_info=True)


class ArmDriver(Closing):
    """The dispenser arm over serial (`/dev/ttyUSB0`, `socket://127.0.0.1:7001`, `spy://...`, `loop://`)."""

    def __init__(self, url: str, settings: DriverSettings | None = None) -> None:
        self.url = url
        self.settings = settings or DriverSettings()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._link: _Link | None = None
        self._rid = 0
        self._replies: dict[int, Reply] = {}
        self._jobs: OrderedDict[int, Event] = OrderedDict()
        self._boot: int | None = None
        self._boot_epoch = 0
        self._link_epoch = 0
        self._listeners: list[Callable[[Event], None]] = []
        self._closed = threading.Event()
        self.traffic: deque[TrafficRecord] = deque(maxlen=500)
        self._awaiting: int | None = None
        self.transport_faults = 0
        """Count of lost replies, dropped links and malformed lines seen (for health reports)."""

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        command_timeout: float = 1.0,
        motion_timeout: float = 20.0,
        retries: int = 3,
        reconnect_attempts: int = 5,
        backoff: float = 0.05,
    ) -> ArmDriver:
        """Open the port, learn the boot count and start a fresh request-id session (SYNC)."""
        settings = DriverSettings(
            command_timeout=command_timeout,
            motion_timeout=motion_timeout,
            retries=retries,
            reconnect_attempts=reconnect_attempts,
            backoff=backoff,
        )
        driver = cls(url, settings)
        try:
            driver._ensure_link()
            driver._request(Command.SYNC)
        except BaseException:
            driver.close()
            raise
        return driver

    def close(self) -> None:
        """Close the port and stop the reader thread; safe to call twice."""
        self._closed.set()
        with self._cond:
            link, self._link = self._link, None
            self._cond.notify_all()
        if link is not None:
            link.close()

    @property
    def boot(self) -> int | None:
        """The arm controller's boot count as last seen."""
        return self._boot

    # -- public commands -----------------------------------------------------------------------

    def status(self) -> ArmStatus:
        """STATUS?: position, gripper, band held, stock, reject counter, slot, door, e-stop, alarm."""
        return parse_status(self._request(Command.STATUS).fields)

    def info(self) -> ArmInfo:
        """INFO?: model, firmware, protocol version, serial number, boot count."""
        return parse_info(self._request(Command.INFO).fields)

    def job(self, rid: int) -> JobInfo | None:
        """JOB? rid: what the arm did with request `rid`, or None if it never received it."""
        try:
            return parse_job(self._request(Command.JOB, str(rid)).fields)
        except ArmRefusedError as err:
            if err.code is ErrorCode.UNKNOWN_REQUEST:
                return None
            raise

    def home(self) -> None:
        """HOME: find the axes' reference switches; needed after power-up, e-stop, door or jam."""
        self._motion(Command.HOME)

    def pick(self) -> None:
        """PICK: go to the stock and grip the top band."""
        self._motion(Command.PICK)

    def move(self, station: Station) -> None:
        """MOVE <station>: carry whatever is held to a named station."""
        self._motion(Command.MOVE, station.value)

    def release(self) -> None:
        """RELEASE: open the gripper (only at STOCK, PICKUP or REJECT, where the band has somewhere to go)."""
        self._motion(Command.RELEASE)

    def retract(self) -> bool:
        """RETRACT: the pickup slot's capture flap drops a band left there into the reject bin."""
        fields = self._motion(Command.RETRACT)
        return fields.get("RETRACTED") == "1"

    def clear(self) -> None:
        """CLEAR: clear a latched alarm (refused while the e-stop is pressed or the door is open)."""
        self._request(Command.CLEAR)

    def estop(self) -> None:
        """ESTOP: stop at once and abort queued motions; CLEAR then HOME to resume."""
        self._request(Command.ESTOP)

    def add_event_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` on the reader thread for every `@` event; keep it quick."""
        with self._cond:
            self._listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling `listener`."""
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- the link ------------------------------------------------------------------------------

    def _open_link(self) -> None:
        try:
            port = serial.serial_for_url(self.url, baudrate=self.settings.baudrate, timeout=READ_POLL, write_timeout=2)
        except ValueError as err:
            raise ArmConfigError(f"arm port {self.url!r} is not a usable port or URL: {err}") from err
        reader = LinkReaderThread(port, lambda: _LinePacketizer(self))
        reader.name = f"arm-reader {self.url}"
        link = _Link(port, reader)
        with self._cond:
            self._link = link
            self._link_epoch += 1
        reader.start()
        try:
            reader.connect()
        except RuntimeError as err:
            # The reader saw the link drop at once (e.g. the arm is still booting and refused us).
            raise ArmConnectionError(f"arm link {self.url} dropped as soon as it opened") from err

    def _ensure_link(self) -> None:
        """Open the link if it is down, with bounded, logged attempts; check the boot count each time."""
        if self._link is not None and self._link.alive:
            return
        if self._closed.is_set():
            raise ArmConnectionError(f"arm driver for {self.url} is closed")
        self._drop_link()  # a dead link still holds the port open
        last: Exception | None = None
        for attempt in range(1, self.settings.reconnect_attempts + 1):
            try:
                self._open_link()
                self._handshake()
            except (serial.SerialException, OSError, ArmConnectionError, ArmProtocolError, _LinkLostError) as err:
                last = err
                self._drop_link()
                log.warning(
                    "arm link %s: attempt %d/%d failed: %s", self.url, attempt, self.settings.reconnect_attempts, err
                )
                self._backoff(attempt)
            else:
                if attempt > 1:
                    log.info("arm link %s: connected on attempt %d", self.url, attempt)
                return
        raise ArmConnectionError(
            f"cannot reach the arm at {self.url} after {self.settings.reconnect_attempts} attempts: {last}"
        ) from last

    def _handshake(self) -> None:
        """INFO? on a fresh link: proves the arm answers and tells a reconnect from a power loss."""
        _, reply = self._exchange(Command.INFO, ())
        if reply is None:
            raise ArmConnectionError("no answer to INFO? after opening the port")
        self._note_boot(parse_info(self._check(reply, Command.INFO).fields).boot)

    def _drop_link(self) -> None:
        with self._cond:
            link, self._link = self._link, None
            self._cond.notify_all()
        if link is not None:
            link.close(wait=False)

    def _backoff(self, attempt: int) -> None:
        delay = min(self.settings.backoff * 2 ** (attempt - 1), 2.0)
        # Wait on the close event so close() never waits out a backoff.
        self._closed.wait(delay)

    def _note_boot(self, boot: int) -> None:
        with self._cond:
            if self._boot is not None and boot != self._boot:
                log.warning("arm controller restarted (boot %s -> %s): queued motions were lost", self._boot, boot)
                self._boot_epoch += 1
                self._jobs.clear()
            self._boot = boot
            self._cond.notify_all()

    # -- reader-thread callbacks ---------------------------------------------------------------

    def _on_line(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace").rstrip("\r")
        self.traffic.append(TrafficRecord(time.monotonic(), "<<<", text))
        wire_log.debug("<<< %s", text)
        if not text.strip():
            return
        try:
            message = parse_message(raw)
        except ArmProtocolError as err:
            self.transport_faults += 1
            log.warning("arm sent a malformed line %r: %s", text[:60], err)
            return
        if isinstance(message, Reply):
            with self._cond:
                if message.rid == self._awaiting:
                    self._replies[message.rid] = message
                    self._cond.notify_all()
                else:
                    # A reply after its request timed out: JOB? already settled it (or will).
                    log.info("arm: late or unexpected reply to #%d ignored", message.rid)
            return
        self._on_event(message)

    def _on_event(self, event: Event) -> None:
        with self._cond:
            if event.name in {EventName.DONE, EventName.ERR} and event.fields.get("Q", "").isdigit():
                self._jobs[int(event.fields["Q"])] = event
                while len(self._jobs) > MAX_REMEMBERED_JOBS:
                    self._jobs.popitem(last=False)
            listeners = list(self._listeners)
            self._cond.notify_all()
        if event.name is EventName.READY and event.fields.get("BOOT", "").isdigit():
            # Power came back while the serial link stayed up (USB adapter powered by the host).
            self._note_boot(int(event.fields["BOOT"]))
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("arm event listener failed on %s", event.name)

    def _on_garbage(self, head: bytes) -> None:
        self.transport_faults += 1
        log.warning("arm line too long, discarded (starts %r): wrong baud rate or line noise?", head)

    def _on_link_lost(self, reader: object, exc: BaseException | None) -> None:
        """The reader thread `reader` saw its link end.

        Only the current link's reader counts: a replaced link's reader can report its end after the
        reconnect has opened the next link, and must not take that one down.
        """
        with self._cond:
            link = self._link
            if link is not None and link.reader is reader and not self._closed.is_set():
                link.alive = False
                self.transport_faults += 1
                log.warning("arm link %s lost: %s", self.url, exc)
            self._cond.notify_all()

    # -- requests ------------------------------------------------------------------------------

    def _exchange(self, command: Command, args: tuple[str, ...]) -> tuple[int, Reply | None]:
        """Send one request and wait for its reply: (request id, reply or None if lost or the link dropped).

        Requests are strictly one at a time (the arm answers at once, so this costs nothing): a reply
        is then unambiguous, and one arriving after its timeout is recognised and ignored.
        """
        with self._send_lock:
            link = self._link
            if link is None or not link.alive:
                raise _LinkLostError
            self._rid = next_request_id(self._rid)
            rid = self._rid
            data = encode_request(Request(rid, command, args))
            with self._cond:
                self._replies.clear()
                self._awaiting = rid
            text = data.decode("ascii").rstrip("\n")
            self.traffic.append(TrafficRecord(time.monotonic(), ">>>", text))
            wire_log.debug(">>> %s", text)
            try:
                link.write(data)
            except (serial.SerialException, OSError):
                link.alive = False
                return rid, None
            deadline = time.monotonic() + self.settings.command_timeout
            with self._cond:
                try:
                    while rid not in self._replies:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or not link.alive or self._closed.is_set():
                            return rid, None
                        self._cond.wait(remaining)
                    return rid, self._replies.pop(rid)
                finally:
                    self._awaiting = None

    @staticmethod
    def _check(reply: Reply, command: Command) -> Reply:
        if reply.error is not None:
            raise ArmRefusedError(reply.error, command.value, reply.text)
        return reply

    def _request(self, command: Command, *args: str) -> Reply:
        """Send a request with bounded transport retries; reconcile state-changing ones through JOB?."""
        for attempt in range(1, self.settings.retries + 2):
            self._ensure_link()
            epoch = self._boot_epoch
            try:
                rid, reply = self._exchange(command, args)
            except _LinkLostError:
                # Nothing was sent (the link was already down): reconnect and try again.
                self.transport_faults += 1
                if attempt > self.settings.retries:
                    break
                self._backoff(attempt)
                continue
            if reply is not None:
                return self._check(reply, command)
            self.transport_faults += 1
            log.warning(
                "arm: no reply to #%d %s (attempt %d/%d)", rid, command.value, attempt, self.settings.retries + 1
            )
            if attempt > self.settings.retries:
                break
            self._backoff(attempt)
            if command in RESENDABLE:
                continue
            reconciled = self._reconcile(command, rid, epoch)
            if reconciled is not None:
                return reconciled
        if self._link is None or not self._link.alive:
            raise ArmConnectionError(f"arm link {self.url} dropped during {command.value}")
        raise ArmTimeoutError(
            f"arm did not answer {command.value} within {self.settings.command_timeout} s, "
            f"{self.settings.retries + 1} attempts"
        )

    def _reconcile(self, command: Command, rid: int, epoch: int) -> Reply | None:
        """After a lost reply to a state-changing request: did the arm get it? None means send again."""
        self._ensure_link()
        if self._boot_epoch != epoch:
            raise ArmPowerLossError(f"arm restarted while {command.value} was being sent; it is not homed")
        job = self.job(rid)
        if job is None:
            log.info("arm never received #%d %s: sending it again is safe", rid, command.value)
            return None
        log.info("arm did receive #%d %s (%s): not sending it again", rid, command.value, job.state.value)
        if job.state is JobState.REFUSED:
            raise ArmRefusedError(job.error or ErrorCode.BAD_LINE, command.value, "(reconciled via JOB?)")
        fields = dict(job.fields)
        if job.queue_index:
            fields["Q"] = str(job.queue_index)
        # Driver-internal keys (never on the wire): the motion waiter settles from them.
        fields["_STATE"] = job.state.value
        fields["_E"] = str(int(job.error)) if job.error else "0"
        return Reply(rid, None, fields)

    # -- motions -------------------------------------------------------------------------------

    def _motion(self, command: Command, *args: str) -> dict[str, str]:
        """Send a motion, then wait for `@DONE Q=k` / `@ERR Q=k`; reconcile via JOB? if the event is lost."""
        assert command in MOTION_COMMANDS
        epoch = self._boot_epoch
        reply = self._request(command, *args)
        if self._boot_epoch != epoch:
            raise ArmPowerLossError(f"arm restarted before {command.value} was accepted")
        rid = reply.rid
        if "Q" not in reply.fields or not reply.fields["Q"].isdigit():
            raise ArmProtocolError(f"arm accepted {command.value} without a queue index: {reply.fields}")
        queue_index = int(reply.fields["Q"])
        if reply.fields.get("_STATE") in {JobState.DONE.value, JobState.FAILED.value}:
            # Reconciled through JOB?: the motion already finished while we were not listening.
            state = JobState(reply.fields["_STATE"])
            code = None if reply.fields["_E"] == "0" else ErrorCode.parse(reply.fields["_E"])
            results = {k: v for k, v in reply.fields.items() if not k.startswith("_") and k != "Q"}
            return self._settle_job(command, JobInfo(rid, queue_index, state, code, results))
        deadline = time.monotonic() + self.settings.motion_timeout
        extended = False
        while True:
            outcome = self._wait_job(queue_index, epoch, deadline)
            if isinstance(outcome, Event):
                return self._finish(command, outcome)
            # The event was lost (timeout) or the link dropped: ask the arm, never re-send the motion.
            job = self._ask_after_lost_event(command, rid, queue_index, epoch)
            if isinstance(job, Event):
                return self._finish(command, job)
            if job.state in {JobState.DONE, JobState.FAILED, JobState.REFUSED}:
                return self._settle_job(command, job)
            if time.monotonic() >= deadline:
                if extended:
                    raise ArmTimeoutError(
                        f"{command.value} still {job.state.value} after {2 * self.settings.motion_timeout} s"
                    )
                # One grace period: the arm confirmed it is still working on it.
                extended = True
                deadline = time.monotonic() + self.settings.motion_timeout

    def _ask_after_lost_event(self, command: Command, rid: int, queue_index: int, epoch: int) -> Event | JobInfo:
        if self._boot_epoch == epoch:
            self._ensure_link()
        if self._boot_epoch != epoch:
            raise ArmPowerLossError(f"arm lost power during {command.value}: it is not homed")
        with self._cond:
            event = self._jobs.pop(queue_index, None)
        if event is not None:
            return event
        job = self.job(rid)
        if job is None or job.queue_index != queue_index:
            raise ArmProtocolError(f"arm forgot request #{rid} ({command.value}) it accepted as Q={queue_index}")
        return job

    def _wait_job(self, queue_index: int, epoch: int, deadline: float) -> Event | None:
        with self._cond:
            while True:
                event = self._jobs.pop(queue_index, None)
                if event is not None:
                    return event
                link = self._link
                remaining = deadline - time.monotonic()
                if remaining <= 0 or link is None or not link.alive or self._boot_epoch != epoch:
                    return None
                if self._closed.is_set():
                    raise ArmConnectionError(f"arm driver for {self.url} was closed")
                self._cond.wait(remaining)

    @staticmethod
    def _finish(command: Command, event: Event) -> dict[str, str]:
        if event.name is EventName.DONE:
            return dict(event.fields)
        code = ErrorCode.parse(event.fields.get("E", "0"))
        raise ArmMotionError(code, command.value)

    @staticmethod
    def _settle_job(command: Command, job: JobInfo) -> dict[str, str]:
        if job.state is JobState.DONE:
            return dict(job.fields)
        code = job.error or ErrorCode.ABORTED
        if job.state is JobState.REFUSED:
            raise ArmRefusedError(code, command.value, "(reconciled via JOB?)")
        raise ArmMotionError(code, command.value, "(reconciled via JOB?)")


class _LinkLostError(Exception):
    """Internal: no link to send on."""


if TYPE_CHECKING:
    from robot_arm.models import ArmController

    def _implements_arm_controller(driver: ArmDriver) -> ArmController:
        """Static check only: mypy proves ArmDriver satisfies the ArmController interface."""
        return driver
