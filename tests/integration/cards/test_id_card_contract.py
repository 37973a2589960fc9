"""ID card reader contract: what any SAM reader must do for the kiosk, simulator by default.

Against a real reader: pytest tests/integration/cards/test_id_card_contract.py --id-card-port /dev/ttyUSB0
(with a valid ID card on the reader). Tests that need to change what is on the reader run against
the simulator only.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import pytest

from id_card_reader import IdCardReader, IdentityCard, NoCardError
from personal_data import id_number as id_rules

if TYPE_CHECKING:
    from collections.abc import Iterator

    from id_card_reader.simulator import SamReaderEmulator, SamReaderSimulator


@pytest.fixture
def port_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real reader's URL from --id-card-port, else a fresh simulator's socket:// URL."""
    real = request.config.getoption("--id-card-port")
    if real:
        yield str(real)
        return
    simulator: SamReaderSimulator = request.getfixturevalue("sam_simulator")
    yield simulator.url


@pytest.fixture
def simulated(request: pytest.FixtureRequest) -> SamReaderEmulator:
    """The emulator behind port_url; skips when testing a real reader."""
    if request.config.getoption("--id-card-port"):
        pytest.skip("needs the simulator to change what is on the reader")
    emulator: SamReaderEmulator = request.getfixturevalue("sam_emulator")
    return emulator


def test_status_reports_a_working_sam(port_url: str) -> None:
    with IdCardReader.open(port_url) as reader:
        status = reader.status()
    assert status.ok
    assert status.sw3 == 0x90


def test_reads_a_valid_identity(port_url: str) -> None:
    with IdCardReader.open(port_url) as reader:
        card = reader.read_identity(timeout=5)
    assert isinstance(card, IdentityCard)
    assert id_rules.is_valid(card.id_number)
    assert card.id_number[6:14] == card.birth_date.strftime("%Y%m%d")
    assert len(card.photo_wlt) == 1024
    assert card.valid_to is None or card.valid_to > card.valid_from
    # Never the ID number in clear in a repr (logs, tracebacks).
    assert card.id_number not in repr(card)
    assert card.masked_id_number in repr(card)


def test_two_reads_give_the_same_identity(port_url: str) -> None:
    with IdCardReader.open(port_url) as reader:
        first = reader.read_identity(timeout=5)
        second = reader.read_identity(timeout=5)
    assert first == second


def test_sam_id_is_printable(port_url: str) -> None:
    with IdCardReader.open(port_url) as reader:
        sam_id = reader.sam_id()
    assert sam_id.count("-") == 3


def test_no_card_raises_no_card_error_after_the_timeout(port_url: str, simulated: SamReaderEmulator) -> None:
    simulated.remove()
    with IdCardReader.open(port_url) as reader:
        started = time.monotonic()
        with pytest.raises(NoCardError):
            reader.read_identity(timeout=0.5)
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5.0  # waited the timeout, and not for ever (loose: CI machines are loaded)


def test_card_placed_while_waiting_is_read(port_url: str, simulated: SamReaderEmulator) -> None:
    simulated.remove()
    with IdCardReader.open(port_url) as reader:
        assert reader.find_card() is False
        simulated.place(1)
        card = reader.read_identity(timeout=3)
    assert card.id_number == simulated.identities[1].id_number


def test_expiry_follows_the_validity_period(port_url: str, simulated: SamReaderEmulator) -> None:
    simulated.place(3)  # valid to 2023-01-10
    with IdCardReader.open(port_url) as reader:
        card = reader.read_identity(timeout=3)
    assert card.valid_to == dt.date(2023, 1, 10)
    assert not card.is_expired(dt.date(2023, 1, 10))
    assert card.is_expired(dt.date(2023, 1, 11))
