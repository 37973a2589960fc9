from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uwb import payload, protocol
from uwb.errors import ProtocolError
from uwb.models import BandCleared, DownlinkState, RoomAssignment
from uwb.protocol import EnvelopeDecoder, ReturnValue, Tlv, TlvType


def test_crc16_ccitt_false_check_value() -> None:
    assert protocol.crc16_ccitt(b"123456789") == 0x29B1


def test_held_check_is_not_fooled_by_crc_residue() -> None:
    # Any payload ending in its own CCITT CRC has CCITT 0 over the whole; the ack check must differ.
    a, b = b"\x11\x20\x4c", b"\x12\x20\x4c"
    sealed_a = a + struct.pack(">H", protocol.crc16_ccitt(a))
    sealed_b = b + struct.pack(">H", protocol.crc16_ccitt(b))
    assert protocol.crc16_ccitt(sealed_a) == protocol.crc16_ccitt(sealed_b) == 0
    assert protocol.held_check(sealed_a) != protocol.held_check(sealed_b)


@pytest.mark.parametrize(
    ("request_bytes", "expected_hex"),
    [
        (protocol.node_id_get_request(), "30 00"),
        (protocol.status_get_request(), "32 00"),
        (protocol.dl_status_get_request(0x0102), "a1 02 02 01"),
        (protocol.tag_data_read_request(0x204C), "a2 02 4c 20"),
        (protocol.dl_data_write_request(0x204C, b"\xaa\xbb", overwrite=True), "a0 05 4c 20 01 aa bb"),
        (protocol.dl_data_write_request(0x204C, b"\xaa", overwrite=False), "a0 04 4c 20 00 aa"),
    ],
)
def test_request_encoding(request_bytes: bytes, expected_hex: str) -> None:
    assert request_bytes.hex(" ") == expected_hex


def test_envelope_example_from_the_doc() -> None:
    assert protocol.encode_envelope(0x01, bytes.fromhex("3000")).hex(" ") == "55 01 02 30 00 " + _crc_hex(
        b"\x01\x02\x30\x00"
    )


def _crc_hex(covered: bytes) -> str:
    return struct.pack(">H", protocol.crc16_ccitt(covered)).hex(" ")


@pytest.mark.parametrize("size", [0, 35])
def test_downlink_data_size_is_bounded(size: int) -> None:
    with pytest.raises(ProtocolError, match=r"1\.\.34"):
        protocol.dl_data_write_request(0x204C, b"x" * size, overwrite=True)


def test_envelope_round_trip_in_arbitrary_chunks() -> None:
    frames = [protocol.encode_envelope(i, bytes([0x30, 0x00]) * i) for i in range(5)]
    wire = b"".join(frames)
    decoder = EnvelopeDecoder()
    got = []
    for i in range(0, len(wire), 3):
        got += decoder.feed(wire[i : i + 3])
    assert [(f.seq, f.body) for f in got] == [(i, bytes([0x30, 0x00]) * i) for i in range(5)]
    assert decoder.discarded == 0


def test_decoder_resyncs_after_noise_and_a_corrupted_frame() -> None:
    good = protocol.encode_envelope(7, b"\x40\x01\x00")
    corrupted = bytearray(protocol.encode_envelope(6, b"\x40\x01\x04"))
    corrupted[4] ^= 0xFF
    decoder = EnvelopeDecoder()
    # 55 13: a false frame of 19 bytes holds the real one back until the line goes quiet...
    assert decoder.feed(b"\x00\x55\x55\x13" + bytes(corrupted) + good) == []
    assert decoder.pending > 0
    # ...and the timeout-based reset then finds it.
    frames = decoder.drop_partial()
    assert [(f.seq, f.body) for f in frames] == [(7, b"\x40\x01\x00")]
    assert decoder.pending == 0


def test_a_frame_hidden_after_a_false_sync_is_found() -> None:
    # A stray 0x55 whose "length" swallows the start of the real frame: only one byte is dropped per failure.
    good = protocol.encode_envelope(9, b"\x30\x00")
    frames = EnvelopeDecoder().feed(b"\x55\x01\x04" + good + b"\x00" * 4)
    assert [f.seq for f in frames] == [9]


@given(st.binary(max_size=600))
def test_decoder_never_crashes_on_noise(noise: bytes) -> None:
    decoder = EnvelopeDecoder()
    for frame in decoder.feed(noise):
        assert protocol.encode_envelope(frame.seq, frame.body) in noise


@given(st.binary(max_size=300), st.integers(0, 255), st.binary(max_size=255))
def test_a_valid_frame_after_any_noise_is_received(noise: bytes, seq: int, body: bytes) -> None:
    decoder = EnvelopeDecoder()
    frames = decoder.feed(noise + protocol.encode_envelope(seq, body))
    # The noise may complete a frame of its own or delay ours behind a false length; the quiet-line
    # reset must then find it.
    frames += decoder.drop_partial()
    assert (seq, body) in [(f.seq, f.body) for f in frames]


@given(st.binary(max_size=64))
def test_parse_response_is_total(body: bytes) -> None:
    try:
        resp = protocol.parse_response(body)
    except ProtocolError:
        return
    assert 0 <= resp.rv <= 255


@pytest.mark.parametrize(
    ("body_hex", "message"),
    [
        ("", "must start with return-value"),
        ("4b 00", "must start with return-value"),
        ("40 02 00 00", "must start with return-value"),
        ("40 01", "runs past"),
        ("40 01 00 4b", "type without length"),
        ("40 01 00 4b 00 4b 00", "repeats"),
    ],
)
def test_parse_response_rejects(body_hex: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.parse_response(bytes.fromhex(body_hex))


def test_response_drops_data_unless_ok() -> None:
    assert protocol.response(ReturnValue.BUSY, Tlv(TlvType.DL_HANDLE, b"\x01\x00")).hex(" ") == "40 01 04"


def test_decode_dl_status() -> None:
    body = bytes.fromhex("40 01 00 c1 09 05 00 4c 20 02 78 56 34 12")
    status = protocol.decode_dl_status(protocol.parse_response(body))
    assert (status.msg_id, status.tag_id, status.state, status.held_crc) == (5, 0x204C, DownlinkState.ACKED, 0x12345678)


def test_decode_dl_status_rejects_unknown_state() -> None:
    body = bytes.fromhex("40 01 00 c1 09 05 00 4c 20 63 00 00 00 00")
    with pytest.raises(ProtocolError, match="Unknown downlink state 99"):
        protocol.decode_dl_status(protocol.parse_response(body))


def test_missing_tlv_is_named() -> None:
    with pytest.raises(ProtocolError, match="NODE_ID"):
        protocol.decode_node_id(protocol.parse_response(bytes.fromhex("40 01 00")))


DOC = (Path(__file__).resolve().parents[3] / "docs" / "uwb-protocol.md").read_text(encoding="utf-8")
DOC_PAYLOAD = payload.encode(RoomAssignment(0x204C, "ZB2024-0318", "HX01", "1208"))


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


@pytest.mark.parametrize(
    "frame",
    [
        protocol.encode_envelope(1, protocol.node_id_get_request()),
        protocol.encode_envelope(
            1, protocol.response(ReturnValue.OK, Tlv(TlvType.NODE_ID, struct.pack("<Q", 0xDECA000000001A2B)))
        ),
        protocol.encode_envelope(2, protocol.status_get_request()),
        protocol.encode_envelope(
            2,
            protocol.response(
                ReturnValue.OK,
                Tlv(TlvType.STATUS, struct.pack("<H", 0x12)),
                Tlv(TlvType.GW_COUNTERS, struct.pack("<HHI", 1, 3, 42)),
            ),
        ),
        protocol.encode_envelope(3, protocol.dl_data_write_request(0x204C, DOC_PAYLOAD, overwrite=True)),
        protocol.encode_envelope(3, protocol.response(ReturnValue.OK, Tlv(TlvType.DL_HANDLE, struct.pack("<H", 7)))),
        protocol.encode_envelope(3, protocol.response(ReturnValue.BUSY)),
        protocol.encode_envelope(4, protocol.dl_status_get_request(7)),
        protocol.encode_envelope(
            4, protocol.response(ReturnValue.OK, Tlv(TlvType.DL_STATUS, struct.pack("<HHBI", 7, 0x204C, 0, 0)))
        ),
        protocol.encode_envelope(
            4,
            protocol.response(
                ReturnValue.OK,
                Tlv(TlvType.DL_STATUS, struct.pack("<HHBI", 7, 0x204C, 2, protocol.held_check(DOC_PAYLOAD))),
            ),
        ),
        protocol.encode_envelope(5, protocol.tag_data_read_request(0x204C)),
        protocol.encode_envelope(5, protocol.response(ReturnValue.OK, Tlv(TlvType.USR_DATA, DOC_PAYLOAD))),
        protocol.encode_envelope(6, bytes.fromhex("1400")),
        protocol.encode_envelope(6, protocol.response(ReturnValue.UNKNOWN_OR_BROKEN)),
        DOC_PAYLOAD,
        payload.encode(BandCleared(0x204C)),
    ],
    ids=lambda frame: _hex(frame)[:20],
)
def test_every_documented_example_is_what_the_code_produces(frame: bytes) -> None:
    assert _hex(frame) in DOC


def test_documented_held_check() -> None:
    assert f"{protocol.held_check(DOC_PAYLOAD):08X}" in DOC
