"""Staff mode on its own: the declared state guards, the PIN lockout and the menu actions, over a fake host."""

from __future__ import annotations

from typing import Any

import pytest

from checkin.flow.machine import FlowPorts
from checkin.flow.staff import StaffMode, StaffSettings, StaffState
from tests.unit.kiosk.fakes import (
    PIN,
    FakeAudit,
    FakeBankCardReader,
    FakeDevice,
    FakeDispenser,
    FakeFaceCapture,
    FakeIdCardReader,
    FakePending,
    FakePlatform,
    FakeScheduler,
    FakeStock,
    FakeWorker,
    pin_hash,
)


class Host:
    """A StaffHost that records what staff mode asked of the flow."""

    def __init__(self) -> None:
        self.state: StaffState | None = StaffState.PIN
        self.clock = FakeScheduler()
        self.worker = FakeWorker()
        self.stock = FakeStock(level=3)
        platform = FakePlatform()
        self.pending = FakePending(platform.log)
        self.ports = FlowPorts(
            id_card=FakeIdCardReader(),
            bank_card=FakeBankCardReader(),
            face=FakeFaceCapture(),
            dispenser=FakeDispenser(),
            platform=platform,
            pending=self.pending,
            audit=FakeAudit(),
            stock=self.stock,
            scheduler=self.clock,
            worker=self.worker,
            devices={"arm": FakeDevice("arm"), "camera": FakeDevice("camera", ok=False)},
        )
        self.events: list[tuple[str, str, str]] = []
        self.errors: list[tuple[str, dict[str, str]]] = []
        self.published = 0
        self.accepted = 0
        self.stock_levels: list[int] = []

    def staff_state(self) -> StaffState | None:
        return self.state

    def staff_ports(self) -> Any:
        return self.ports

    def record(self, event: str, outcome: str, *, detail: str = "") -> None:
        self.events.append((event, outcome, detail))

    def publish(self) -> None:
        self.published += 1

    def set_error(self, key: str, **params: str) -> None:
        self.errors.append((key, params))

    def pin_accepted(self) -> bool:
        self.accepted += 1
        self.state = StaffState.MENU
        return True

    def stock_refilled(self, level: int) -> None:
        self.stock_levels.append(level)


def staff(host: Host) -> StaffMode:
    return StaffMode(
        host, StaffSettings(staff_pin_hash=pin_hash(), max_pin_failures=3, pin_lockout_s=60, max_refill=500)
    )


@pytest.mark.parametrize(
    ("action", "state"),
    [
        (lambda m: m.submit_pin(PIN), StaffState.MENU),
        (lambda m: m.submit_pin(PIN), None),
        (lambda m: m.self_test(), StaffState.PIN),
        (lambda m: m.refill("10"), StaffState.PIN),
        (lambda m: m.toggle_out_of_service(), None),
        (lambda m: m.clear_queued("r1"), StaffState.PIN),
        (lambda m: m.test_print(), None),
        (lambda m: m.paper_refilled(), StaffState.PIN),
    ],
)
def test_every_action_does_nothing_outside_the_state_it_declares(action: Any, state: StaffState | None) -> None:
    host = Host()
    host.state = state
    mode = staff(host)
    action(mode)
    assert (host.events, host.errors, host.published, host.accepted) == ([], [], 0, 0)
    assert not host.worker.queue
    assert host.stock.value == 3
    assert not mode.forced_out_of_service


def test_wrong_pins_lock_the_pad_then_the_right_one_is_refused_until_the_lockout_ends() -> None:
    host = Host()
    mode = staff(host)
    for _ in range(3):
        mode.submit_pin("000000")
    assert [e[1] for e in host.events] == ["wrong_pin"] * 3
    assert mode.pin_view({}).locked_seconds == 60
    mode.submit_pin(PIN)
    assert host.accepted == 0
    host.clock.advance(61)
    assert mode.pin_view({}).locked_seconds == 0
    mode.submit_pin(PIN)
    assert host.accepted == 1
    assert host.events[-1][:2] == ("staff_login", "ok")


def test_self_test_runs_on_the_worker_and_shows_each_device() -> None:
    host = Host()
    host.state = StaffState.MENU
    mode = staff(host)
    mode.self_test()
    assert mode.menu_view({}).self_test_running
    mode.self_test()  # a second press while one runs does nothing
    assert len(host.worker.queue) == 1
    host.worker.settle()
    view = mode.menu_view({})
    assert not view.self_test_running
    assert [(line.device, line.ok) for line in view.self_test] == [("arm", True), ("camera", False)]
    mode.menu_opened()
    assert mode.menu_view({}).self_test == ()


def test_refill_checks_the_count_and_reports_the_new_level() -> None:
    host = Host()
    host.state = StaffState.MENU
    mode = staff(host)
    mode.refill("0")
    mode.refill("abc")
    assert [e[0] for e in host.errors] == ["error.refill_count_invalid"] * 2
    mode.refill(" 20 ")
    assert host.stock_levels == [23]
    assert host.events == [("stock_refill", "ok", "added=20 level=23")]


def test_out_of_service_toggles_and_is_recorded() -> None:
    host = Host()
    host.state = StaffState.MENU
    mode = staff(host)
    mode.toggle_out_of_service()
    assert mode.forced_out_of_service
    assert mode.menu_view({}).forced_out_of_service
    mode.toggle_out_of_service()
    assert [e[1] for e in host.events] == ["forced", "released"]


def test_only_refused_queued_records_are_cleared() -> None:
    host = Host()
    host.state = StaffState.MENU
    host.pending.records = {"r1": "refused", "r2": "deliver"}
    mode = staff(host)
    mode.clear_queued("r2")
    mode.clear_queued("r1")
    assert host.pending.records == {"r2": "deliver"}
    assert host.events == [("queue_record_cleared", "ok", "request_id=r1")]
