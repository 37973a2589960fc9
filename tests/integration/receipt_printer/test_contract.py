"""Receipt printer contract: what any printer must do for the kiosk, on the simulator by default.

Against a real printer (paper in, cover shut): pytest tests/integration/receipt_printer/test_contract.py
--printer socket://192.168.1.60:9100 (or /dev/ttyUSB0). It prints three short slips. Checks that need
to see the paper (the rendered text) run on the simulator only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from receipt_printer.driver import ReceiptPrinter
from receipt_printer.models import Align, QrCode, Receipt, TextLine

if TYPE_CHECKING:
    from collections.abc import Iterator

    from receipt_printer.simulator import PrinterSimulator

SLIP = Receipt(
    (
        TextLine("签到凭证 Check-in slip", Align.CENTER, bold=True, double=True),
        TextLine("酒店 Hotel: 国际饭店  房间 Room: 1201"),
        TextLine("生僻字 GB18030: 𠀀 㐀 䶵", Align.LEFT),
        QrCode("K7M2P9QX"),
    )
)


@pytest.fixture
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real printer's URL from --printer, else a fresh simulator's socket:// URL."""
    real = request.config.getoption("--printer")
    if real:
        yield str(real)
        return
    simulator: PrinterSimulator = request.getfixturevalue("sim")
    yield simulator.url


@pytest.fixture
def simulated(request: pytest.FixtureRequest) -> PrinterSimulator:
    """The simulator behind ``url``; skips against a real printer."""
    if request.config.getoption("--printer"):
        pytest.skip("needs the simulator to see the paper")
    simulator: PrinterSimulator = request.getfixturevalue("sim")
    return simulator


@pytest.fixture
def printer(url: str) -> Iterator[ReceiptPrinter]:
    with ReceiptPrinter.open(url, timeout=2.0) as opened:
        yield opened


def test_a_ready_printer_reports_online_with_paper_and_the_cover_shut(printer: ReceiptPrinter) -> None:
    status = printer.status()
    assert status.ready
    assert status.online
    assert not status.cover_open
    assert not status.paper_out


def test_status_can_be_asked_again_and_again(printer: ReceiptPrinter) -> None:
    assert all(printer.status().ready for _ in range(5))


def test_a_slip_prints_with_a_status_check_before_and_after(printer: ReceiptPrinter) -> None:
    report = printer.print_receipt(SLIP)
    assert report.before.ready
    assert report.after.ready
    assert report.bytes_sent > 100


def test_the_test_page_prints(printer: ReceiptPrinter) -> None:
    assert printer.test_page().after.ready


def test_chinese_text_and_the_qr_code_reach_the_paper(printer: ReceiptPrinter, simulated: PrinterSimulator) -> None:
    printer.print_receipt(SLIP)
    slip = simulated.wait_for_slips(1, timeout=10)[0]
    assert slip.complete
    assert slip.lines[0] == "签到凭证 Check-in slip"
    assert "房间 Room: 1201" in slip.text
    assert "𠀀 㐀 䶵" in slip.text  # four-byte GB18030 sequences
    assert slip.qr_payloads == ["K7M2P9QX"]
    assert slip.image.width == 576 + 32  # 576 dots of paper and the rendering's margins
    assert simulated.errors == []


def test_two_printers_cannot_be_confused_by_a_stale_answer(printer: ReceiptPrinter, url: str) -> None:
    # A second link to the same printer (the technician CLI while the kiosk runs) gets its own answers.
    with ReceiptPrinter.open(url, timeout=2.0) as other:
        assert other.status().ready
    assert printer.status().ready
