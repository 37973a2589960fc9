"""SAM serial protocol of 2nd-generation ID card readers (GA 467 style): frames, codes, text layout.

Pure functions and a byte-stream framer, no I/O. Both the driver and the simulator use them, so
the two ends of the wire share one definition of every byte.

Frame (both directions)::

    AA AA AA 96 69 | LEN_H LEN_L | body... | CHK

LEN counts every byte after itself including CHK; CHK is the XOR of LEN_H..the byte before CHK.
A request body is CMD PARA [DATA]; a reply body is SW1 SW2 SW3 [DATA].
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Final

from id_card_reader.errors import (
    SW3_TEXT,
    FrameChecksumError,
    FrameFormatError,
    IdCardProtocolError,
    IdentityDataError,
    SamStatusError,
    Sw3,
    UnsupportedCardTypeError,
)
from id_card_reader.models import IdentityCard
from personal_data import id_number as id_rules

PREAMBLE: Final = b"\xaa\xaa\xaa\x96\x69"
HEADER_LEN: Final = len(PREAMBLE) + 2
#: Largest LEN a reader sends: base info + 1024-byte fingerprint (0x090A); anything above is noise.
MAX_BODY_LEN: Final = 0x0A00
TEXT_LEN: Final = 256
PHOTO_LEN: Final = 1024
BAUDRATE: Final = 115200


class Command(enum.IntEnum):
    """CMD PARA pairs, as one 16-bit value (CMD << 8 | PARA)."""

    RESET_SAM = 0x10FF
    GET_SAM_STATUS = 0x11FF
    READ_SAM_ID = 0x12FF
    FIND_CARD = 0x2001
    SELECT_CARD = 0x2002
    READ_BASE_INFO = 0x3001
    READ_BASE_INFO_FINGERPRINT = 0x3010
    SET_MAX_RF_BYTE = 0x61FF


def checksum(data: bytes) -> int:
    """XOR of the bytes from LEN_H to the byte before CHK."""
    return reduce(xor, data, 0)


def build_frame(body: bytes) -> bytes:
    """Wrap a body (CMD PARA DATA, or SW1 SW2 SW3 DATA) into a complete frame."""
    if len(body) + 1 > 0xFFFF:
        raise ValueError(f"a SAM frame body holds at most 65534 bytes, got {len(body)}")
    length = (len(body) + 1).to_bytes(2, "big")
    return PREAMBLE + length + body + bytes([checksum(length + body)])


def build_request(command: Command, data: bytes = b"") -> bytes:
    """A host → reader frame for a command."""
    return build_frame(int(command).to_bytes(2, "big") + data)


def build_reply(sw3: int, data: bytes = b"", *, sw1: int = 0, sw2: int = 0) -> bytes:
    """A reader → host frame with a status and data."""
    return build_frame(bytes([sw1, sw2, sw3]) + data)


@dataclass(frozen=True, slots=True)
class SamFrame:
    """One checked frame: its body, without preamble, LEN and CHK."""

    body: bytes

    def as_request(self) -> tuple[int, bytes]:
        """(CMD<<8|PARA, DATA) of a host → reader frame."""
        if len(self.body) < 2:
            raise FrameFormatError(f"a request body needs CMD and PARA, got {len(self.body)} byte(s)")
        return int.from_bytes(self.body[:2], "big"), self.body[2:]

    def as_reply(self) -> SamReply:
        """The reply view (SW1 SW2 SW3 DATA) of a reader → host frame."""
        if len(self.body) < 3:
            raise FrameFormatError(f"a reply body needs SW1 SW2 SW3, got {len(self.body)} byte(s)")
        return SamReply(self.body[0], self.body[1], self.body[2], self.body[3:])


@dataclass(frozen=True, slots=True)
class SamReply:
    """A reader's reply: status words and data."""

    sw1: int
    sw2: int
    sw3: int
    data: bytes

    @property
    def ok(self) -> bool:
        """True for the success statuses (0x90, 0x9F) with SW1 SW2 = 00 00."""
        return self.sw1 == 0 and self.sw2 == 0 and self.sw3 in (Sw3.SUCCESS, Sw3.CARD_FOUND)

    def error(self, during: str) -> SamStatusError:
        """The typed error for this (failed) status, naming the step it happened in."""
        text = SW3_TEXT.get(self.sw3, "未知状态 / unknown status")
        return SamStatusError.from_status(
            self.sw3, f"{during}: SW1 SW2 SW3 = {self.sw1:02X} {self.sw2:02X} {self.sw3:02X} ({text})"
        )


def decode_frame(data: bytes) -> SamFrame:
    """Parse exactly one complete frame, or raise the IdCardProtocolError that says what is wrong."""
    if len(data) < HEADER_LEN + 1:
        raise FrameFormatError(f"a SAM frame has at least {HEADER_LEN + 1} bytes, got {len(data)}")
    if not data.startswith(PREAMBLE):
        raise FrameFormatError(f"a SAM frame starts with AA AA AA 96 69, got {data[:5].hex(' ').upper()}")
    length = int.from_bytes(data[5:7], "big")
    if length < 2 or length > MAX_BODY_LEN:
        raise FrameFormatError(f"SAM frame LEN must be 2..{MAX_BODY_LEN}, got {length}")
    if len(data) != HEADER_LEN + length:
        raise FrameFormatError(f"SAM frame LEN says {HEADER_LEN + length} bytes in all, got {len(data)}")
    if checksum(data[5:-1]) != data[-1]:
        raise FrameChecksumError(f"SAM frame check byte is {data[-1]:02X}, expected {checksum(data[5:-1]):02X}")
    return SamFrame(bytes(data[HEADER_LEN:-1]))


class FrameAssembler:
    """Turns a byte stream into frames, resynchronising on the preamble after noise or damage.

    feed() returns frames and, as values, the protocol errors it recovered from (so the caller
    can count and log them); it never raises.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0

    def reset(self) -> None:
        """Forget any partial frame (before a new command, after a timeout)."""
        self._buffer.clear()

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SamFrame | IdCardProtocolError]:
        """Add received bytes; return every frame (or recovered error) they complete."""
        self._buffer.extend(data)
        out: list[SamFrame | IdCardProtocolError] = []
        while True:
            start = self._buffer.find(PREAMBLE)
            if start < 0:
                # Keep a tail that may be the start of a preamble split across reads.
                keep = next(
                    (
                        n
                        for n in range(min(len(PREAMBLE) - 1, len(self._buffer)), 0, -1)
                        if self._buffer.endswith(PREAMBLE[:n])
                    ),
                    0,
                )
                self._drop(len(self._buffer) - keep)
                return out
            if start:
                self._drop(start)
            if len(self._buffer) < HEADER_LEN:
                return out
            length = int.from_bytes(self._buffer[5:7], "big")
            if length < 2 or length > MAX_BODY_LEN:
                out.append(FrameFormatError(f"SAM frame LEN must be 2..{MAX_BODY_LEN}, got {length}"))
                self._drop(1)
                continue
            if len(self._buffer) < HEADER_LEN + length:
                return out
            raw = bytes(self._buffer[: HEADER_LEN + length])
            if checksum(raw[5:-1]) != raw[-1]:
                out.append(
                    FrameChecksumError(f"SAM frame check byte is {raw[-1]:02X}, expected {checksum(raw[5:-1]):02X}")
                )
                # The length itself may be the damaged byte: look for a preamble inside this frame.
                self._drop(1)
                continue
            out.append(SamFrame(raw[HEADER_LEN:-1]))
            del self._buffer[: HEADER_LEN + length]

    def _drop(self, n: int) -> None:
        self.discarded += n
        del self._buffer[:n]


# --- read base info (30 01) reply --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaseInfo:
    """The data of a read-base-info reply: text, WLT photo and, for 30 10, the fingerprint."""

    text: bytes
    photo_wlt: bytes
    fingerprint: bytes = b""


def decode_base_info(data: bytes, *, with_fingerprint: bool = False) -> BaseInfo:
    """Split the reply data: u16 text length, u16 photo length, [u16 fingerprint length], blocks."""
    header = 6 if with_fingerprint else 4
    if len(data) < header:
        raise FrameFormatError(f"base info needs a {header}-byte length header, got {len(data)} byte(s)")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    fp_len = int.from_bytes(data[4:6], "big") if with_fingerprint else 0
    if text_len != TEXT_LEN:
        raise FrameFormatError(f"base info text must be {TEXT_LEN} bytes, the reply says {text_len}")
    if photo_len != PHOTO_LEN:
        raise FrameFormatError(f"base info photo must be {PHOTO_LEN} bytes, the reply says {photo_len}")
    if len(data) != header + text_len + photo_len + fp_len:
        raise FrameFormatError(
            f"base info holds {header + text_len + photo_len + fp_len} bytes by its header, got {len(data)}"
        )
    text = data[header : header + text_len]
    photo = data[header + text_len : header + text_len + photo_len]
    return BaseInfo(bytes(text), bytes(photo), bytes(data[header + text_len + photo_len :]))


def encode_base_info(info: BaseInfo, *, with_fingerprint: bool = False) -> bytes:
    """The reply data for a base-info read (simulator side)."""
    head = len(info.text).to_bytes(2, "big") + len(info.photo_wlt).to_bytes(2, "big")
    if with_fingerprint:
        head += len(info.fingerprint).to_bytes(2, "big")
    return head + info.text + info.photo_wlt + info.fingerprint


# --- the 256-byte text block ------------------------------------------------------------------

# (name, byte offset, byte length) in the UCS-2 LE text; see hardware-protocols.md section 1.5.
TEXT_FIELDS: Final = (
    ("name", 0, 30),
    ("sex", 30, 2),
    ("nation", 32, 4),
    ("birth", 36, 16),
    ("address", 52, 70),
    ("id_number", 122, 36),
    ("authority", 158, 30),
    ("valid_from", 188, 16),
    ("valid_to", 204, 16),
    ("reserved", 220, 36),
)
LONG_TERM: Final = "长期"
SEX_CODES: Final = frozenset({"0", "1", "2", "9"})
#: Card-type marker inside the reserved area: 'I' = foreigner's permanent residence card (other layout).
CARD_TYPE_OFFSET: Final = 248
FOREIGNER_CARD_MARK: Final = "I"


def _field(text: bytes, name: str, offset: int, size: int) -> str:
    try:
        value = text[offset : offset + size].decode("utf-16-le")
    except UnicodeDecodeError as err:
        raise IdentityDataError(f"身份证信息字段{name}不是UCS-2文本 / field {name!r} is not UCS-2 text") from err
    # Unused positions are spaces; some readers pad with NULs instead.
    return value.replace("\x00", " ").strip()


def _date(value: str, name: str) -> dt.date:
    if len(value) != 8 or not value.isdigit():
        raise IdentityDataError(
            f"身份证信息{name}应为YYYYMMDD / field {name!r} must be YYYYMMDD, got {len(value)} chars"
        )
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as err:
        raise IdentityDataError(f"身份证信息{name}不是有效日期 / field {name!r} is not a date") from err


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year + years, day=28)


#: Longest fixed validity of a resident ID card (ages 26-45); 长期 beyond that.
MAX_VALIDITY_YEARS: Final = 20


def decode_identity_text(text: bytes, photo_wlt: bytes) -> IdentityCard:
    """Parse and check the 256-byte text block into an IdentityCard (IdentityDataError if invalid)."""
    if len(text) != TEXT_LEN:
        raise IdentityDataError(f"身份证文字信息应为{TEXT_LEN}字节 / the text block must be {TEXT_LEN} bytes")
    fields = {name: _field(text, name, off, size) for name, off, size in TEXT_FIELDS}
    if text[CARD_TYPE_OFFSET : CARD_TYPE_OFFSET + 2] == FOREIGNER_CARD_MARK.encode("utf-16-le"):
        raise UnsupportedCardTypeError("不支持外国人永久居留身份证 / foreigner's residence cards are not supported")
    if not fields["name"]:
        raise IdentityDataError("身份证信息缺少姓名 / the name field is empty")
    if fields["sex"] not in SEX_CODES:
        raise IdentityDataError("身份证信息性别代码无效 / the sex code must be 0, 1, 2 or 9")
    nation = fields["nation"]
    if len(nation) != 2 or not nation.isdigit():
        raise IdentityDataError("身份证信息民族代码无效 / the nation code must be two digits")
    birth = _date(fields["birth"], "birth")
    try:
        number = id_rules.validate(fields["id_number"])
    except id_rules.InvalidIdNumberError as err:
        raise IdentityDataError(f"公民身份号码无效 / ID number invalid: {err}") from err
    if number[6:14] != fields["birth"]:
        raise IdentityDataError("身份证号码与出生日期不符 / the ID number does not match the birth date")
    valid_from = _date(fields["valid_from"], "valid_from")
    valid_to = None if fields["valid_to"] == LONG_TERM else _date(fields["valid_to"], "valid_to")
    if valid_from < birth:
        raise IdentityDataError("有效期起始日早于出生日期 / the validity starts before the birth date")
    if valid_to is not None and not (valid_from < valid_to <= _add_years(valid_from, MAX_VALIDITY_YEARS)):
        raise IdentityDataError(
            f"有效期限无效 / the validity period must end after it starts and last at most {MAX_VALIDITY_YEARS} years"
        )
    return IdentityCard(
        name=fields["name"],
        sex_code=fields["sex"],
        nation_code=nation,
        birth_date=birth,
        address=fields["address"],
        id_number=number,
        issuing_authority=fields["authority"],
        valid_from=valid_from,
        valid_to=valid_to,
        photo_wlt=bytes(photo_wlt),
    )


def encode_identity_text(card: IdentityCard, *, reserved: str = "") -> bytes:
    """Lay an identity out as the 256-byte UCS-2 text block (simulator side)."""
    values = {
        "name": card.name,
        "sex": card.sex_code,
        "nation": card.nation_code,
        "birth": card.birth_date.strftime("%Y%m%d"),
        "address": card.address,
        "id_number": card.id_number,
        "authority": card.issuing_authority,
        "valid_from": card.valid_from.strftime("%Y%m%d"),
        "valid_to": LONG_TERM if card.valid_to is None else card.valid_to.strftime("%Y%m%d"),
        "reserved": reserved,
    }
    out = bytearray()
    for name, _offset, size in TEXT_FIELDS:
        raw = values[name].encode("utf-16-le")
        if len(raw) > size:
            raise ValueError(f"field {name!r} holds {size // 2} characters, got {len(raw) // 2}")
        out += raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)
    return bytes(out)


def decode_sam_id(data: bytes) -> str:
    """The SAM's printed ID from a 12 FF reply: 'AA.BB-CCCC-DDDD-EEEE' (HslCommunication layout)."""
    if len(data) < 16:
        raise FrameFormatError(f"a SAM ID reply has 16 data bytes, got {len(data)}")
    parts = [int.from_bytes(data[i : i + 4], "little") for i in (4, 8, 12)]
    return f"{data[0]:02d}.{data[2]:02d}-" + "-".join(str(p) for p in parts)
