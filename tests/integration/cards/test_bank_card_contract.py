"""Bank card reader through pyscard → the real pcscd → vpcd → the project's virtual cards.

Against a real reader: pytest tests/integration/cards/test_bank_card_contract.py --bank-reader "NAME"
with a bank card inserted; the virtual-card tests are skipped then.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from bank_card_reader import (
    BankCardReader,
    CardUnreadableError,
    NoCardPresentError,
    ReaderUnavailableError,
)
from bank_card_reader.simulator import ChainingCard, DeadCard, OtherLayoutCard, UnionPayDebitCard
from pcsc import PcscContext
from pcsc.errors import WaitCancelledError
from personal_data import bank_card as pan_rules

if TYPE_CHECKING:
    from pcsc import VirtualCardSlot

pytestmark = pytest.mark.pcsc


@pytest.fixture
def virtual(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--bank-reader"):
        pytest.skip("needs virtual cards")


def test_real_or_default_card_reads_a_luhn_valid_pan(request: pytest.FixtureRequest) -> None:
    name = request.config.getoption("--bank-reader")
    if name is None:
        slot: VirtualCardSlot = request.getfixturevalue("bank_slot")
        name = request.getfixturevalue("bank_reader_name")
        slot.insert(UnionPayDebitCard(), wait=True)
    data = BankCardReader(str(name)).read_card(timeout=10)
    assert pan_rules.luhn_ok(data.pan)
    assert data.source in ("chip", "contactless")
    assert data.pan not in repr(data)
    assert data.masked == data.pan[:6] + "*" * (len(data.pan) - 10) + data.pan[-4:]


@pytest.mark.usefixtures("virtual")
@pytest.mark.parametrize("contactless", [False, True])
def test_unionpay_debit_card(bank_slot: VirtualCardSlot, bank_reader_name: str, contactless: bool) -> None:
    card = UnionPayDebitCard("6212345678901232", expiry_yymm="3012", holder_name="LI/XIUYING", contactless=contactless)
    bank_slot.insert(card, wait=True)
    data = BankCardReader(bank_reader_name).read_card(timeout=10)
    assert (data.pan, data.expiry_yymm, data.holder_name) == ("6212345678901232", "3012", "LI/XIUYING")
    assert data.aid == "A000000333010101"
    assert data.source == ("contactless" if contactless else "chip")
    # The card checked our GPO: a wrong PDOL length would have been refused with 67 00.
    assert bytes.fromhex("80A80000") in card.log


@pytest.mark.usefixtures("virtual")
def test_card_with_another_layout(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    card = OtherLayoutCard("4761739001010010", expiry_yymm="2912")
    bank_slot.insert(card, wait=True)
    data = BankCardReader(bank_reader_name).read_card(timeout=10)
    assert (data.pan, data.expiry_yymm, data.holder_name, data.aid) == (
        "4761739001010010",
        "2912",
        None,
        "A0000000031010",
    )
    # Records 1-2 of file 1 and record 1 of file 3: the whole AFL was read, each record once.
    reads = [h for h in card.log if h[1] == 0xB2]
    assert reads == [bytes([0x00, 0xB2, 1, 0x0C]), bytes([0x00, 0xB2, 2, 0x0C]), bytes([0x00, 0xB2, 1, 0x1C])]


@pytest.mark.usefixtures("virtual")
def test_t0_card_with_61xx_chaining_and_6cxx(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    card = ChainingCard("6228480402564890018", chunk=16)
    bank_slot.insert(card, wait=True)
    data = BankCardReader(bank_reader_name).read_card(timeout=10)
    assert data.pan == "6228480402564890018"
    assert card.get_responses >= 6
    assert card.wrong_le >= 3


@pytest.mark.usefixtures("virtual")
def test_dead_card_is_unreadable(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    card = DeadCard()
    bank_slot.insert(card, wait=True)
    with pytest.raises(CardUnreadableError, match="6F00"):
        BankCardReader(bank_reader_name).read_card(timeout=10)
    assert card.commands > 2


@pytest.mark.usefixtures("virtual")
def test_no_card_times_out(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    _ = bank_slot
    started = time.monotonic()
    with pytest.raises(NoCardPresentError):
        BankCardReader(bank_reader_name).read_card(timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 5  # waited the timeout, and not for ever (loose: CI is loaded)


@pytest.mark.usefixtures("virtual")
def test_card_pulled_out_during_the_read(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    class PulledCard(UnionPayDebitCard):
        def transmit(self, apdu: bytes) -> bytes:
            if apdu[1] == 0xA8:  # at GET PROCESSING OPTIONS the card leaves the reader
                threading.Thread(target=bank_slot.remove).start()
                time.sleep(0.2)  # the card's answer never arrives: the link is gone first
            return super().transmit(apdu)

    bank_slot.insert(PulledCard(), wait=True)
    with pytest.raises(CardUnreadableError):
        BankCardReader(bank_reader_name).read_card(timeout=10)


@pytest.mark.usefixtures("virtual")
def test_cancel_from_another_thread(bank_slot: VirtualCardSlot, bank_reader_name: str) -> None:
    _ = bank_slot
    reader = BankCardReader(bank_reader_name)
    errors: list[Exception] = []

    def wait() -> None:
        try:
            reader.read_card(timeout=30)
        except Exception as err:
            errors.append(err)

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 30  # generous: opening the PC/SC session can stall on a loaded machine
    while not reader._session.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.cancel()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], NoCardPresentError)


@pytest.mark.usefixtures("virtual", "pcsc_daemon")
def test_unknown_reader_name() -> None:
    with pytest.raises(ReaderUnavailableError, match="no reader named"):
        BankCardReader("No Such Reader").read_card(timeout=0.5)


@pytest.mark.usefixtures("virtual")
def test_a_cancel_that_comes_before_the_wait_starts_still_ends_it(
    bank_slot: VirtualCardSlot, bank_reader_name: str
) -> None:
    # SCardCancel reaches only a wait already inside SCardGetStatusChange; a cancel racing its start
    # (a clean-clone run lost one for the whole 30 s) must still end the wait.
    _ = bank_slot
    with PcscContext() as context:
        context.cancel()
        started = time.monotonic()
        with pytest.raises(WaitCancelledError):
            context.wait_for_card(bank_reader_name, timeout=30)
        assert time.monotonic() - started < 10
