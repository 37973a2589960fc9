"""The threads the flow itself does not own: the Tk-side worker, heartbeats, audit sending.

The flow only ever runs on one thread: Tk's in the kiosk (the UI drains a CallbackInbox with
after()), or checkin.flow_thread.FlowThread when headless. Worker threads and the heartbeat thread
hand their results back through `post`.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

from checkin.flow.models import DeviceHealth, DeviceState, HeartbeatReport, ServiceHealth

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from checkin.flow.models import HeartbeatAck, KioskContext, KioskEvent
    from checkin.flow.ports import SelfTestPort, StockPort

log = logging.getLogger(__name__)
T = TypeVar("T")


class CallbackInbox:
    """Callbacks posted from any thread, run later by the flow's thread (drain())."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wakeups: list[Callable[[], None]] = []

    def on_post(self, wakeup: Callable[[], None]) -> None:
        """Call `wakeup` after every post (to stop a wait early)."""
        self._wakeups.append(wakeup)

    def post(self, callback: Callable[[], None]) -> None:
        """Queue a callback (thread-safe)."""
        self._queue.put(callback)
        for wakeup in self._wakeups:
            wakeup()

    def drain(self) -> int:
        """Run every queued callback on the calling thread; return how many ran."""
        ran = 0
        while True:
            try:
                callback = self._queue.get_nowait()
            except queue.Empty:
                return ran
            try:
                callback()
            except Exception:
                log.exception("callback posted to the flow's thread failed")
            ran += 1


class ThreadWorker:
    """The Worker port: one thread, so device reads never overlap on the same reader."""

    def __init__(self, inbox: CallbackInbox) -> None:
        self._inbox = inbox
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiosk-worker")

    def submit(self, job: Callable[[], T], done: Callable[[T | Exception], None]) -> None:
        """Run job on the worker thread; done(result or exception) runs on the flow's thread."""

        def run() -> None:
            result: T | Exception
            try:
                result = job()
            except Exception as err:
                result = err
            self._inbox.post(lambda: done(result))

        self._pool.submit(run)

    def post(self, callback: Callable[[], None]) -> None:
        """Run callback on the flow's thread."""
        self._inbox.post(callback)

    def shutdown(self) -> None:
        """Stop accepting jobs; do not wait for a running device read."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class HeartbeatPlatform(Protocol):
    """The platform calls a heartbeat needs (checkin.platform_client.PlatformClient)."""

    def heartbeat(self, report: HeartbeatReport) -> HeartbeatAck:
        """Heartbeat."""
        ...

    def get_context(self) -> KioskContext:
        """GetKioskContext."""
        ...


def device_healths(devices: Mapping[str, SelfTestPort]) -> tuple[DeviceHealth, ...]:
    """Cheap health of every device; a device whose check raises is reported as a fault."""
    lines: list[DeviceHealth] = []
    for name, device in devices.items():
        try:
            lines.append(device.health())
        except Exception as err:
            lines.append(DeviceHealth(device=name, state=DeviceState.FAULT, detail=type(err).__name__))
    return tuple(lines)


class HeartbeatSender:
    """Every `interval_s`: device health, stock and queue depth to the platform; the verdict to the flow.

    `on_health` is called on the heartbeat thread; the composition root posts it to the flow's
    thread (`worker.post(lambda: flow.health_changed(h))`).
    """

    def __init__(
        self,
        platform: HeartbeatPlatform,
        devices: Mapping[str, SelfTestPort],
        stock: StockPort,
        *,
        pending_depth: Callable[[], int],
        out_of_service: Callable[[], bool],
        on_health: Callable[[ServiceHealth], None],
        interval_s: float,
        software_version: str,
        printer_paper: Callable[[], str] | None = None,
    ) -> None:
        self._platform = platform
        self._printer_paper = printer_paper
        self._devices = devices
        self._stock = stock
        self._pending_depth = pending_depth
        self._out_of_service = out_of_service
        self._on_health = on_health
        self._interval = interval_s
        self._version = software_version
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.stock_low = False

    def beat_once(self) -> ServiceHealth:
        """Collect, send, and report one verdict (platform unreachable if a call fails)."""
        devices = device_healths(self._devices)
        try:
            stock = self._stock.level()
        except Exception as err:
            log.warning("stock level unavailable: %s", type(err).__name__)
            stock = 0
        report = HeartbeatReport(
            devices=devices,
            band_stock=stock,
            pending_check_ins=self._pending_depth(),
            out_of_service=self._out_of_service(),
            software_version=self._version,
            kiosk_time=dt.datetime.now(dt.UTC),
            printer_paper=self._printer_paper() if self._printer_paper is not None else "",
        )
        try:
            ack = self._platform.heartbeat(report)
            # One call a beat: the answer carries the context; a platform before that is asked for it.
            context = ack.context if ack.context is not None else self._platform.get_context()
        except Exception as err:
            log.warning("heartbeat failed: %s: %s", type(err).__name__, err)  # e.g. FAILED_PRECONDITION: disabled
            health = ServiceHealth(platform_reachable=False, devices=devices, band_stock=stock)
        else:
            self.stock_low = ack.stock_low
            health = ServiceHealth(platform_reachable=True, devices=devices, batch=context.batch, band_stock=stock)
        self.beats += 1
        self._on_health(health)
        return health

    def start(self) -> None:
        """Beat now and then every interval, on a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except Exception:
                log.exception("heartbeat pass failed")
            self._stop.wait(self._interval)


class EventPlatform(Protocol):
    """ReportKioskEvent."""

    def report_event(self, event: KioskEvent) -> None:
        """Send one audit event."""
        ...


class BackgroundEventReporter:
    """The AuditPort: events go to a bounded in-memory queue and are sent from a thread.

    Best effort by design: audit events never block or fail a check-in. When the platform is down
    they wait in memory (up to `capacity`, oldest dropped first, with a warning).
    """

    def __init__(self, platform: EventPlatform, *, capacity: int = 1000) -> None:
        self._platform = platform
        self._queue: queue.Queue[KioskEvent | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="audit-events", daemon=True)
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def record(self, event: KioskEvent) -> None:
        """Queue one event (never blocks)."""
        self._put(event)

    def _put(self, event: KioskEvent | None) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                    log.warning("audit event queue full: dropped the oldest event")
                except queue.Empty:
                    pass
            else:
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (within timeout) and stop."""
        self._put(None)  # the sentinel
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self._platform.report_event(event)
                self.sent += 1
            except Exception as err:
                log.warning("audit event %s not sent: %s", event.event, type(err).__name__)
