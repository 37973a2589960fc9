"""Fixtures for the receipt printer: a simulator per test, or the real printer named by --printer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from receipt_printer.simulator import PrinterSimulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[PrinterSimulator]:
    """A started printer simulator with a control channel, writing slip PNGs under tmp_path."""
    with PrinterSimulator(control_port=0, output_dir=tmp_path) as simulator:
        yield simulator
