"""The band UID answer parser, and the EMV read flow against the virtual cards without pcscd."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from band_reader import BandReaderError, parse_uid_response
from band_reader.errors import BandProtocolError, BandUnreadableError, UnsupportedBandError
from band_reader.simulator import MifareBand
from bank_card_reader import CardUnreadableError, NoSupportedApplicationError, read_emv_card
from bank_card_reader.simulator import ChainingCard, DeadCard, OtherLayoutCard, UnionPayDebitCard
from pcsc.client import ResponseApdu, t0_exchange

if TYPE_CHECKING:
    from pcsc.vpcd import VirtualCard


class CardOnTheDesk:
    """A fake channel: the virtual card's answers, through the same T=0 rules as CardChannel."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        card.reset()

    def _transmit(self, apdu: bytes) -> ResponseApdu:
        raw = self.card.transmit(apdu)
        return ResponseApdu(raw[:-2], raw[-2], raw[-1])

    def exchange(self, apdu: bytes) -> ResponseApdu:
        return t0_exchange(self._transmit, apdu)


@pytest.mark.parametrize(
    ("data", "sw", "expected"),
    [
        ("04A22B1A5C3F80", 0x9000, "04A22B1A5C3F80"),
        ("A1B2C3D4", 0x9000, "A1B2C3D4"),
        ("", 0x6300, BandUnreadableError),
        ("", 0x6A81, UnsupportedBandError),
        ("0102", 0x9000, BandProtocolError),
        ("", 0x6D00, BandProtocolError),
    ],
)
def test_uid_answers(data: str, sw: int, expected: str | type[Exception]) -> None:
    if isinstance(expected, str):
        assert parse_uid_response(bytes.fromhex(data), sw >> 8, sw & 0xFF) == expected
    else:
        with pytest.raises(expected):
            parse_uid_response(bytes.fromhex(data), sw >> 8, sw & 0xFF)


@settings(max_examples=1000)
@given(st.binary(max_size=16), st.integers(0, 255), st.integers(0, 255))
def test_uid_parser_gives_a_uid_or_a_typed_error(data: bytes, sw1: int, sw2: int) -> None:
    try:
        uid = parse_uid_response(data, sw1, sw2)
    except BandReaderError:
        return
    assert bytes.fromhex(uid) == data


def test_band_short_le_gets_6c() -> None:
    band = MifareBand("04A22B1A5C3F80")
    assert band.transmit(bytes.fromhex("FFCA000004")) == bytes([0x6C, 7])
    assert (
        t0_exchange(CardOnTheDesk(band)._transmit, bytes.fromhex("FFCA000004")).data.hex().upper() == "04A22B1A5C3F80"
    )


TODAY = dt.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("card", "pan", "source"),
    [
        (UnionPayDebitCard("6212345678901232"), "6212345678901232", "chip"),
        (UnionPayDebitCard("6212345678901232", contactless=True), "6212345678901232", "contactless"),
        (OtherLayoutCard(), "4761739001010010", "chip"),
        (ChainingCard(chunk=8), "6228480402564890018", "chip"),
    ],
)
def test_emv_flow_on_each_virtual_card(card: VirtualCard, pan: str, source: str) -> None:
    data = read_emv_card(CardOnTheDesk(card), atr=card.atr, today=TODAY, unpredictable=b"\x00\x01\x02\x03")
    assert (data.pan, data.source) == (pan, source)


def test_dead_card_and_card_without_our_applications() -> None:
    with pytest.raises(CardUnreadableError, match="6F00"):
        read_emv_card(CardOnTheDesk(DeadCard()), atr=DeadCard().atr, today=TODAY)
    foreign = OtherLayoutCard(aid="A0000009999999")
    with pytest.raises(NoSupportedApplicationError):
        read_emv_card(CardOnTheDesk(foreign), atr=foreign.atr, today=TODAY)


def test_card_refuses_a_gpo_with_the_wrong_pdol_length() -> None:
    card = UnionPayDebitCard()
    card.transmit(bytes.fromhex("00A4040008A00000033301010100"))
    assert card.transmit(bytes.fromhex("80A80000028300 00".replace(" ", ""))) == b"\x67\x00"
