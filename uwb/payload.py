"""The ≤34-byte band payload: encode and decode a room assignment or a clear, with a CRC-16 check value.

Layout (version 1), multi-byte integers big-endian::

    0      version << 4 | kind        (0x11 assign, 0x12 clear)
    1-2    tag id the payload is for  (the band refuses a payload for another tag)
    assign only, three fields, each a character count then the characters packed 6 bits each:
           batch code   1..16 chars  (≤ 1 + 12 bytes)
           hotel code   1..8 chars   (≤ 1 + 6 bytes)
           room number  1..10 chars  (≤ 1 + 8 bytes)
    last 2 CRC-16/CCITT-FALSE over every byte before it

The 64-character alphabet ``0-9 A-Z a-z - _`` is exactly what the platform allows in batch and hotel
codes; packing it 6 bits a character is what lets a 16-character batch code, an 8-character hotel
code and a 10-character room fit: 1 + 2 + 13 + 7 + 9 + 2 = 34 bytes, DWM_USR_DATA_LEN_MAX exactly.
"""

from __future__ import annotations

import re
import struct

from uwb.errors import PayloadError
from uwb.models import RESERVED_TAG_IDS, BandCleared, BandContent, PayloadKind, RoomAssignment
from uwb.protocol import MAX_USER_DATA_LEN, crc16_ccitt

VERSION = 1
MAX_BATCH_LEN = 16
MAX_HOTEL_LEN = 8
MAX_ROOM_LEN = 10
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELD_LIMITS = (("batch_code", MAX_BATCH_LEN), ("hotel_code", MAX_HOTEL_LEN), ("room_number", MAX_ROOM_LEN))
CLEAR_LEN = 5


def check_field(name: str, value: str, max_len: int) -> None:
    """Raise PayloadError unless ``value`` is 1..max_len characters of the allowed ASCII set."""
    if not value:
        raise PayloadError(f"{name} must not be empty")
    if len(value) > max_len:
        raise PayloadError(f"{name} {value!r} is {len(value)} characters; the band holds at most {max_len}")
    if not value.isascii() or not _ALLOWED.match(value):
        raise PayloadError(f"{name} {value!r} may only contain A-Z a-z 0-9 - _")


def validate_assignment(batch_code: str, hotel_code: str, room_number: str) -> None:
    """Check that batch, hotel and room fit the band before they are accepted (e.g. at room import)."""
    for (name, limit), value in zip(_FIELD_LIMITS, (batch_code, hotel_code, room_number), strict=True):
        check_field(name, value, limit)


def _check_tag(tag_id: int) -> None:
    if not 0 <= tag_id <= 0xFFFF or tag_id in RESERVED_TAG_IDS:
        raise PayloadError(f"Tag id must be 0x0001..0xFFFE, got {tag_id:#x}")


def _seal(body: bytes) -> bytes:
    return body + struct.pack(">H", crc16_ccitt(body))


def encode(content: BandContent) -> bytes:
    """Encode an assignment or a clear for one tag; raises PayloadError if a field does not fit."""
    _check_tag(content.tag_id)
    head = struct.pack(">BH", VERSION << 4 | _kind(content), content.tag_id)
    if isinstance(content, BandCleared):
        return _seal(head)
    validate_assignment(content.batch_code, content.hotel_code, content.room_number)
    body = bytearray(head)
    for value in (content.batch_code, content.hotel_code, content.room_number):
        body += bytes((len(value),)) + pack6(value)
    payload = _seal(bytes(body))
    # The field limits make this impossible; kept as a guard if someone raises a limit.
    if len(payload) > MAX_USER_DATA_LEN:
        raise PayloadError(f"Payload is {len(payload)} bytes; at most {MAX_USER_DATA_LEN} fit a downlink")
    return payload


def _kind(content: BandContent) -> PayloadKind:
    return PayloadKind.CLEAR if isinstance(content, BandCleared) else PayloadKind.ASSIGN


def decode(data: bytes) -> BandContent:
    """Decode a payload read back from a band; any defect raises PayloadError saying which."""
    if len(data) < CLEAR_LEN:
        raise PayloadError(f"Payload is {len(data)} bytes; the shortest valid one is {CLEAR_LEN}")
    if len(data) > MAX_USER_DATA_LEN:
        raise PayloadError(f"Payload is {len(data)} bytes; at most {MAX_USER_DATA_LEN} fit a downlink")
    (crc,) = struct.unpack(">H", data[-2:])
    if crc != crc16_ccitt(data[:-2]):
        raise PayloadError(f"Payload check value {crc:04X} does not match its content")
    header, tag_id = struct.unpack(">BH", data[:3])
    version, kind = header >> 4, header & 0x0F
    if version != VERSION:
        raise PayloadError(f"Payload version {version} is not supported (expected {VERSION})")
    _check_tag(tag_id)
    body = data[3:-2]
    if kind == PayloadKind.CLEAR:
        if body:
            raise PayloadError(f"Clear payload has {len(body)} unexpected bytes after the tag id")
        return BandCleared(tag_id=tag_id)
    if kind != PayloadKind.ASSIGN:
        raise PayloadError(f"Payload kind {kind} is unknown (1 assign, 2 clear)")
    return RoomAssignment(tag_id, *_decode_fields(body))


def pack6(text: str) -> bytes:
    """Pack characters of ALPHABET 6 bits each, most significant first, zero-padded to whole bytes."""
    bits = 0
    for char in text:
        bits = bits << 6 | _INDEX[char]
    pad = -6 * len(text) % 8
    return (bits << pad).to_bytes((6 * len(text) + pad) // 8, "big")


def unpack6(data: bytes, count: int) -> str:
    """Inverse of pack6; padding bits must be zero so every text has exactly one encoding."""
    pad = len(data) * 8 - 6 * count
    bits = int.from_bytes(data, "big")
    if bits & ((1 << pad) - 1):
        raise PayloadError("Packed field has non-zero padding bits")
    bits >>= pad
    return "".join(ALPHABET[(bits >> (6 * (count - 1 - i))) & 0x3F] for i in range(count))


def _decode_fields(body: bytes) -> tuple[str, str, str]:
    """Split the batch, hotel and room fields of an assignment."""
    fields: list[str] = []
    pos = 0
    for name, limit in _FIELD_LIMITS:
        if pos >= len(body):
            raise PayloadError(f"Payload ends before {name}")
        count = body[pos]
        if not 1 <= count <= limit:
            raise PayloadError(f"{name} length {count} is outside 1..{limit}")
        size = (6 * count + 7) // 8
        packed = body[pos + 1 : pos + 1 + size]
        if len(packed) != size:
            raise PayloadError(f"{name} of {count} characters runs past the end of the payload")
        fields.append(unpack6(packed, count))
        pos += 1 + size
    if pos != len(body):
        raise PayloadError(f"Payload has {len(body) - pos} unexpected bytes after room_number")
    return fields[0], fields[1], fields[2]
