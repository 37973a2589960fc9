"""The ≤34-byte band payload: encode and decode a room assignment or a clear, with a CRC-16 check value.

Layout (version 1), all multi-byte integers big-endian::

    0      version << 4 | kind        (0x11 assign, 0x12 clear)
    1-2    tag id the payload is for  (the band refuses a payload for another tag)
    assign only:
    3      batch length b (1..12), then b bytes of batch code
           hotel length h (1..6),  then h bytes of hotel code
           room length r (1..8),   then r bytes of room number
    last 2 CRC-16/CCITT-FALSE over every byte before it

Codes are printable ASCII from ``A-Z a-z 0-9 - _ . /``. The largest assignment is
1 + 2 + (1 + 12) + (1 + 6) + (1 + 8) + 2 = 34 bytes, DWM_USR_DATA_LEN_MAX exactly.
"""

from __future__ import annotations

import re
import struct

from uwb.errors import PayloadError
from uwb.models import RESERVED_TAG_IDS, BandCleared, BandContent, PayloadKind, RoomAssignment
from uwb.protocol import MAX_USER_DATA_LEN, crc16_ccitt

VERSION = 1
MAX_BATCH_LEN = 12
MAX_HOTEL_LEN = 6
MAX_ROOM_LEN = 8
_ALLOWED = re.compile(r"^[A-Za-z0-9._/-]+$")
_FIELD_LIMITS = (("batch_code", MAX_BATCH_LEN), ("hotel_code", MAX_HOTEL_LEN), ("room_number", MAX_ROOM_LEN))
CLEAR_LEN = 5


def check_field(name: str, value: str, max_len: int) -> None:
    """Raise PayloadError unless ``value`` is 1..max_len characters of the allowed ASCII set."""
    if not value:
        raise PayloadError(f"{name} must not be empty")
    if len(value) > max_len:
        raise PayloadError(f"{name} {value!r} is {len(value)} characters; the band holds at most {max_len}")
    if not value.isascii() or not _ALLOWED.match(value):
        raise PayloadError(f"{name} {value!r} may only contain A-Z a-z 0-9 - _ . /")


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
        raw = value.encode("ascii")
        body += bytes((len(raw),)) + raw
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


def _decode_fields(body: bytes) -> tuple[str, str, str]:
    """Split the length-prefixed batch, hotel and room fields of an assignment."""
    fields: list[str] = []
    pos = 0
    for name, limit in _FIELD_LIMITS:
        if pos >= len(body):
            raise PayloadError(f"Payload ends before {name}")
        length = body[pos]
        raw = body[pos + 1 : pos + 1 + length]
        if len(raw) != length:
            raise PayloadError(f"{name} length {length} runs past the end of the payload")
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise PayloadError(f"{name} is not ASCII") from err
        check_field(name, value, limit)
        fields.append(value)
        pos += 1 + length
    if pos != len(body):
        raise PayloadError(f"Payload has {len(body) - pos} unexpected bytes after room_number")
    return fields[0], fields[1], fields[2]
