"""The check-in slip in the flow: printed while the band is taken, and a printer fault never blocks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from checkin.flow.models import Completed
from checkin.flow.printing import PaperState, SlipFacts, SlipOutcome
from checkin.flow.views import DoneView, StaffMenuView
from checkin.ui.wording import spoken_line
from tests.unit.kiosk.fakes import PIN, Kiosk, completed, make_kiosk, platform_down
from tests.unit.kiosk.test_flow import signed, to_signature

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class FakePrinter:
    """Keeps the slips asked for; the test decides when and how each print ends."""

    installed: bool = True
    slips: list[SlipFacts] = field(default_factory=list)
    pending: list[Callable[[SlipOutcome], None]] = field(default_factory=list)
    state: PaperState = PaperState.OK
    refreshed: int = 0

    def print_slip(self, facts: SlipFacts, done: Callable[[SlipOutcome], None]) -> None:
        self.slips.append(facts)
        self.pending.append(done)

    def test_print(self, done: Callable[[SlipOutcome], None]) -> None:
        self.pending.append(done)

    def paper(self) -> PaperState:
        return self.state

    def refresh(self) -> PaperState:
        self.refreshed += 1
        return self.state

    def finish(self, outcome: SlipOutcome) -> None:
        self.pending.pop(0)(outcome)


def done_view(k: Kiosk) -> DoneView:
    view = k.flow.view
    assert isinstance(view, DoneView)
    return view


def staff_view(k: Kiosk) -> StaffMenuView:
    view = k.flow.view
    assert isinstance(view, StaffMenuView)
    return view


def with_printer(printer: FakePrinter) -> Kiosk:
    k = make_kiosk()
    k.flow._ports = dataclasses.replace(k.flow._ports, printer=printer)
    info = completed().check_in
    k.platform.complete_script.append(
        Completed(
            dataclasses.replace(
                info,
                batch_code="B2026-001",
                id_number_masked="1101**********002X",
                uwb_tag_id="204C",
                slip_code="K7M2P9QX",
                slip_serial=42,
                kiosk_id="K1",
            )
        )
    )
    return k


def to_done(k: Kiosk) -> None:
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "done"


def test_the_slip_starts_printing_while_the_band_is_in_the_pickup_slot() -> None:
    printer = FakePrinter()
    k = with_printer(printer)
    to_signature(k)
    k.flow.submit_signature(signed())
    # Run until the band waits at the pickup slot: the slip must already be on its way.
    k.worker.step_until(lambda: bool(printer.slips))
    assert k.screen == "dispensing"
    facts = printer.slips[0]
    assert facts.slip_code == "K7M2P9QX"
    assert (facts.kiosk_id, facts.slip_serial, facts.band_tag_id) == ("K1", 42, "204C")
    assert facts.id_number_masked == "1101**********002X"
    assert facts.card_masked == "622848******1234"  # the card on file, masked: never a full number
    assert (facts.hotel_name, facts.room_number) == ("交易中心宾馆", "1208")
    assert facts.batch_name == "2026年第1批次 市政工程评标"
    assert facts.evaluation_start == "2026-03-09 09:30"
    k.settle()
    assert k.screen == "done"
    assert done_view(k).slip == "printing"
    printer.finish(SlipOutcome.PRINTED)
    k.settle()
    assert done_view(k).slip == "printed"
    assert ("slip", "printed") in [(e.event, e.outcome) for e in k.audit.events]


@pytest.mark.parametrize("outcome", [SlipOutcome.PAPER_OUT, SlipOutcome.COVER_OPEN, SlipOutcome.OFFLINE])
def test_a_printer_fault_sends_the_expert_to_the_desk_on_screen_and_by_voice(outcome: SlipOutcome) -> None:
    printer = FakePrinter()
    k = with_printer(printer)
    to_done(k)
    assert "服务台" not in spoken_line(k.flow.view)
    printer.finish(outcome)
    k.settle()
    assert k.screen == "done"  # the check-in stands
    assert done_view(k).slip == "failed"
    assert spoken_line(k.flow.view).endswith("签到凭证未能打印，请到服务台领取")
    assert ("slip", outcome.value) in [(e.event, e.outcome) for e in k.audit.events]


def test_a_result_after_the_expert_left_is_only_audited() -> None:
    printer = FakePrinter()
    k = with_printer(printer)
    to_done(k)
    k.clock.advance(20)
    assert k.screen == "home"
    printer.finish(SlipOutcome.PAPER_OUT)
    k.settle()
    assert k.screen == "home"
    assert ("slip", "paper_out") in [(e.event, e.outcome) for e in k.audit.events]


def test_without_a_printer_nothing_is_printed_or_shown() -> None:
    k = make_kiosk()
    to_done(k)
    assert done_view(k).slip == ""


def test_no_slip_when_the_platform_did_not_answer() -> None:
    printer = FakePrinter()
    k = make_kiosk()
    k.flow._ports = dataclasses.replace(k.flow._ports, printer=printer)
    k.platform.complete_script.append(platform_down())
    to_signature(k)
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "room_pending"
    assert printer.slips == []


def test_staff_test_print_and_paper_refilled() -> None:
    printer = FakePrinter(state=PaperState.OUT)
    k = with_printer(printer)
    k.flow.staff_gesture()
    k.flow.submit_pin(PIN)
    assert k.screen == "staff_menu"
    assert staff_view(k).printer_installed
    assert staff_view(k).printer_paper == "out"
    k.flow.staff_test_print()
    assert staff_view(k).test_print == "printing"
    printer.finish(SlipOutcome.PAPER_OUT)
    k.settle()
    assert staff_view(k).test_print == "paper_out"
    printer.state = PaperState.OK
    k.flow.staff_paper_refilled()
    k.settle()
    assert printer.refreshed == 1
    assert staff_view(k).printer_paper == "ok"
    assert [(e.event, e.outcome) for e in k.audit.events][-2:] == [
        ("printer_test", "paper_out"),
        ("printer_paper_refilled", "ok"),
    ]
