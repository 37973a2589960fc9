"""The printed check-in slip's QR code reads back from the slip's picture, whatever the code.

A handheld desk scanner reads the whole slip, text and all; OpenCV's ArUco-based QR detector stands in for it.
The codes below are ones the classic ``cv2.QRCodeDetector`` misses on a full slip (about 1 in 100 random codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from receipt_printer.driver import ReceiptPrinter
from receipt_printer.slip_layout import SlipContent, build_slip

if TYPE_CHECKING:
    from receipt_printer.simulator import PrinterSimulator


def _facts(code: str) -> SlipContent:
    return SlipContent(
        batch_code="E2E-2026-001",
        batch_name="市政道路工程评标",
        expert_name="张伟",
        id_number_masked="1101**********0010",
        kiosk_id="K1",
        slip_serial=12,
        checked_in_at="2026-12-05 10:00",
        hotel_name="国际饭店",
        room_number="1201",
        evaluation_venue="评标中心三楼301",
        evaluation_start="2026-12-06 09:00",
        band_tag_id="BAND-0001",
        card_masked="621234******1232",
        slip_code=code,
    )


@pytest.mark.parametrize("code", ["588YJEYG", "BHNNXR7E", "JHNR4EDT", "K7M2P9QX"])
def test_the_slips_qr_code_reads_back_from_the_whole_slip(sim: PrinterSimulator, code: str) -> None:
    import cv2  # noqa: PLC0415 - only the picture tests read images

    with ReceiptPrinter.open(sim.url, timeout=2.0) as printer:
        printer.print_receipt(build_slip(_facts(code)))
    slip = sim.wait_for_slips(1, timeout=10)[0]
    assert slip.complete
    assert slip.qr_payloads == [code]
    picture = np.array(slip.image.convert("RGB"))[:, :, ::-1].copy()  # OpenCV's BGR, as cv2.imread gives
    decoded, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(picture)
    assert decoded == code
