"""Signature PNGs: checked from header and chunks before decoding, decoded only as PNG, only after the token."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from checkin.signature import Signature
from platform_server.services import check_in, identify, signature_image
from platform_server.services.signature_image import PNG_SIGNATURE, header_problem, signature_problem
from tests.unit.platform_server.support import Seeded, blank_png, luhn_pan, signature_png

LIMIT = 512 * 1024


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">L4s", len(data), kind) + data + struct.pack(">L", zlib.crc32(kind + data))


def png(
    width: int, height: int, *, depth: int = 8, colour: int = 0, extra: bytes = b"", idat: bytes | None = None
) -> bytes:
    """A PNG from chunks, IHDR as given: the pixels need not exist (nothing may decode them)."""
    header = struct.pack(">LLBBBBB", width, height, depth, colour, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\0" * 64)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + extra + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fails the test if Pillow is asked to open anything."""
    opened: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        raise AssertionError("the image was handed to the decoder")

    monkeypatch.setattr(Image, "open", refuse)
    return opened


def test_the_kiosks_own_signature_passes() -> None:
    pad = Signature(600, 200)
    pad.begin_stroke(10, 150)
    for x in range(10, 590, 5):
        pad.extend_stroke(x, 100 + (x % 40))
    assert signature_problem(pad.to_png(), LIMIT) is None
    assert signature_problem(signature_png(), LIMIT) is None


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO"])
def test_other_formats_are_refused_by_their_first_bytes(fmt: str, no_decoding: list[Any]) -> None:
    buffer = io.BytesIO()
    Image.new("L" if fmt != "ICO" else "RGBA", (64, 32), 0).save(buffer, format=fmt)
    assert signature_problem(buffer.getvalue(), LIMIT) == "not_png"
    assert not no_decoding


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (PNG_SIGNATURE + b"\0" * LIMIT, "too_large"),
        (png(100_000, 100_000), "too_many_pixels"),  # 10 gigapixels declared in 90 bytes
        (png(5000, 10), "too_many_pixels"),
        (png(4000, 1000, depth=16, colour=6), "decompressed_too_large"),  # 4 MP at 8 bytes a pixel
        (png(0, 10), "bad_header"),
        (png(10, 10, depth=3), "bad_header"),
        (png(100, 50, extra=chunk(b"zTXt", b"k\0\0" + zlib.compress(b"\0" * 10_000_000))), "chunk_refused"),
        (png(100, 50, extra=chunk(b"iCCP", b"p\0\0" + zlib.compress(b"\0" * 1000))), "chunk_refused"),
        (png(100, 50, extra=chunk(b"acTL", b"\0" * 8)), "chunk_refused"),
        (png(100, 50, extra=chunk(b"QUUX", b"")), "chunk_refused"),  # an unknown critical chunk
        (png(100, 50)[:-6], "truncated"),
        (png(100, 50)[:-12], "truncated"),
    ],
    ids=[
        "empty",
        "bytes",
        "gigapixels",
        "too-wide",
        "decompressed",
        "zero-width",
        "bad-depth",
        "ztxt-bomb",
        "iccp",
        "apng",
        "unknown-critical",
        "cut-iend",
        "no-iend",
    ],
)
def test_a_bad_png_is_refused_from_its_header_without_decoding(
    data: bytes, problem: str, no_decoding: list[Any]
) -> None:
    assert signature_problem(data, LIMIT) == problem
    assert not no_decoding


def test_a_zlib_bomb_in_the_pixels_decodes_no_further_than_the_declared_size() -> None:
    """IDAT holding 256 MB of zeros behind a 200 x 80 header: Pillow stops at the image's own size."""
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(bytes(1024 * 1024)) for _ in range(256)) + compressor.flush()
    assert len(idat) < 2 * 1024 * 1024
    assert signature_problem(png(200, 80, idat=idat), 4 * 1024 * 1024) in {"blank", "undecodable"}


def test_blank_and_broken_pixels_are_refused_after_decoding() -> None:
    assert signature_problem(blank_png(), LIMIT) == "blank"
    assert signature_problem(png(200, 80, idat=b"not zlib at all"), LIMIT) == "undecodable"


@given(st.binary(max_size=512))
def test_any_bytes_get_an_answer_not_an_exception(data: bytes) -> None:
    assert header_problem(data, LIMIT) in {None, "empty", "not_png", "bad_header", "too_many_pixels", "truncated"} | {
        "decompressed_too_large",
        "chunk_refused",
        "too_many_chunks",
    }
    assert isinstance(header_problem(PNG_SIGNATURE + data, LIMIT), (str, type(None)))


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 4, 8, 16]),
    st.sampled_from([0, 2, 3, 4, 6]),
)
def test_any_header_is_judged_without_decoding(width: int, height: int, depth: int, colour: int) -> None:
    problem = header_problem(png(width, height, depth=depth, colour=colour), LIMIT)
    if problem is None:
        assert 0 < width * height <= signature_image.SIGNATURE_LIMITS.max_pixels


def test_the_signature_is_not_decoded_for_a_token_the_platform_did_not_sign(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real_open = Image.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)

    def complete(token: str, kiosk: str = "K1", request_id: str = "c1") -> check_in.CompleteResult:
        return check_in.complete_check_in(
            seeded.new_uow(),
            seeded.ctx,
            check_in.CompleteCommand(
                request_id=request_id,
                kiosk_id=kiosk,
                identification_token=token,
                use_card_on_file=False,
                new_card_pan=luhn_pan(),
                card_source="CHIP",
                signature_png=signature_png(),
                band_uid=seeded.bands[0][0],
            ),
        )

    forged = complete("AAAA.BBBB")
    assert forged.refusal is not None
    assert forged.refusal.reason.value == "IDENTIFICATION_EXPIRED"
    found = identify.identify(
        seeded.new_uow(),
        seeded.ctx,
        identify.IdentifyCommand(request_id="i1", kiosk_id="K1", batch_code=seeded.batch_code, id_number=seeded.ids[0]),
    )
    other_kiosk = complete(found.identification_token, kiosk="K2", request_id="c2")
    assert other_kiosk.refusal is not None
    assert decoded == []  # neither a forged token nor another kiosk's token got the image decoded
    done = complete(found.identification_token, request_id="c3")
    assert done.refusal is None, done.refusal
    assert decoded == [1]
