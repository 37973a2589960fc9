"""The printed check-in slip's QR code reads back from the whole slip's picture, with codes a weaker reader misses.

A handheld desk scanner reads the whole slip, text and all; OpenCV's ArUco-based QR detector stands in for it.
The codes below are ones the classic ``cv2.QRCodeDetector`` misses on a full slip (about 1 in 100 random codes).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pytest

from receipt_printer.driver import ReceiptPrinter
from receipt_printer.slip_layout import build_slip
from tests.support.slips import EXAMPLE_SLIP

if TYPE_CHECKING:
    from receipt_printer.simulator import PrinterSimulator


@pytest.mark.parametrize("code", ["588YJEYG", "BHNNXR7E", "JHNR4EDT", "K7M2P9QX"])
def test_the_slips_qr_code_reads_back_from_the_whole_slip(sim: PrinterSimulator, code: str) -> None:
    import cv2  # noqa: PLC0415 - only the picture tests read images

    with ReceiptPrinter.open(sim.url, timeout=2.0) as printer:
        printer.print_receipt(build_slip(dataclasses.replace(EXAMPLE_SLIP, slip_code=code)))
    slip = sim.wait_for_slips(1, timeout=10)[0]
    assert slip.complete
    assert slip.qr_payloads == [code]
    picture = np.array(slip.image.convert("RGB"))[:, :, ::-1].copy()  # OpenCV's BGR, as cv2.imread gives
    decoded, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(picture)
    assert decoded == code
