"""Each printer fault end to end on the kiosk side: what printing the slip reports (the kiosk's behaviour)
and what the heartbeat makes the real platform show, with the printer simulator on a real socket."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from expertcheckin.v1 import organiser_pb2

from checkin.flow.models import DeviceState, ServiceHealth
from checkin.flow.printing import PaperState, SlipOutcome
from checkin.flow.runtime import HeartbeatSender
from checkin.platform_client import PlatformClient
from checkin.slip_printer import ReceiptPrinterAdapter
from receipt_printer.simulator import PrinterSimulator
from tests.integration.kiosk.fake_platform import settings_for
from tests.support.platform import Running, start, stop
from tests.support.slips import EXAMPLE_SLIP

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Stock:
    def level(self) -> int:
        return 50

    def refill(self, added: int) -> int:
        return 50 + added


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Running]:
    running = start(f"sqlite:///{tmp_path / 'platform.db'}")
    yield running
    stop(running)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[PrinterSimulator]:
    with PrinterSimulator(output_dir=tmp_path) as simulator:
        yield simulator


@pytest.fixture
def printer(sim: PrinterSimulator) -> Iterator[ReceiptPrinterAdapter]:
    # A generous status timeout: on a loaded CI machine an answer took over 0.3 s once, and the slip
    # came out "offline" after the refill. Only the offline cases wait it out.
    adapter = ReceiptPrinterAdapter(sim.url, kiosk_id="K1", timeout_s=2.0, print_timeout_s=10)
    yield adapter
    adapter.close()


def print_and_wait(printer: ReceiptPrinterAdapter) -> SlipOutcome:
    outcomes: list[SlipOutcome] = []
    finished = threading.Event()

    def done(outcome: SlipOutcome) -> None:
        outcomes.append(outcome)
        finished.set()

    printer.print_slip(EXAMPLE_SLIP, done)
    assert finished.wait(30), "the print job never ended"
    return outcomes[0]


def platform_shows(platform: Running, printer: ReceiptPrinterAdapter) -> tuple[str, str]:
    """One heartbeat from the kiosk's sender; what the organiser's statistics then say about K1."""
    client = PlatformClient(settings_for(platform.port), "K1")
    healths: list[ServiceHealth] = []
    try:
        sender = HeartbeatSender(
            client,
            {"receipt_printer": printer},
            Stock(),
            pending_depth=lambda: 0,
            out_of_service=lambda: False,
            on_health=healths.append,
            interval_s=5.0,
            software_version="test",
            printer_paper=lambda: printer.paper().value,
        )
        health = sender.beat_once()
    finally:
        client.close()
    # Whatever the printer says, it never takes the kiosk out of service.
    assert "receipt_printer" not in " ".join(health.problems())
    assert all(d.state in {DeviceState.OK, DeviceState.DEGRADED} for d in health.devices)
    stats = platform.organiser.GetBatchStatistics(
        organiser_pb2.GetBatchStatisticsRequest(code=platform.seeded.batch_code), metadata=platform.auth
    )
    k1 = next(k for k in stats.kiosks if k.kiosk_id == "K1")
    return k1.printer_paper, health.devices[0].detail


@pytest.mark.parametrize(
    ("fault", "outcome", "paper", "detail"),
    [
        (None, SlipOutcome.PRINTED, "ok", ""),
        ("paper_near_end", SlipOutcome.PRINTED, "near_end", "paper_near_end"),
        ("paper_out", SlipOutcome.PAPER_OUT, "out", "paper_out"),
        ("cover_open", SlipOutcome.COVER_OPEN, "ok", "cover_open"),
        ("offline", SlipOutcome.OFFLINE, "", "offline"),
        ("slow", SlipOutcome.PRINTED, "ok", ""),
    ],
)
def test_each_fault_what_the_kiosk_gets_and_what_the_platform_shows(
    platform: Running,
    sim: PrinterSimulator,
    printer: ReceiptPrinterAdapter,
    fault: str | None,
    outcome: SlipOutcome,
    paper: str,
    detail: str,
) -> None:
    if fault == "slow":
        sim.inject("slow", line_s=0.02)
    elif fault is not None:
        sim.inject(fault)
    assert print_and_wait(printer) is outcome
    assert platform_shows(platform, printer) == (paper, detail)
    slips = sim.slips
    assert (len(slips) == 1 and slips[0].complete) is outcome.ok


def test_paper_running_out_mid_slip_then_refilled(
    platform: Running, sim: PrinterSimulator, printer: ReceiptPrinterAdapter
) -> None:
    sim.inject("paper_out", after_lines=4)
    assert print_and_wait(printer) is SlipOutcome.PAPER_OUT
    assert not sim.wait_for_slips(1, timeout=10)[0].complete
    assert platform_shows(platform, printer)[0] == "out"
    sim.clear("paper_out")  # staff put in a new roll and press 已换纸 / paper refilled
    assert printer.refresh() is PaperState.OK
    assert platform_shows(platform, printer)[0] == "ok"
    assert print_and_wait(printer) is SlipOutcome.PRINTED


def test_a_printer_that_comes_back_is_used_again(sim: PrinterSimulator, printer: ReceiptPrinterAdapter) -> None:
    sim.inject("offline")
    assert print_and_wait(printer) is SlipOutcome.OFFLINE
    sim.clear()
    assert print_and_wait(printer) is SlipOutcome.PRINTED
