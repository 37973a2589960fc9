"""ESC/POS encoding and parsing: table tests for each command, Hypothesis for the parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from receipt_printer import protocol
from receipt_printer.errors import EscPosSyntaxError, ProtocolError
from receipt_printer.models import Align, Feed, PrinterStatus, QrCode, Raster, Receipt, TextLine
from receipt_printer.protocol import (
    ChineseMode,
    Cut,
    EscPosParser,
    NewLine,
    QrPrint,
    QrStore,
    RasterImage,
    SetAlign,
    StatusKind,
    StatusQuery,
    Text,
)


def _merged(commands: list[protocol.Command]) -> list[protocol.Command]:
    """Adjacent text runs joined: how a stream splits into reads must not change what is printed."""
    out: list[protocol.Command] = []
    for command in commands:
        if isinstance(command, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + command.text)
        else:
            out.append(command)
    return out


def test_chinese_text_goes_in_gb18030_between_fs_ampersand_and_fs_dot() -> None:
    assert protocol.encode_text("房间 1201") == b"\x1c&" + "房间 1201".encode("gb18030") + b"\x1c."
    assert protocol.encode_text("Room 1201") == b"Room 1201"


def test_text_with_a_control_character_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        protocol.encode_text("a\x1bE")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x1b@", protocol.Init()),
        (b"\x1ba\x01", SetAlign(Align.CENTER)),
        (b"\x1ba1", SetAlign(Align.CENTER)),
        (b"\x1b!\x38", protocol.PrintMode(bold=True, width=2, height=2)),
        (b"\x1bE\x01", protocol.PrintMode(bold=True)),
        (b"\x1d!\x11", protocol.PrintMode(width=2, height=2)),
        (b"\x1bd\x03", protocol.FeedLines(3)),
        (b"\x1dV\x01", Cut(partial=True)),
        (b"\x1dVA\x10", Cut(partial=False, feed=16)),
        (b"\x1c&", ChineseMode(on=True)),
        (b"\x1c.", ChineseMode(on=False)),
        (b"\x10\x04\x04", StatusQuery(StatusKind.PAPER)),
        (b"\x1d(k\x03\x001Q0", QrPrint()),
        (b"\x1d(k\x06\x001P0abc", QrStore(b"abc")),
        (b"\n", NewLine()),
    ],
)
def test_each_command_parses(data: bytes, expected: protocol.Command) -> None:
    assert EscPosParser().feed(data) == [expected]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x1b\x7f", "unknown command ESC 0x7f"),
        (b"\x1ba\x07", "ESC a 7: alignment must be 0, 1 or 2"),
        (b"\x1dV\x05", "GS V 5: cut mode"),
        (b"\x1d(k\x03\x001C\x00", "module size must be 1..16"),
        (b"\x1d(k\x03\x002Q0", "only QR codes"),
        (b"\x1d(k\x03\x001Z0", "fn 90: unknown QR function"),
        (b"\x1dv0\x00\x64\x00\x01\x00", "width 100 bytes"),
        (b"\x10\x04\x09", "DLE EOT 9"),
        (b"\x10\x05\x01", "only DLE EOT"),
        (b"\x07", "control byte 0x07"),
        (b"\x1c&\x81\x20", "does not start a GB18030 character"),
    ],
)
def test_malformed_commands_get_a_specific_error(data: bytes, message: str) -> None:
    with pytest.raises(EscPosSyntaxError, match=message) as caught:
        EscPosParser().feed(data)
    assert caught.value.offset >= 0


def test_the_parser_goes_on_after_a_bad_byte_and_keeps_what_came_before() -> None:
    parser = EscPosParser()
    with pytest.raises(EscPosSyntaxError) as caught:
        parser.feed(b"ok\n\x1b\x7fnext\n")
    assert caught.value.parsed == (Text("ok"), NewLine())
    assert caught.value.offset == 3
    assert parser.feed(b"") == [Text("next"), NewLine()]


def test_an_incomplete_command_waits_for_its_last_bytes() -> None:
    parser = EscPosParser()
    assert parser.feed(b"\x1d(k\x06\x001P0a") == []
    assert parser.pending == 9
    assert parser.feed(b"bc") == [QrStore(b"abc")]


def test_a_receipt_round_trips_through_encoder_and_parser() -> None:
    logo = protocol.raster_from_image(Image.new("L", (20, 4), 0))
    receipt = Receipt(
        (
            TextLine("签到凭证", Align.CENTER, bold=True, double=True),
            TextLine("房间 Room 1201"),
            QrCode("K7M2P9QX"),
            logo,
            Feed(2),
        )
    )
    commands = _merged(EscPosParser().feed(protocol.encode_receipt(receipt)))
    texts = [c.text for c in commands if isinstance(c, Text)]
    assert texts == ["签到凭证", "房间 Room 1201"]
    assert QrStore(b"K7M2P9QX") in commands
    assert RasterImage(Raster(3, 4, logo.data)) in commands
    assert commands[-1] == Cut(partial=True)


def test_status_bytes_round_trip_for_every_combination() -> None:
    for bits in range(32):
        status = PrinterStatus(
            online=not bits & 1,
            cover_open=bool(bits & 2),
            paper_near_end=bool(bits & 4) and not bits & 8,
            paper_out=bool(bits & 8),
            error=bool(bits & 16),
        )
        answers = {kind: protocol.status_byte(kind, status) for kind in StatusKind}
        decoded = protocol.decode_status(answers)
        assert decoded.cover_open == status.cover_open
        assert decoded.paper_out == status.paper_out
        assert decoded.paper_near_end == status.paper_near_end
        assert decoded.error == status.error
        assert decoded.ready == status.ready


def test_a_byte_that_is_not_a_status_answer_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not an ESC/POS status byte"):
        protocol.decode_status({StatusKind.PRINTER: 0x41})


# ---- Hypothesis --------------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn"), max_codepoint=0x9FFF),
    min_size=1,
    max_size=30,
)
_item = st.one_of(
    st.builds(TextLine, _text, st.sampled_from(list(Align)), st.booleans(), st.booleans()),
    st.builds(QrCode, st.text(alphabet="ABCDEFGHJKMNPQRSTVWXYZ23456789", min_size=1, max_size=40)),
    st.builds(Feed, st.integers(0, 5)),
)


@given(items=st.lists(_item, max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=6))
@settings(max_examples=150, deadline=None)
def test_any_split_of_a_valid_stream_parses_to_the_same_commands(items: list[object], cuts: list[int]) -> None:
    data = protocol.encode_receipt(Receipt(tuple(items)))  # type: ignore[arg-type]
    whole = _merged(EscPosParser().feed(data))
    parser = EscPosParser()
    pieces: list[protocol.Command] = []
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        pieces += parser.feed(data[last:cut])
        last = cut
    pieces += parser.feed(data[last:])
    assert _merged(pieces) == whole
    assert parser.pending == 0
    expected = [i.text for i in items if isinstance(i, TextLine)]
    assert [c.text for c in whole if isinstance(c, Text)] == expected


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_parse_or_fail_with_a_syntax_error_only(data: bytes) -> None:
    parser = EscPosParser()
    offsets: list[int] = []
    pending = data
    for _ in range(len(data) + 1):
        try:
            parser.feed(pending)
        except EscPosSyntaxError as err:
            offsets.append(err.offset)
            pending = b""
            continue
        break
    assert all(0 <= offset < len(data) for offset in offsets)
    assert offsets == sorted(set(offsets))  # each error is further on: the parser never loops
    assert parser.pending <= len(data)
