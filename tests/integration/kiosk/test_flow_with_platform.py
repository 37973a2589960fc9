"""The real flow on a real flow thread, with the real platform client, queue file, replayer and heartbeats.

Devices are the unit tests' fakes (the device packages have their own contract tests); the platform
is a real gRPC server on a real port that can be switched off mid-check-in.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from checkin.flow.machine import CheckInFlow, FlowPorts, FlowSettings
from checkin.flow.ports import NothingPresentedError
from checkin.flow.runtime import BackgroundEventReporter, HeartbeatSender
from checkin.flow.views import HomeView, OutOfServiceView
from checkin.flow_thread import FlowThread
from checkin.pending_queue import PendingQueue, QueueReplayer, RecordState
from checkin.platform_client import PlatformClient
from personal_data import crypto
from tests.integration.kiosk.fake_platform import FakePlatformServer, settings_for
from tests.unit.kiosk.fakes import (
    FakeBankCardReader,
    FakeDevice,
    FakeDispenser,
    FakeFaceCapture,
    FakeIdentity,
    FakeStock,
    pin_hash,
)
from tests.unit.kiosk.test_flow import signed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KEY = crypto.DataKey.from_text("kiosk-test-secret-kiosk-test-secret")


class BlockingIdCardReader:
    """Blocks up to `timeout` for a card, like the real reader's find/select polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._cards: list[Any] = []

    def place(self, card: Any) -> None:
        with self._cond:
            self._cards.append(card)
            self._cond.notify_all()

    def read_identity(self, timeout: float) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._cards), timeout):
                raise NothingPresentedError("no card")
            return self._cards.pop(0)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.01)  # polling with a deadline


class Rig:
    def __init__(self, platform: FakePlatformServer, queue_path: Path) -> None:
        self.platform = platform
        self.thread = FlowThread()
        self.client = PlatformClient(settings_for(platform.port, max_attempts=2, call_timeout_s=5.0), "K1")
        self.queue = PendingQueue(queue_path, KEY)
        self.replayer = QueueReplayer(self.queue, self.client, backoff_initial_s=0.02, backoff_max_s=0.1)
        self.audit = BackgroundEventReporter(self.client)
        self.id_card = BlockingIdCardReader()
        self.dispenser = FakeDispenser()
        self.stock = FakeStock()
        devices = {"arm": FakeDevice("arm"), "camera": FakeDevice("camera")}
        ports = FlowPorts(
            id_card=self.id_card,
            bank_card=FakeBankCardReader(),
            face=FakeFaceCapture(),
            dispenser=self.dispenser,
            platform=self.client,
            pending=self.queue,
            audit=self.audit,
            stock=self.stock,
            scheduler=self.thread,
            worker=self.thread,
            devices=devices,
        )
        settings = FlowSettings(kiosk_id="K1", staff_pin_hash=pin_hash(), device_poll_s=0.2)
        self.flow: CheckInFlow = self.thread.call_and_wait(lambda: CheckInFlow(ports, settings))
        self.heartbeat = HeartbeatSender(
            self.client,
            devices,
            self.stock,
            pending_depth=self.queue.depth,
            out_of_service=lambda: self.screen() == "out_of_service",
            on_health=lambda h: self.thread.post(lambda: self.flow.health_changed(h)),
            interval_s=0.05,
            software_version="test",
        )

    def screen(self) -> str:
        return self.flow.view.screen.value

    def do(self, fn: Callable[[], object]) -> None:
        self.thread.call_and_wait(fn)

    def close(self) -> None:
        self.heartbeat.stop()
        self.replayer.stop()
        self.audit.stop()
        self.thread.stop()
        self.client.close()
        self.queue.close()


@pytest.fixture
def rig(fake_platform: FakePlatformServer, queue_path: Path) -> Iterator[Rig]:
    r = Rig(fake_platform, queue_path)
    r.audit.start()
    yield r
    r.close()


def test_heartbeats_take_the_kiosk_out_of_service_and_back(rig: Rig, fake_platform: FakePlatformServer) -> None:
    assert rig.screen() == "out_of_service"  # no heartbeat yet
    rig.heartbeat.start()
    wait_for(lambda: rig.screen() == "home")
    home = rig.flow.view
    assert isinstance(home, HomeView)
    assert home.batch_name == "2026年第1批次"
    fake_platform.servicer.down = True
    wait_for(lambda: rig.screen() == "out_of_service")
    out = rig.flow.view
    assert isinstance(out, OutOfServiceView)
    assert out.problems == ("platform_unreachable",)
    fake_platform.servicer.down = False
    wait_for(lambda: rig.screen() == "home")
    beat = fake_platform.servicer.heartbeats[-1]
    assert {d.device for d in beat.devices} == {"arm", "camera"}
    assert beat.band_stock == 50


def test_a_beat_is_one_call_when_the_heartbeat_carries_the_context(rig: Rig, fake_platform: FakePlatformServer) -> None:
    fake_platform.servicer.context_in_heartbeat = True
    rig.heartbeat.beat_once()
    rig.heartbeat.beat_once()
    wait_for(lambda: rig.screen() == "home")
    home = rig.flow.view
    assert isinstance(home, HomeView)
    assert home.batch_name == "2026年第1批次"
    assert len(fake_platform.servicer.calls_to("Heartbeat")) == 2
    assert fake_platform.servicer.calls_to("GetKioskContext") == []


def test_a_platform_whose_heartbeat_has_no_context_is_asked_for_it_each_beat(
    rig: Rig, fake_platform: FakePlatformServer
) -> None:
    rig.heartbeat.beat_once()
    rig.heartbeat.beat_once()
    wait_for(lambda: rig.screen() == "home")
    assert len(fake_platform.servicer.calls_to("Heartbeat")) == 2
    assert len(fake_platform.servicer.calls_to("GetKioskContext")) == 2


def test_platform_lost_while_binding_hands_the_band_out_and_the_queue_delivers_it(
    rig: Rig, fake_platform: FakePlatformServer
) -> None:
    rig.heartbeat.beat_once()
    wait_for(lambda: rig.screen() == "home")
    rig.do(rig.flow.press_start)
    rig.id_card.place(FakeIdentity())
    wait_for(lambda: rig.screen() == "card_on_file")
    rig.do(rig.flow.press_use_card_on_file)
    fake_platform.servicer.fail_next["CompleteCheckIn"] = 2  # both attempts of the live call are lost
    rig.do(lambda: rig.flow.submit_signature(signed()))
    wait_for(lambda: rig.screen() == "room_pending")
    rid = fake_platform.servicer.calls_to("CompleteCheckIn")[0].request_id
    assert rig.queue.load(rid).state is RecordState.DELIVER
    assert rig.dispenser.decisions[0][1].bound is True
    rig.replayer.start()
    wait_for(lambda: rig.queue.depth() == 0)
    ids = [r.request_id for r in fake_platform.servicer.calls_to("CompleteCheckIn")]
    assert ids == [rid, rid, rid]  # the same request each time: one check-in
    assert len(fake_platform.servicer.answered) == 1


def test_band_not_taken_is_annulled_through_the_queue(rig: Rig, fake_platform: FakePlatformServer) -> None:
    rig.heartbeat.beat_once()
    wait_for(lambda: rig.screen() == "home")
    rig.replayer.start()
    rig.dispenser.behaviour = "leave"
    rig.do(rig.flow.press_start)
    rig.id_card.place(FakeIdentity())
    wait_for(lambda: rig.screen() == "card_on_file")
    rig.do(rig.flow.press_use_card_on_file)
    rig.do(lambda: rig.flow.submit_signature(signed()))
    wait_for(lambda: rig.screen() == "band_problem")
    wait_for(lambda: len(fake_platform.servicer.annulled) == 1)
    assert fake_platform.servicer.annulled[0].check_in_id == "ci-1"
    wait_for(lambda: rig.queue.depth() == 0)
    rig.do(rig.flow.press_home)
    wait_for(lambda: any(e.event == "band_problem" for e in fake_platform.servicer.events))
    assert not rig.flow.session_active
