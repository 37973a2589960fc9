from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uwb import payload
from uwb.errors import PayloadError
from uwb.models import BandCleared, RoomAssignment, format_tag_id, parse_tag_id
from uwb.protocol import crc16_ccitt

if TYPE_CHECKING:
    from collections.abc import Callable

CODE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
tag_ids = st.integers(1, 0xFFFE)


def codes(max_len: int) -> st.SearchStrategy[str]:
    return st.text(CODE_CHARS, min_size=1, max_size=max_len)


assignments = st.builds(RoomAssignment, tag_ids, codes(16), codes(8), codes(10))


def test_documented_example() -> None:
    data = payload.encode(RoomAssignment(0x204C, "ZB2024-0318", "HX01", "1208"))
    assert data.hex(" ") == "11 20 4c 0b 8c b0 80 08 4f 80 0c 12 00 04 46 10 01 04 04 20 08 6e d2"
    assert payload.encode(BandCleared(0x204C)).hex(" ") == "12 20 4c 6e 31"


def test_largest_assignment_is_exactly_34_bytes() -> None:
    assert len(payload.encode(RoomAssignment(0x0001, "B" * 16, "H" * 8, "R" * 10))) == 34


@pytest.mark.parametrize(("text", "packed_hex"), [("0", "00"), ("_", "fc"), ("1208", "04 20 08"), ("ZB", "8c b0")])
def test_six_bit_packing(text: str, packed_hex: str) -> None:
    assert payload.pack6(text).hex(" ") == packed_hex
    assert payload.unpack6(payload.pack6(text), len(text)) == text


def test_non_zero_padding_is_refused() -> None:
    with pytest.raises(PayloadError, match="padding"):
        payload.unpack6(b"\x01", 1)


@given(assignments)
def test_assignment_round_trip(content: RoomAssignment) -> None:
    data = payload.encode(content)
    assert len(data) <= 34
    assert payload.decode(data) == content


@given(tag_ids)
def test_clear_round_trip(tag_id: int) -> None:
    assert payload.decode(payload.encode(BandCleared(tag_id))) == BandCleared(tag_id)


@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_payload_error(data: bytes) -> None:
    try:
        content = payload.decode(data)
    except PayloadError:
        return
    assert payload.encode(content) == data


@given(assignments, st.integers(0, 33), st.integers(1, 255))
def test_any_single_byte_corruption_is_caught(content: RoomAssignment, index: int, flip: int) -> None:
    data = bytearray(payload.encode(content))
    data[index % len(data)] ^= flip
    with pytest.raises(PayloadError):
        payload.decode(bytes(data))


@pytest.mark.parametrize(
    ("batch", "hotel", "room", "message"),
    [
        ("B" * 17, "H1", "1208", "batch_code .* 17 characters; the band holds at most 16"),
        ("B1", "H" * 9, "1208", "hotel_code .* at most 8"),
        ("B1", "H1", "12345678901", "room_number .* at most 10"),
        ("B1", "H1", "1208.5", "room_number .* may only contain"),
        ("", "H1", "1208", "batch_code must not be empty"),
        ("B1", "希尔顿", "1208", "hotel_code .* may only contain"),
        ("B1", "H1", "12 08", "room_number .* may only contain"),
    ],
)
def test_fields_that_do_not_fit_are_refused_with_the_field_named(
    batch: str, hotel: str, room: str, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        payload.encode(RoomAssignment(0x204C, batch, hotel, room))
    with pytest.raises(PayloadError, match=message):
        payload.validate_assignment(batch, hotel, room)


@pytest.mark.parametrize("tag_id", [0x0000, 0xFFFF, 0x10000, -1])
def test_reserved_or_out_of_range_tag_ids_are_refused(tag_id: int) -> None:
    with pytest.raises(PayloadError, match="Tag id"):
        payload.encode(BandCleared(tag_id))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:4], "shortest valid"),
        (lambda d: d + b"\x00" * 30, "at most 34"),
        (lambda d: d[:-2] + b"\x00\x00", "check value"),
    ],
)
def test_decode_errors_say_what_is_wrong(mutate: Callable[[bytes], bytes], message: str) -> None:
    data = payload.encode(RoomAssignment(0x204C, "ZB1", "HX01", "1208"))
    with pytest.raises(PayloadError, match=message):
        payload.decode(mutate(data))


def test_unknown_version_is_refused_even_with_a_good_check_value() -> None:
    body = bytes.fromhex("21 20 4c")
    sealed = body + crc16_ccitt(body).to_bytes(2, "big")
    with pytest.raises(PayloadError, match="version 2 is not supported"):
        payload.decode(sealed)


@pytest.mark.parametrize("text", ["204C", "0f07", "0001", "FFFE"])
def test_tag_id_round_trip(text: str) -> None:
    assert format_tag_id(parse_tag_id(text)) == text.upper()


@pytest.mark.parametrize("text", ["", "204", "204CA", "20G0", "0000", "FFFF", " 204C"])
def test_bad_tag_ids(text: str) -> None:
    with pytest.raises(ValueError, match="Tag id"):
        parse_tag_id(text)
