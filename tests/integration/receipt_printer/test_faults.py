"""Each simulated printer fault, as the driver reports it (simulator only)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from device_kit.clock import ManualClock
from device_kit.faults import FaultError
from receipt_printer.driver import ReceiptPrinter
from receipt_printer.errors import CoverOpenError, PaperOutError, PrinterOfflineError
from receipt_printer.models import Receipt, TextLine

if TYPE_CHECKING:
    from receipt_printer.simulator import PrinterSimulator

ANSWERED_S = 5.0
"""Status timeout where the simulator answers: generous, as a loaded CI machine can stall a thread.

Only the offline test, where the printer is silent, waits with a short timeout.
"""

SLIP = Receipt(tuple(TextLine(f"第 {n} 行 line {n}") for n in range(1, 9)))


def test_the_simulator_names_its_faults(sim: PrinterSimulator) -> None:
    assert sim.faults == ("paper_near_end", "paper_out", "cover_open", "offline", "slow")
    with pytest.raises(FaultError, match="unknown fault 'jam'"):
        sim.inject("jam")
    with pytest.raises(FaultError, match="no parameter 'lines'"):
        sim.inject("paper_out", lines=3)


def test_paper_near_end_still_prints_and_says_so(sim: PrinterSimulator) -> None:
    sim.inject("paper_near_end")
    with ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer:
        report = printer.print_receipt(SLIP)
    assert report.after.paper_near_end
    assert report.after.ready
    assert sim.wait_for_slips(1, timeout=10)[0].complete


def test_paper_out_before_the_slip_prints_nothing(sim: PrinterSimulator) -> None:
    sim.inject("paper_out")
    with (
        ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer,
        pytest.raises(PaperOutError, match="before the slip") as caught,
    ):
        printer.print_receipt(SLIP)
    assert not caught.value.mid_slip
    assert sim.slips == []


def test_paper_running_out_mid_slip_is_reported_after_it(sim: PrinterSimulator) -> None:
    sim.inject("paper_out", after_lines=3)
    with (
        ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer,
        pytest.raises(PaperOutError, match="after the slip") as caught,
    ):
        printer.print_receipt(SLIP)
    assert caught.value.mid_slip
    slip = sim.wait_for_slips(1, timeout=10)[0]
    assert not slip.complete
    assert slip.lines == ["第 1 行 line 1", "第 2 行 line 2", "第 3 行 line 3"]
    sim.clear("paper_out")  # refilled
    with ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer:
        assert printer.print_receipt(SLIP).after.ready
    assert sim.wait_for_slips(2, timeout=10)[1].complete


def test_cover_open_prints_nothing(sim: PrinterSimulator) -> None:
    sim.inject("cover_open")
    with ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer, pytest.raises(CoverOpenError):
        printer.print_receipt(SLIP)
    assert sim.slips == []


def test_an_offline_printer_is_reported_after_the_timeout(sim: PrinterSimulator) -> None:
    sim.inject("offline")
    with ReceiptPrinter.open(sim.url, timeout=0.3) as printer, pytest.raises(PrinterOfflineError, match="0 of 4"):
        printer.status()
    assert sim.slips == []


def test_a_printer_that_is_not_there_is_offline() -> None:
    with pytest.raises(PrinterOfflineError, match="cannot open"):
        ReceiptPrinter.open("socket://127.0.0.1:1")


def test_a_slow_printer_takes_its_time_and_the_answer_after_the_slip_waits_for_it(sim: PrinterSimulator) -> None:
    sim.inject("slow", line_s=0.05)
    with ReceiptPrinter.open(sim.url, timeout=2.0, print_timeout=10) as printer:
        report = printer.print_receipt(SLIP)
    assert report.elapsed_s >= 8 * 0.05  # every line waited, and the driver waited for the last one
    assert sim.slips[0].complete


def test_a_malformed_stream_is_logged_and_the_rest_still_prints(sim: PrinterSimulator) -> None:
    with ReceiptPrinter.open(sim.url, timeout=ANSWERED_S) as printer:
        printer.print_raw(b"\x1b@before\n\x1b\x7fafter\n\x1dV\x01")
    slip = sim.wait_for_slips(1, timeout=10)[0]
    assert slip.lines == ["before", "after"]
    assert sim.errors == ["unknown command ESC 0x7f (byte 21)"]  # after the four status queries (12 bytes)


def test_stop_interrupts_a_slow_print() -> None:
    from receipt_printer.simulator import PrinterSimulator  # noqa: PLC0415

    clock = ManualClock()  # never advanced: a line takes 30 s that never pass
    sim = PrinterSimulator(clock=clock).start()
    sim.inject("slow", line_s=30.0)
    printer = ReceiptPrinter.open(sim.url, timeout=ANSWERED_S, print_timeout=60)  # status queries answered
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _print_catching(printer, errors))
    thread.start()
    clock.wait_for_sleepers(1)  # the printer is in its first slow line
    sim.stop()
    thread.join(10)
    printer.close()
    assert not thread.is_alive()
    assert clock.monotonic() == 0.0
    assert isinstance(errors[0], PrinterOfflineError)


def _print_catching(printer: ReceiptPrinter, errors: list[BaseException]) -> None:
    try:
        printer.print_receipt(SLIP)
    except BaseException as err:
        errors.append(err)
