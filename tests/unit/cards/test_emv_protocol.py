"""EMV/PBOC parsing (BER-TLV, DOL, AFL, GPO, tag 57) and the magnetic-stripe and typed fallbacks."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bank_card_reader import BankCardError, InvalidCardNumberError, parse_swipe, parse_typed
from bank_card_reader.errors import CardDataError, TlvError
from bank_card_reader.protocol import (
    Tag,
    build_dol_data,
    card_data_from_records,
    decode_tlv,
    encode_tlv,
    find_tag,
    parse_afl,
    parse_directory,
    parse_dol,
    parse_gpo_response,
    parse_track2_equivalent,
    terminal_values,
)

# The PPSE answer and records a toy UnionPay card gave through pcscd (hardware-protocols.md 2.1).
PPSE_REPLY = bytes.fromhex(
    "6F34840E325041592E5359532E4444463031A522BF0C1F611D4F08A000000333010101"
    "500E556E696F6E5061792044656269748701 01".replace(" ", "")
)
RECORD = bytes.fromhex(
    "702F57116212345678901232D301220100000000005A0862123456789012325F24033012315F2009" + "5A48414E472F53414E"[:18]
)


def test_ppse_reply_lists_the_unionpay_debit_aid() -> None:
    entries = parse_directory(decode_tlv(PPSE_REPLY))
    assert [e.aid.hex().upper() for e in entries] == ["A000000333010101"]
    assert entries[0].label == "UnionPay Debit"


def test_toy_card_record_gives_pan_and_expiry() -> None:
    data = card_data_from_records(decode_tlv(RECORD), source="chip", aid=None)
    assert (data.pan, data.expiry_yymm, data.holder_name) == ("6212345678901232", "3012", "ZHANG/SAN")
    assert data.masked == "621234******1232"


def test_pdol_filled_with_terminal_values() -> None:
    dol = parse_dol(bytes.fromhex("9F66049F02069F37045F2A02"))
    assert dol == [(0x9F66, 4), (0x9F02, 6), (0x9F37, 4), (0x5F2A, 2)]
    values = terminal_values(dt.date(2026, 11, 22), b"\x01\x02\x03\x04")
    assert build_dol_data(dol, values).hex().upper() == "26000080" + "000000000000" + "01020304" + "0156"
    # Unknown tags are zero-filled; numeric ones are left-padded.
    assert build_dol_data([(0xDF01, 3), (0x9A, 4)], values).hex() == "000000" + "00261122"


def test_gpo_formats_and_afl() -> None:
    aip, afl, _ = parse_gpo_response(bytes.fromhex("770A820200809404080101 00".replace(" ", "")))
    assert aip == b"\x00\x80"
    assert [(e.sfi, list(e.records())) for e in afl] == [(1, [1])]
    aip, afl, _ = parse_gpo_response(bytes.fromhex("800A 1C00 08010200 18010100".replace(" ", "")))
    assert [(e.sfi, e.first, e.last) for e in afl] == [(1, 1, 2), (3, 1, 1)]
    with pytest.raises(CardDataError):
        parse_afl(bytes.fromhex("00010100"))


def test_track2_without_pan_tag() -> None:
    assert parse_track2_equivalent(bytes.fromhex("4761739001010010D29122011234567F")) == ("4761739001010010", "2912")


def test_long_lengths_and_multi_byte_tags() -> None:
    blob = encode_tlv(0x70, encode_tlv(0x9F46, bytes(200)) + encode_tlv(Tag.PAN, bytes.fromhex("6212345678901232")))
    assert blob[:2] == b"\x70\x81"  # long form: one length byte follows
    assert blob[2] == len(blob) - 3
    assert find_tag(decode_tlv(blob), Tag.PAN) == bytes.fromhex("6212345678901232")


@settings(max_examples=2000)
@given(st.binary(max_size=300))
def test_tlv_parser_gives_objects_or_a_typed_error(data: bytes) -> None:
    try:
        items = decode_tlv(data)
    except TlvError:
        return
    assert all(item.tag > 0 for item in items)


@settings(max_examples=500)
@given(
    st.recursive(
        st.tuples(st.sampled_from([0x5A, 0x57, 0x9F38, 0x5F24, 0x50]), st.binary(max_size=300)),
        lambda children: st.tuples(st.sampled_from([0x70, 0x77, 0xA5, 0xBF0C]), st.lists(children, max_size=3)),
        max_leaves=6,
    )
)
def test_tlv_round_trip(tree: tuple[int, object]) -> None:
    def encode(node: tuple[int, object]) -> bytes:
        tag, value = node
        if isinstance(value, list):
            return encode_tlv(tag, b"".join(encode(child) for child in value))
        assert isinstance(value, bytes)
        return encode_tlv(tag, value)

    encoded = encode(tree)
    (item,) = decode_tlv(encoded)
    assert item.tag == tree[0]
    assert encode_tlv(item.tag, item.value) == encoded


@settings(max_examples=1000)
@given(st.binary(max_size=120))
def test_records_give_card_data_or_a_typed_error(data: bytes) -> None:
    try:
        card = card_data_from_records(decode_tlv(data), source="chip", aid=None)
    except CardDataError:
        return
    assert card.pan.isdigit()


@settings(max_examples=1000)
@given(st.binary(max_size=64))
def test_gpo_afl_dol_parsers_give_values_or_typed_errors(data: bytes) -> None:
    for parse in (parse_gpo_response, parse_afl, parse_dol, parse_track2_equivalent):
        with contextlib.suppress(CardDataError):
            parse(data)


SWIPE = "%B5350290149345177^FATEHI/SUALEH^1604201000?;5350290149345177=16042010000056700100?"


def test_swipe_with_both_tracks() -> None:
    data = parse_swipe(SWIPE)
    assert (data.pan, data.expiry_yymm, data.holder_name, data.source) == (
        "5350290149345177",
        "1604",
        "FATEHI/SUALEH",
        "swipe",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (";6212345678901233=30122010000?", "check digit"),
        ("%B6212345678901232^A/B^3012?;6212345678901240=3012?", "different"),
        (";E?", "swipe again"),
        ("hello", "no track"),
    ],
)
def test_bad_swipes(text: str, message: str) -> None:
    with pytest.raises(InvalidCardNumberError, match=message):
        parse_swipe(text)


def test_typed_entry() -> None:
    assert parse_typed("6212 3456 7890 1232").pan == "6212345678901232"
    with pytest.raises(InvalidCardNumberError):
        parse_typed("6212 3456 7890 1233")


@settings(max_examples=2000)
@given(st.text(alphabet=st.sampled_from("%B^;=?E0123456789 /AZ"), max_size=80) | st.text(max_size=80))
def test_swipe_parser_gives_card_data_or_a_typed_error(text: str) -> None:
    try:
        data = parse_swipe(text)
    except BankCardError:
        return
    assert data.pan in text


@settings(max_examples=1000)
@given(st.text(max_size=30))
def test_typed_parser_gives_card_data_or_a_typed_error(text: str) -> None:
    with contextlib.suppress(BankCardError):
        parse_typed(text)
