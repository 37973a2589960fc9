"""The PC/SC GET DATA pseudo-APDU that reads a contactless tag's UID, and its answers."""

from __future__ import annotations

from typing import Final

from band_reader.errors import BandProtocolError, BandUnreadableError, UnsupportedBandError

#: FF CA 00 00 00: GET DATA, P1=00 the UID (14443-A UID, 14443-B PUPI, FeliCa IDm), Le=00 all of it.
GET_UID: Final = bytes.fromhex("FFCA000000")
UID_LENGTHS: Final = frozenset({4, 7, 10})


def parse_uid_response(data: bytes, sw1: int, sw2: int) -> str:
    """The UID as upper-case hex from a GET DATA answer, or the typed error its status means."""
    sw = (sw1 << 8) | sw2
    if sw == 0x9000:
        if len(data) not in UID_LENGTHS:
            raise BandProtocolError(f"a tag UID has 4, 7 or 10 bytes, the reader returned {len(data)}")
        return data.hex().upper()
    if sw == 0x6300:
        raise BandUnreadableError("读取手环失败 / the reader could not read the band (63 00)")
    if sw == 0x6A81:
        raise UnsupportedBandError("读卡器或手环不支持读取UID / GET DATA is not supported (6A 81)")
    raise BandProtocolError(f"unexpected answer to GET DATA: SW {sw:04X}")
