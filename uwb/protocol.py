"""Pure framing and parsing of the gateway link: DWM1001-style TLVs inside a small CRC-checked envelope.

The envelope (``55 SEQ LEN <TLVs> CRC16``) exists because bare UART TLV has no sync: a lost byte
shifts every later frame, and gaps cannot be used to resync once the link runs through USB-CDC or
TCP (``socket://``), which coalesce and split bytes at will. See docs/uwb-protocol.md.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from uwb.errors import ProtocolError
from uwb.models import DownlinkState, DownlinkStatus, GatewayStatus, StatusFlag

SYNC = 0x55
#: SYNC, SEQ, LEN before the body; CRC-16 after it.
ENVELOPE_HEADER_LEN = 3
ENVELOPE_TRAILER_LEN = 2
#: Same ceiling as DWM1001_TLV_MAX_SIZE.
MAX_BODY_LEN = 255
#: DWM_USR_DATA_LEN_MAX: the most user data one downlink can carry.
MAX_USER_DATA_LEN = 34


class TlvType(enum.IntEnum):
    """TLV type codes: DWM1001 PANS codes where they fit, vendor codes 0xA0-0xAF / 0xC0-0xCF for the gateway."""

    # Requests (host → gateway). Standard DWM1001 codes:
    USR_DATA_READ = 0x19
    NODE_ID_GET = 0x30
    STATUS_GET = 0x32
    # Vendor requests:
    DL_DATA_WRITE = 0xA0
    DL_STATUS_GET = 0xA1
    TAG_DATA_READ = 0xA2
    # Responses (gateway → host). Standard DWM1001 codes:
    RET_VAL = 0x40
    USR_DATA = 0x4B
    NODE_ID = 0x4E
    STATUS = 0x5A
    # Vendor responses:
    DL_HANDLE = 0xC0
    DL_STATUS = 0xC1
    GW_COUNTERS = 0xC2


class ReturnValue(enum.IntEnum):
    """DWM1001 return values carried in the leading ``40 01 <rv>`` TLV of every response."""

    OK = 0
    UNKNOWN_OR_BROKEN = 1
    INTERNAL = 2
    INVALID_PARAM = 3
    BUSY = 4
    NOT_PERMITTED = 5


#: Downlink flag bit 0: replace a not-yet-delivered downlink to the same tag (as usr_data_write's overwrite).
DL_FLAG_OVERWRITE = 0x01


@dataclass(frozen=True, slots=True)
class Tlv:
    """One type-length-value element."""

    type: int
    value: bytes

    def encode(self) -> bytes:
        """Serialise as ``type len value``."""
        if not 0 <= self.type <= 0xFF:
            raise ProtocolError(f"TLV type must be 0..255, got {self.type}")
        if len(self.value) > 0xFF:
            raise ProtocolError(f"TLV value must be at most 255 bytes, got {len(self.value)}")
        return bytes((self.type, len(self.value))) + self.value


@dataclass(frozen=True, slots=True)
class Envelope:
    """One frame on the wire: a sequence number and a body of TLVs."""

    seq: int
    body: bytes


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): check ``b"123456789"`` → 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def held_check(data: bytes) -> int:
    """CRC-32 (zlib/IEEE) of the bytes a tag holds, as the tag reports it in its acknowledgement.

    Not CRC-16/CCITT: a payload already ends with its own CCITT check value, so CCITT over the
    whole payload is always 0 (the CRC residue) and would not tell payloads apart.
    """
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_envelope(seq: int, body: bytes) -> bytes:
    """Wrap a TLV body: ``55 SEQ LEN body CRC16(BE over SEQ LEN body)``."""
    if not 0 <= seq <= 0xFF:
        raise ProtocolError(f"Sequence number must be 0..255, got {seq}")
    if len(body) > MAX_BODY_LEN:
        raise ProtocolError(f"Frame body must be at most {MAX_BODY_LEN} bytes, got {len(body)}")
    covered = bytes((seq, len(body))) + body
    return bytes((SYNC,)) + covered + struct.pack(">H", crc16_ccitt(covered))


class EnvelopeDecoder:
    """Incremental decoder: feed any chunks of bytes, get whole CRC-valid envelopes; noise is skipped.

    Resync rule: on a bad CRC only the SYNC byte is dropped and the search restarts at the next
    byte, so a real frame that starts inside the garbage is still found.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Bytes discarded while hunting for a valid frame (for diagnostics).
        self.discarded = 0

    def feed(self, data: bytes) -> list[Envelope]:
        """Add received bytes and return every complete valid envelope, in order."""
        self._buffer += data
        frames: list[Envelope] = []
        while True:
            start = self._buffer.find(SYNC)
            if start < 0:
                self.discarded += len(self._buffer)
                self._buffer.clear()
                return frames
            if start:
                self.discarded += start
                del self._buffer[:start]
            if len(self._buffer) < ENVELOPE_HEADER_LEN:
                return frames
            body_len = self._buffer[2]
            total = ENVELOPE_HEADER_LEN + body_len + ENVELOPE_TRAILER_LEN
            if len(self._buffer) < total:
                return frames
            covered = bytes(self._buffer[1 : ENVELOPE_HEADER_LEN + body_len])
            (crc,) = struct.unpack(">H", self._buffer[total - 2 : total])
            if crc == crc16_ccitt(covered):
                frames.append(Envelope(seq=covered[0], body=covered[2:]))
                del self._buffer[:total]
            else:
                self.discarded += 1
                del self._buffer[:1]

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def drop_partial(self) -> list[Envelope]:
        """Timeout-based reset, for a line that has gone quiet: give up on the partial frame.

        A noise byte that looks like SYNC with a large "length" would otherwise hold back a real
        frame behind it until enough further bytes arrive. Dropping byte by byte and rescanning
        still finds any complete valid frame inside the held bytes.
        """
        frames: list[Envelope] = []
        while self._buffer:
            self.discarded += 1
            del self._buffer[:1]
            frames += self.feed(b"")
        return frames


def parse_tlvs(body: bytes) -> list[Tlv]:
    """Split a body into TLVs; a length running past the end is a broken frame."""
    tlvs: list[Tlv] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise ProtocolError(f"Broken TLV at offset {pos}: type without length byte")
        tlv_type, length = body[pos], body[pos + 1]
        end = pos + 2 + length
        if end > len(body):
            raise ProtocolError(
                f"Broken TLV 0x{tlv_type:02X} at offset {pos}: length {length} runs past the body ({len(body)} bytes)"
            )
        tlvs.append(Tlv(tlv_type, bytes(body[pos + 2 : end])))
        pos = end
    return tlvs


def encode_tlvs(*tlvs: Tlv) -> bytes:
    """Concatenate TLVs into one body."""
    return b"".join(t.encode() for t in tlvs)


# ---------------------------------------------------------------- requests (host → gateway)


def _tag_bytes(tag_id: int) -> bytes:
    if not 0 <= tag_id <= 0xFFFF:
        raise ProtocolError(f"Tag id must be 0..0xFFFF, got {tag_id}")
    return struct.pack("<H", tag_id)


def node_id_get_request() -> bytes:
    """``30 00``: the gateway's bridge node 64-bit id."""
    return Tlv(TlvType.NODE_ID_GET, b"").encode()


def status_get_request() -> bytes:
    """``32 00``: status flags and downlink counters."""
    return Tlv(TlvType.STATUS_GET, b"").encode()


def dl_data_write_request(tag_id: int, data: bytes, *, overwrite: bool) -> bytes:
    """``A0 <3+n> <tag LE16> <flags> <data>``: queue user data for a tag's next wake-up."""
    if not 1 <= len(data) <= MAX_USER_DATA_LEN:
        raise ProtocolError(f"Downlink user data must be 1..{MAX_USER_DATA_LEN} bytes, got {len(data)}")
    flags = DL_FLAG_OVERWRITE if overwrite else 0
    return Tlv(TlvType.DL_DATA_WRITE, _tag_bytes(tag_id) + bytes((flags,)) + data).encode()


def dl_status_get_request(msg_id: int) -> bytes:
    """``A1 02 <msg LE16>``: where a downlink stands."""
    if not 0 <= msg_id <= 0xFFFF:
        raise ProtocolError(f"Downlink id must be 0..0xFFFF, got {msg_id}")
    return Tlv(TlvType.DL_STATUS_GET, struct.pack("<H", msg_id)).encode()


def tag_data_read_request(tag_id: int) -> bytes:
    """``A2 02 <tag LE16>``: the data the tag last acknowledged holding (usr_data_read semantics, per tag)."""
    return Tlv(TlvType.TAG_DATA_READ, _tag_bytes(tag_id)).encode()


# ---------------------------------------------------------------- responses (gateway → host)


def response(rv: ReturnValue, *tlvs: Tlv) -> bytes:
    """Build a response body: the return-value TLV first, data TLVs after it (only when rv is OK)."""
    return encode_tlvs(Tlv(TlvType.RET_VAL, bytes((rv,))), *(tlvs if rv == ReturnValue.OK else ()))


@dataclass(frozen=True, slots=True)
class Response:
    """A parsed response: return value and the data TLVs by type."""

    rv: int
    data: dict[int, bytes]

    def require(self, tlv_type: TlvType, length: int | None = None) -> bytes:
        """The value of a data TLV that must be present (with an exact length if given)."""
        value = self.data.get(tlv_type)
        if value is None:
            raise ProtocolError(f"Response lacks TLV 0x{tlv_type:02X} ({tlv_type.name})")
        if length is not None and len(value) != length:
            raise ProtocolError(f"TLV 0x{tlv_type:02X} ({tlv_type.name}) must be {length} bytes, got {len(value)}")
        return value


def parse_response(body: bytes) -> Response:
    """Parse a response body; it must start with ``40 01 <rv>``."""
    tlvs = parse_tlvs(body)
    if not tlvs or tlvs[0].type != TlvType.RET_VAL or len(tlvs[0].value) != 1:
        raise ProtocolError(f"Response must start with return-value TLV 40 01 <rv>, got {body[:3].hex(' ')}")
    data: dict[int, bytes] = {}
    for tlv in tlvs[1:]:
        if tlv.type in data:
            raise ProtocolError(f"Response repeats TLV 0x{tlv.type:02X}")
        data[tlv.type] = tlv.value
    return Response(rv=tlvs[0].value[0], data=data)


def decode_node_id(resp: Response) -> int:
    """``4E 08 <u64 LE>``."""
    (node_id,) = struct.unpack("<Q", resp.require(TlvType.NODE_ID, 8))
    return int(node_id)


def decode_status(resp: Response, node_id: int) -> GatewayStatus:
    """``5A 02 <flags LE16>`` and ``C2 08 <queued LE16> <heard LE16> <acked LE32>``."""
    (flags,) = struct.unpack("<H", resp.require(TlvType.STATUS, 2))
    queued, heard, acked = struct.unpack("<HHI", resp.require(TlvType.GW_COUNTERS, 8))
    return GatewayStatus(node_id=node_id, flags=StatusFlag(flags), queued=queued, tags_heard=heard, acked_total=acked)


def decode_dl_handle(resp: Response) -> int:
    """``C0 02 <msg LE16>``: the id under which the gateway queued a downlink."""
    (msg_id,) = struct.unpack("<H", resp.require(TlvType.DL_HANDLE, 2))
    return int(msg_id)


def decode_dl_status(resp: Response) -> DownlinkStatus:
    """``C1 09 <msg LE16> <tag LE16> <state> <held check LE32>``."""
    msg_id, tag_id, state, held_crc = struct.unpack("<HHBI", resp.require(TlvType.DL_STATUS, 9))
    try:
        dl_state = DownlinkState(state)
    except ValueError as err:
        raise ProtocolError(f"Unknown downlink state {state} in TLV C1") from err
    return DownlinkStatus(msg_id=msg_id, tag_id=tag_id, state=dl_state, held_crc=held_crc)


def decode_usr_data(resp: Response) -> bytes:
    """``4B <len> <data>``; empty when the gateway has no data from that tag."""
    data = resp.require(TlvType.USR_DATA)
    if len(data) > MAX_USER_DATA_LEN:
        raise ProtocolError(f"User data must be at most {MAX_USER_DATA_LEN} bytes, got {len(data)}")
    return data
