"""SAM frame protocol: verbatim frames from public reader code, and properties over any bytes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from id_card_reader import errors as idc
from id_card_reader.models import IdentityCard
from id_card_reader.protocol import (
    PREAMBLE,
    BaseInfo,
    Command,
    FrameAssembler,
    SamFrame,
    build_frame,
    build_reply,
    build_request,
    decode_base_info,
    decode_frame,
    decode_identity_text,
    encode_base_info,
    encode_identity_text,
)
from personal_data.id_number import check_digit


@pytest.mark.parametrize(
    ("command", "frame"),
    [
        (Command.RESET_SAM, "AAAAAA9669 0003 10FF EC"),
        (Command.GET_SAM_STATUS, "AAAAAA9669 0003 11FF ED"),
        (Command.READ_SAM_ID, "AAAAAA9669 0003 12FF EE"),
        (Command.FIND_CARD, "AAAAAA9669 0003 2001 22"),
        (Command.SELECT_CARD, "AAAAAA9669 0003 2002 21"),
        (Command.READ_BASE_INFO, "AAAAAA9669 0003 3001 32"),
        (Command.READ_BASE_INFO_FINGERPRINT, "AAAAAA9669 0003 3010 23"),
    ],
)
def test_request_frames_match_public_readers(command: Command, frame: str) -> None:
    assert build_request(command) == bytes.fromhex(frame)


@pytest.mark.parametrize(
    ("frame", "sw3", "data_len"),
    [
        ("AAAAAA9669 0004 000090 94", 0x90, 0),
        ("AAAAAA9669 0004 000060 64", 0x60, 0),
        ("AAAAAA9669 0008 00009F 00000000 97", 0x9F, 4),
        ("AAAAAA9669 000C 000090 0000000000000000 9C", 0x90, 8),
        ("AAAAAA9669 0004 000080 84", 0x80, 0),
        ("AAAAAA9669 0004 000081 85", 0x81, 0),
        ("AAAAAA9669 0004 000041 45", 0x41, 0),
    ],
)
def test_reply_frames_match_public_readers(frame: str, sw3: int, data_len: int) -> None:
    reply = decode_frame(bytes.fromhex(frame)).as_reply()
    assert (reply.sw3, len(reply.data)) == (sw3, data_len)
    assert build_reply(sw3, reply.data) == bytes.fromhex(frame)


def test_the_libusb_sample_with_a_wrong_checksum_is_refused() -> None:
    # The frame a public libusb test sends ends in 21; the right check byte is 22.
    with pytest.raises(idc.FrameChecksumError):
        decode_frame(bytes.fromhex("AAAAAA9669000320 0121"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [("AAAAAA96", "at least"), ("BBAAAA9669000320 0122", "starts with"), ("AAAAAA9669FFFF2001 22", "LEN must")],
)
def test_bad_frames_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(idc.FrameFormatError, match=message):
        decode_frame(bytes.fromhex(raw))


def test_assembler_resynchronises_after_noise_and_split_reads() -> None:
    good = build_reply(0x90)
    stream = b"\x00\x11" + PREAMBLE + b"\xff\xff" + b"junk" + good + good[:3]
    assembler = FrameAssembler()
    items = []
    for i in range(0, len(stream), 3):
        items += assembler.feed(stream[i : i + 3])
    items += assembler.feed(good[3:])
    frames = [i for i in items if isinstance(i, SamFrame)]
    assert frames == [SamFrame(b"\x00\x00\x90"), SamFrame(b"\x00\x00\x90")]
    assert any(isinstance(i, idc.FrameFormatError) for i in items)


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_decode_frame_gives_a_frame_or_a_typed_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except idc.IdCardProtocolError:
        return
    assert build_frame_of(frame) == data


def build_frame_of(frame: SamFrame) -> bytes:
    return build_frame(frame.body)


@settings(max_examples=500)
@given(
    st.lists(st.binary(max_size=40), max_size=8),
    st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=5),
    st.integers(min_value=1, max_value=17),
)
def test_assembler_never_raises_and_finds_every_frame_between_noise(
    noise: list[bytes], bodies: list[bytes], chunk: int
) -> None:
    # Noise without the preamble, interleaved with good frames, fed in arbitrary chunks.
    clean = [n.replace(b"\xaa", b"\x00") for n in noise]
    stream = b"".join(
        clean[i] + build_reply(0x90, b) if i < len(clean) else build_reply(0x90, b) for i, b in enumerate(bodies)
    )
    assembler = FrameAssembler()
    items = []
    for i in range(0, len(stream), chunk):
        items += assembler.feed(stream[i : i + chunk])
    frames = [i.body for i in items if isinstance(i, SamFrame)]
    assert frames == [b"\x00\x00\x90" + b for b in bodies]


@settings(max_examples=1000)
@given(st.binary(max_size=2000))
def test_assembler_on_any_bytes_yields_frames_or_typed_errors(data: bytes) -> None:
    for item in FrameAssembler().feed(data):
        assert isinstance(item, SamFrame | idc.IdCardProtocolError)


@settings(max_examples=500)
@given(st.binary(max_size=1400))
def test_base_info_gives_blocks_or_a_typed_error(data: bytes) -> None:
    try:
        info = decode_base_info(data)
    except idc.IdCardProtocolError:
        return
    assert (len(info.text), len(info.photo_wlt)) == (256, 1024)


@settings(max_examples=1000)
@given(st.binary(min_size=256, max_size=256))
def test_identity_text_gives_an_identity_or_a_typed_error(text: bytes) -> None:
    try:
        card = decode_identity_text(text, b"\x00" * 1024)
    except idc.IdentityDataError:
        return
    assert card.id_number[6:14] == card.birth_date.strftime("%Y%m%d")


GOOD_ID = "11010119620514031" + check_digit("11010119620514031")


def _ucs2_text(values: dict[str, str]) -> bytes:
    fields = (
        ("name", 30),
        ("sex", 2),
        ("nation", 4),
        ("birth", 16),
        ("address", 70),
        ("id", 36),
        ("authority", 30),
        ("from", 16),
        ("to", 16),
        ("reserved", 36),
    )
    out = b""
    for key, size in fields:
        raw = values.get(key, "").encode("utf-16-le")[:size]
        out += raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)
    return out


@settings(max_examples=300)
@given(
    st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2010, 12, 31)),
    st.integers(min_value=0, max_value=999),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=15),
    st.sampled_from([5, 10, 20, None]),
)
def test_identity_round_trips_through_the_text_block(birth: dt.date, seq: int, name: str, years: int | None) -> None:
    first17 = "110101" + birth.strftime("%Y%m%d") + f"{seq:03d}"
    valid_from = max(birth, dt.date(2005, 1, 1))
    valid_to = None if years is None else valid_from.replace(year=valid_from.year + years, day=min(valid_from.day, 28))
    card = IdentityCard(
        name,
        "1",
        "01",
        birth,
        "北京市东城区",
        first17 + check_digit(first17),
        "北京市公安局东城分局",
        valid_from,
        valid_to,
        bytes(1024),
    )
    text = encode_identity_text(card)
    assert len(text) == 256
    assert decode_identity_text(text, bytes(1024)) == card
    data = encode_base_info(BaseInfo(text, bytes(1024)))
    frame = build_reply(0x90, data)
    assert frame[:14] == bytes.fromhex("AAAAAA9669 0508 000090 0100 0400".replace(" ", ""))
    assert len(frame) == 1295


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": GOOD_ID[:17] + ("1" if GOOD_ID[17] != "1" else "2")}, "check digit"),
        ({"birth": "19620515"}, "does not match"),
        ({"sex": "3"}, "sex code"),
        ({"to": "20090101"}, "validity"),
        ({"to": "20500101"}, "validity"),
        ({"from": "19600101"}, "before the birth"),
        ({"name": ""}, "name"),
    ],
)
def test_identity_checks(change: dict[str, str], message: str) -> None:
    values = {
        "name": "张三",
        "sex": "1",
        "nation": "01",
        "birth": "19620514",
        "id": GOOD_ID,
        "authority": "北京",
        "from": "20100101",
        "to": "20300101",
    }
    assert decode_identity_text(_ucs2_text(values), bytes(1024)).valid_to == dt.date(2030, 1, 1)
    with pytest.raises(idc.IdentityDataError, match=message):
        decode_identity_text(_ucs2_text(values | change), bytes(1024))


def test_long_term_and_foreigner_cards() -> None:
    values = {
        "name": "张三",
        "sex": "1",
        "nation": "01",
        "birth": "19620514",
        "id": GOOD_ID,
        "authority": "北京",
        "from": "20100101",
        "to": "长期",
    }
    assert decode_identity_text(_ucs2_text(values), bytes(1024)).valid_to is None
    foreign = bytearray(_ucs2_text(values))
    foreign[248:250] = "I".encode("utf-16-le")
    with pytest.raises(idc.UnsupportedCardTypeError):
        decode_identity_text(bytes(foreign), bytes(1024))


FAILED_STATUSES = [code for code in idc.Sw3 if code not in (idc.Sw3.SUCCESS, idc.Sw3.CARD_FOUND)]


@pytest.mark.parametrize("code", FAILED_STATUSES)
def test_each_failed_sw3_code_is_one_error_carrying_its_status(code: idc.Sw3) -> None:
    error = decode_frame(build_reply(code)).as_reply().error("READ")
    assert isinstance(error, idc.SamStatusError)
    assert error.status is code
    assert error.sw3 == code
    assert f"{code:02X}" in str(error)
    assert error.retryable == (code in idc.RETRYABLE_STATUSES)
    special = {idc.Sw3.FIND_FAILED: idc.NoCardError, idc.Sw3.SAM_SELF_TEST_FAILED: idc.SamSelfTestError}
    assert type(error) is special.get(code, idc.SamStatusError)


def test_status_keys_follow_the_status() -> None:
    def key(code: int) -> str:
        return decode_frame(build_reply(code)).as_reply().error("READ").key

    assert key(idc.Sw3.READ_FAILED) == "id_card_unreadable"
    assert key(idc.Sw3.UNKNOWN_CARD_TYPE) == "id_card_type_unsupported"
    assert key(idc.Sw3.SAM_NOT_AUTHORISED) == "reader_fault"
    assert key(idc.Sw3.BAD_COMMAND) == "id_card_reader_status"
    unknown = decode_frame(build_reply(0x5A)).as_reply().error("READ")
    assert (unknown.status, unknown.key, unknown.retryable) == (0x5A, "id_card_reader_status", False)
