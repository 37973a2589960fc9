"""Fakes for every port of the check-in flow: in-memory, scriptable, and recording what they were asked.

Each fake names the typing.Protocol port it stands for as its base class, so mypy checks every
method's signature against the port and a fake that drifts from its port fails type checking. The
two data records (a read ID card, a read bank card) are dataclasses, checked structurally by
_records_match_their_protocols below.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from checkin.config import hash_pin
from checkin.flow.machine import CheckInFlow, FlowPorts, FlowSettings
from checkin.flow.models import (
    BatchInfo,
    CardOnFile,
    CheckInInfo,
    Completed,
    DeviceHealth,
    DeviceState,
    FaceFrames,
    Identified,
    QueuedRecordInfo,
    Refusal,
    RefusalCode,
    Refused,
    ServiceHealth,
)
from checkin.flow.ports import (
    AuditPort,
    BankCardData,
    BankCardPort,
    BindDecision,
    Cancellable,
    DeviceFaultError,
    DispenseOutcome,
    DispensePhase,
    DispenseReport,
    DispenserPort,
    FaceCapturePort,
    IdCardPort,
    IdentityCard,
    InvalidEntryError,
    NothingPresentedError,
    PendingStore,
    PlatformPort,
    PlatformUnavailableError,
    Scheduler,
    SelfTestPort,
    StockPort,
    UnreadableError,
    Worker,
)
from checkin.flow.views import View
from personal_data import bank_card

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.flow.models import AnnulReason, CompleteRequest, IdentifyRequest, KioskEvent
    from checkin.flow.ports import BandFetchPort

# A valid GB 11643 ID number (check digit computed) and a Luhn-valid UnionPay test PAN.
ID_NUMBER = "11010519491231002X"
PAN = "6212345678901232"
PIN = "246810"

_pin_hash_cache: list[str] = []


def pin_hash() -> str:
    if not _pin_hash_cache:
        _pin_hash_cache.append(hash_pin(PIN))
    return _pin_hash_cache[0]


class FakeScheduler(Scheduler):
    """Manual clock: advance() runs due callbacks in time order, including ones they schedule."""

    def __init__(self) -> None:
        self.now_value = dt.datetime(2026, 3, 9, 8, 0, tzinfo=dt.UTC)
        self._heap: list[tuple[dt.datetime, int, _Timer]] = []
        self._seq = itertools.count()

    def now(self) -> dt.datetime:
        return self.now_value

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        heapq.heappush(self._heap, (self.now_value + dt.timedelta(seconds=delay), next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now_value + dt.timedelta(seconds=seconds)
        while self._heap and self._heap[0][0] <= end:
            when, _, timer = heapq.heappop(self._heap)
            self.now_value = when
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
        self.now_value = end

    def pending(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)


@dataclass
class _Timer(Cancellable):
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeWorker(Worker):
    """Runs submitted jobs only when the test says so, in order, on the test's thread."""

    def __init__(self) -> None:
        self.queue: deque[Callable[[], None]] = deque()
        self.jobs_run = 0

    def submit(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        def run() -> None:
            try:
                result = job()
            except Exception as err:
                result = err
            self.jobs_run += 1
            # Like the real worker: the result reaches the flow after whatever the job posted meanwhile.
            self.queue.append(lambda: done(result))

        self.queue.append(run)

    def post(self, callback: Callable[[], None]) -> None:
        self.queue.append(callback)

    def step_until(self, done: Callable[[], bool], limit: int = 50) -> None:
        """Run queued items one by one until done() holds (leaving the rest queued)."""
        for _ in range(limit):
            if done():
                return
            if not self.queue:
                raise AssertionError("nothing left to run")
            self.queue.popleft()()
        raise AssertionError("condition not reached")

    def settle(self, limit: int = 200) -> None:
        """Run jobs until none is left, or until only device reads that find nothing keep coming."""
        idle_reads = 0
        for _ in range(limit):
            if not self.queue:
                return
            before = _idle_polls[0]
            self.queue.popleft()()
            if _idle_polls[0] != before:
                # Scripts are consumed in order, so once a read finds nothing the flow is waiting.
                idle_reads += 1
                if idle_reads >= 3:
                    return
        raise AssertionError("the flow kept submitting jobs")


# Reads that found nothing, so FakeWorker.settle can tell idle polling from progress.
_idle_polls = [0]


def nothing() -> NothingPresentedError:
    _idle_polls[0] += 1
    return NothingPresentedError("nothing presented")


@dataclass
class FakeIdentity:
    id_number: str = ID_NUMBER
    name: str = "张三"
    sex_code: str = "1"
    nation_code: str = "01"
    birth_date: dt.date = dt.date(1949, 12, 31)
    address: str = "北京市西城区某街1号"
    issuing_authority: str = "北京市公安局西城分局"
    valid_from: dt.date = dt.date(2020, 1, 1)
    valid_to: dt.date | None = dt.date(2040, 1, 1)

    def is_expired(self, today: dt.date) -> bool:
        return self.valid_to is not None and self.valid_to < today


class FakeIdCardReader(IdCardPort):
    def __init__(self) -> None:
        self.script: deque[Any] = deque()

    def read_identity(self, timeout: float) -> Any:
        if not self.script:
            raise nothing()
        item = self.script.popleft()
        if isinstance(item, Exception):
            raise item
        return item


@dataclass
class FakeCardData:
    pan: str
    source: str = "chip"
    expiry_yymm: str | None = "3012"
    holder_name: str | None = None


class FakeBankCardReader(BankCardPort):
    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.reads = 0

    def read_card(self, timeout: float) -> Any:
        self.reads += 1
        if not self.script:
            raise nothing()
        item = self.script.popleft()
        if isinstance(item, Exception):
            raise item
        return item

    def parse_swipe(self, text: str) -> FakeCardData:
        # Track 2: ;PAN=YYMM...?
        if not (text.startswith(";") and "=" in text):
            raise UnreadableError("not track data")
        pan = text[1 : text.index("=")]
        if not bank_card.luhn_ok(pan):
            raise InvalidEntryError("bad check digit")
        return FakeCardData(pan=pan, source="swipe", expiry_yymm=text[text.index("=") + 1 :][:4])


def good_faces() -> FaceFrames:
    return FaceFrames(images_jpeg=(b"\xff\xd8jpeg-1", b"\xff\xd8jpeg-2"), quality=0.9, liveness_passed=True)


class FakeFaceCapture(FaceCapturePort):
    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.hints: list[str] = ["too_far", "blink_please", "ok"]
        self.captures = 0
        self.cleared = 0
        self.cancelled = 0

    def capture(self, on_hint: Callable[[str], None]) -> FaceFrames:
        self.captures += 1
        for hint in self.hints:
            on_hint(hint)
        item = self.script.popleft() if self.script else good_faces()
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled += 1

    def clear(self) -> None:
        self.cleared += 1


@dataclass
class FakeDispenser(DispenserPort):
    """Plays the arm: 'take' hands out, 'leave' is not taken, 'unreadable' rejects before binding, 'raise'."""

    uids: deque[str] = field(default_factory=lambda: deque(["04A1B2C3D4E5F0", "04A1B2C3D4E5F1", "04A1B2C3D4E5F2"]))
    behaviour: str = "take"
    decisions: list[tuple[str, BindDecision]] = field(default_factory=list)
    phases: list[DispensePhase] = field(default_factory=list)

    def dispense(
        self, bind: Callable[[str], BindDecision], on_progress: Callable[[DispensePhase], None]
    ) -> DispenseReport:
        on_progress(DispensePhase.PREPARING)
        uid = self.uids.popleft()
        if self.behaviour == "unreadable":
            return DispenseReport(DispenseOutcome.REJECTED, uid=None, reason="UNREADABLE_UID")
        decision = bind(uid)
        self.decisions.append((uid, decision))
        if not decision.bound:
            return DispenseReport(DispenseOutcome.REJECTED, uid=uid, reason="BIND_REFUSED")
        if self.behaviour == "raise":
            raise DeviceFaultError("E40 gripper fault")
        on_progress(DispensePhase.AT_PICKUP)
        if self.behaviour == "leave":
            return DispenseReport(DispenseOutcome.NOT_TAKEN, uid=uid, reason="NOT_TAKEN")
        return DispenseReport(DispenseOutcome.HANDED_OUT, uid=uid)


def identified(card_on_file: bool = False) -> Identified:
    return Identified(
        identification_token="tok-123",
        expert_name="张三",
        id_number_masked="1101**********002X",
        organisation="某设计院",
        card_on_file=CardOnFile(pan_masked="622848******1234", bank_name="中国农业银行") if card_on_file else None,
        face_attempts_left=3,
    )


def completed() -> Completed:
    return Completed(
        CheckInInfo(
            check_in_id="ci-1",
            hotel_name="交易中心宾馆",
            room_number="1208",
            evaluation_venue="第3评标室",
            evaluation_start=dt.datetime(2026, 3, 9, 1, 30, tzinfo=dt.UTC),
        )
    )


def refused(code: RefusalCode, **params: str) -> Refused:
    return Refused(Refusal(code, params=params, message_zh="平台说明", message_en="platform says"))


class FakePlatform(PlatformPort):
    def __init__(self) -> None:
        self.identify_script: deque[Any] = deque()
        self.complete_script: deque[Any] = deque()
        self.identify_requests: list[IdentifyRequest] = []
        self.complete_requests: list[CompleteRequest] = []
        self.log: list[str] = []  # shared order log with FakePending

    def identify(self, request: IdentifyRequest) -> Any:
        self.identify_requests.append(request)
        item = self.identify_script.popleft() if self.identify_script else identified()
        if isinstance(item, Exception):
            raise item
        return item

    def complete_check_in(self, request: CompleteRequest) -> Any:
        self.complete_requests.append(request)
        self.log.append(f"complete {request.request_id}")
        item = self.complete_script.popleft() if self.complete_script else completed()
        if isinstance(item, Exception):
            raise item
        return item


class FakePending(PendingStore):
    def __init__(self, log: list[str]) -> None:
        self.records: dict[str, str] = {}
        self.log = log

    def write_ahead(self, request: CompleteRequest) -> None:
        self.log.append(f"write_ahead {request.request_id}")
        self.records[request.request_id] = "in_flight"

    def acknowledged(self, request_id: str, check_in_id: str) -> None:
        self.records[request_id] = f"acknowledged {check_in_id}"

    def forget(self, request_id: str) -> None:
        self.records.pop(request_id)

    def deliver_later(self, request_id: str) -> None:
        self.records[request_id] = "deliver"

    def annul_later(self, request_id: str, reason: AnnulReason, detail: str) -> None:
        self.records[request_id] = f"annul {reason.value}"

    def depth(self) -> int:
        return len(self.records)

    def staff_list(self) -> tuple[QueuedRecordInfo, ...]:
        return tuple(QueuedRecordInfo(rid, state, "04A1B2C3", "", "", 0, "") for rid, state in self.records.items())

    def staff_clear(self, request_id: str) -> bool:
        if self.records.get(request_id) != "refused":
            return False
        del self.records[request_id]
        self.log.append(f"staff_clear {request_id}")
        return True


class FakeAudit(AuditPort):
    def __init__(self) -> None:
        self.events: list[KioskEvent] = []

    def record(self, event: KioskEvent) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.event for e in self.events]


class FakeStock(StockPort):
    def __init__(self, level: int = 50) -> None:
        self.value = level

    def level(self) -> int:
        return self.value

    def refill(self, added: int) -> int:
        self.value += added
        return self.value


@dataclass
class FakeDevice(SelfTestPort):
    name: str
    ok: bool = True

    def health(self) -> DeviceHealth:
        return DeviceHealth(self.name, DeviceState.OK if self.ok else DeviceState.FAULT)

    def self_test(self) -> DeviceHealth:
        if not self.ok:
            raise DeviceFaultError("not answering")
        return DeviceHealth(self.name, DeviceState.OK, "self-test passed")


BATCH = BatchInfo(
    code="B2026-001",
    name="2026年第1批次 市政工程评标",
    venue="第3评标室",
    hotel_name="交易中心宾馆",
    evaluation_start=dt.datetime(2026, 3, 9, 1, 30, tzinfo=dt.UTC),
)


def healthy() -> ServiceHealth:
    return ServiceHealth(platform_reachable=True, batch=BATCH, band_stock=50)


def _records_match_their_protocols(identity: FakeIdentity, card: FakeCardData) -> tuple[IdentityCard, BankCardData]:
    """Never called: mypy checks here that the fake records have every member of their protocols."""
    return identity, card


V = TypeVar("V", bound=View)


@dataclass
class Kiosk:
    """A flow with all its fakes, and the views it published."""

    flow: CheckInFlow
    id_card: FakeIdCardReader
    bank: FakeBankCardReader
    face: FakeFaceCapture
    dispenser: FakeDispenser
    platform: FakePlatform
    pending: FakePending
    audit: FakeAudit
    stock: FakeStock
    clock: FakeScheduler
    worker: FakeWorker
    devices: dict[str, FakeDevice]
    views: list[Any]

    @property
    def screen(self) -> str:
        return self.flow.view.screen.value

    def shown(self, kind: type[V]) -> V:
        """The view on screen, checked to be a `kind` (so its own fields are read typed)."""
        view = self.flow.view
        assert isinstance(view, kind), f"{type(view).__name__} on screen, not {kind.__name__}"
        return view

    def settle(self) -> None:
        self.worker.settle()


def make_kiosk(
    *, health: ServiceHealth | None = None, band_fetch: BandFetchPort | None = None, **settings: Any
) -> Kiosk:
    platform = FakePlatform()
    devices = {"arm": FakeDevice("arm"), "camera": FakeDevice("camera")}
    k = Kiosk(
        flow=None,  # type: ignore[arg-type]
        id_card=FakeIdCardReader(),
        bank=FakeBankCardReader(),
        face=FakeFaceCapture(),
        dispenser=FakeDispenser(),
        platform=platform,
        pending=FakePending(platform.log),
        audit=FakeAudit(),
        stock=FakeStock(),
        clock=FakeScheduler(),
        worker=FakeWorker(),
        devices=devices,
        views=[],
    )
    ports = FlowPorts(
        id_card=k.id_card,
        bank_card=k.bank,
        face=k.face,
        dispenser=k.dispenser,
        platform=k.platform,
        pending=k.pending,
        audit=k.audit,
        stock=k.stock,
        scheduler=k.clock,
        worker=k.worker,
        devices=devices,
        band_fetch=band_fetch,
    )
    flow_settings = FlowSettings(kiosk_id="K1", staff_pin_hash=pin_hash(), **settings)
    k.flow = CheckInFlow(ports, flow_settings, health=health if health is not None else healthy())

    class Recorder:
        def on_view(self, view: Any) -> None:
            k.views.append(view)

    k.flow.add_listener(Recorder())
    return k


def platform_down() -> PlatformUnavailableError:
    return PlatformUnavailableError("UNAVAILABLE after 4 attempts")
