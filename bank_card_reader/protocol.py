"""EMV / PBOC 3.0 on the wire: BER-TLV, APDUs, DOLs, AFL, tags, and magnetic-stripe track text.

Pure functions, no I/O: the driver sends what these build and hands back what the card said; the
virtual cards in bank_card_reader.simulator build their answers with the same functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bank_card_reader.errors import CardDataError, InvalidCardNumberError, TlvError
from bank_card_reader.models import BankCardData, CardSource
from personal_data import bank_card as pan_rules

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Iterator, Mapping

PSE: Final = b"1PAY.SYS.DDF01"
PPSE: Final = b"2PAY.SYS.DDF01"

#: Applications we look for when a card has no usable directory, in order of preference.
KNOWN_AIDS: Final[dict[str, str]] = {
    "A000000333010101": "UnionPay debit 银联借记",
    "A000000333010102": "UnionPay credit 银联贷记",
    "A000000333010103": "UnionPay quasi-credit 银联准贷记",
    "A0000000031010": "Visa",
    "A0000000032010": "Visa Electron",
    "A0000000041010": "Mastercard",
    "A0000000043060": "Maestro",
    "A00000002501": "American Express",
    "A0000000651010": "JCB",
    "A0000001523010": "Discover",
}


class Tag:
    """EMV tags the reader uses."""

    FCI = 0x6F
    DF_NAME = 0x84
    FCI_PROPRIETARY = 0xA5
    SFI = 0x88
    FCI_ISSUER_DISCRETIONARY = 0xBF0C
    APPLICATION_TEMPLATE = 0x61
    AID = 0x4F
    LABEL = 0x50
    PRIORITY = 0x87
    PDOL = 0x9F38
    RECORD_TEMPLATE = 0x70
    GPO_FORMAT_1 = 0x80
    GPO_FORMAT_2 = 0x77
    AIP = 0x82
    AFL = 0x94
    PAN = 0x5A
    TRACK2 = 0x57
    EXPIRY = 0x5F24
    HOLDER_NAME = 0x5F20
    HOLDER_NAME_EXTENDED = 0x9F0B
    PAN_SEQUENCE = 0x5F34


# --- BER-TLV ---------------------------------------------------------------------------------------

MAX_DEPTH: Final = 8


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV object; `children` is set for constructed tags."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = field(default=None)

    @property
    def constructed(self) -> bool:
        """True for a constructed (template) tag."""
        return self.children is not None


def _tag_is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def decode_tlv(data: bytes, *, depth: int = 0) -> list[Tlv]:  # noqa: C901, PLR0912 - one pass over a byte format
    """Parse BER-TLV bytes into objects (recursively), or raise TlvError saying where it broke."""
    if depth > MAX_DEPTH:
        raise TlvError(f"BER-TLV nested deeper than {MAX_DEPTH} levels")
    out: list[Tlv] = []
    i = 0
    n = len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):  # padding allowed between objects (EMV Book 3, Annex B)
            i += 1
            continue
        start = i
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= n:
                    raise TlvError(f"BER-TLV tag at offset {start} is cut off")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
                if i - start > 4:
                    raise TlvError(f"BER-TLV tag at offset {start} is longer than 4 bytes")
        if i >= n:
            raise TlvError(f"BER-TLV object at offset {start} has no length")
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3:
                raise TlvError(f"BER-TLV length at offset {i - 1} uses {count} bytes (1..3 allowed)")
            if i + count > n:
                raise TlvError(f"BER-TLV length at offset {i - 1} is cut off")
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > n:
            raise TlvError(f"BER-TLV object {tag:X} at offset {start} claims {length} bytes, {n - i} remain")
        value = bytes(data[i : i + length])
        i += length
        children = tuple(decode_tlv(value, depth=depth + 1)) if _tag_is_constructed(tag) else None
        out.append(Tlv(tag, value, children))
    return out


def encode_length(length: int) -> bytes:
    """BER length octets."""
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise ValueError(f"BER-TLV value too long: {length} bytes")


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV object."""
    return tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big") + encode_length(len(value)) + value


def walk(tlvs: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first."""
    for item in tlvs:
        yield item
        if item.children is not None:
            yield from walk(item.children)


def find_tag(tlvs: Iterable[Tlv], tag: int) -> bytes | None:
    """The value of the first object with this tag, at any depth."""
    return next((t.value for t in walk(tlvs) if t.tag == tag), None)


# --- APDUs ---------------------------------------------------------------------------------------


def select_apdu(name: bytes) -> bytes:
    """SELECT by DF name (first or only occurrence), Le 00."""
    return bytes([0x00, 0xA4, 0x04, 0x00, len(name)]) + name + b"\x00"


def read_record_apdu(sfi: int, record: int) -> bytes:
    """READ RECORD of one record of a short file (P2 = SFI<<3 | 4)."""
    return bytes([0x00, 0xB2, record, (sfi << 3) | 4, 0x00])


def gpo_apdu(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS with the PDOL values wrapped in tag 83."""
    body = encode_tlv(0x83, pdol_data)
    return bytes([0x80, 0xA8, 0x00, 0x00, len(body)]) + body + b"\x00"


def get_response_apdu(length: int) -> bytes:
    """GET RESPONSE for T=0 chaining (61xx)."""
    return bytes([0x00, 0xC0, 0x00, 0x00, length])


# --- DOL, AFL, directory -------------------------------------------------------------------------


def parse_dol(data: bytes) -> list[tuple[int, int]]:
    """A data object list: (tag, length) pairs with no values."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(data):
        start = i
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= len(data):
                    raise TlvError(f"DOL tag at offset {start} is cut off")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80 or i - start > 4:
                    break
        if i >= len(data):
            raise TlvError(f"DOL entry {tag:X} at offset {start} has no length")
        out.append((tag, data[i]))
        i += 1
    return out


#: Tags whose values are numeric (format n): pad on the left with zeros; others pad on the right.
NUMERIC_TAGS: Final = frozenset({0x9F02, 0x9F03, 0x5F2A, 0x9F1A, 0x9A, 0x9C, 0x9F21, 0x5F36})


def terminal_values(today: dt.date, unpredictable_number: bytes) -> dict[int, bytes]:
    """What this kiosk says about itself in a PDOL: an unattended online-only terminal in China.

    It asks for a zero amount, because it only reads the card number and never pays or charges.
    """
    return {
        0x9F66: bytes.fromhex("26000080"),  # TTQ: contactless qPBOC + contact chip, online capable, no CVM
        0x9F02: bytes(6),  # amount authorised 0.00
        0x9F03: bytes(6),  # amount other 0.00
        0x9F1A: bytes.fromhex("0156"),  # terminal country: China
        0x5F2A: bytes.fromhex("0156"),  # transaction currency: CNY
        0x95: bytes(5),  # TVR
        0x9A: bytes.fromhex(today.strftime("%y%m%d")),  # transaction date
        0x9C: b"\x30",  # transaction type: balance/information inquiry, not a purchase
        0x9F37: unpredictable_number[:4].rjust(4, b"\x00"),
        0x9F35: b"\x24",  # terminal type: merchant-operated unattended, online only
        0x9F33: bytes.fromhex("600808"),  # capabilities: magstripe + chip; no CVM; no offline data auth
        0x9F40: bytes.fromhex("0000000000"),
        0x9F7A: b"\x00",  # VLP (electronic cash) not requested
        0xDF60: b"\x00",
    }


def build_dol_data(dol: Iterable[tuple[int, int]], values: Mapping[int, bytes]) -> bytes:
    """Concatenate each requested tag's value at the requested length (zeros for unknown tags)."""
    out = bytearray()
    for tag, length in dol:
        value = values.get(tag, b"")
        if len(value) > length:
            value = value[-length:] if tag in NUMERIC_TAGS else value[:length]
        elif tag in NUMERIC_TAGS:
            value = value.rjust(length, b"\x00")
        else:
            value = value.ljust(length, b"\x00")
        out += value
    return bytes(out)


@dataclass(frozen=True, slots=True)
class AflEntry:
    """One Application File Locator entry: read records first..last of short file sfi."""

    sfi: int
    first: int
    last: int
    offline_records: int

    def records(self) -> range:
        """Record numbers to read."""
        return range(self.first, self.last + 1)


def parse_afl(data: bytes) -> list[AflEntry]:
    """Split an AFL into entries, checking each (CardDataError if impossible)."""
    if len(data) % 4:
        raise CardDataError(f"AFL length must be a multiple of 4, got {len(data)}")
    out = []
    for i in range(0, len(data), 4):
        sfi, first, last, offline = data[i] >> 3, data[i + 1], data[i + 2], data[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or offline > last - first + 1:
            raise CardDataError(f"AFL entry {i // 4} is invalid: {data[i : i + 4].hex().upper()}")
        out.append(AflEntry(sfi, first, last, offline))
    return out


def parse_gpo_response(data: bytes) -> tuple[bytes, list[AflEntry], list[Tlv]]:
    """(AIP, AFL entries, all objects) from a GPO reply in format 1 (tag 80) or format 2 (tag 77)."""
    tlvs = decode_tlv(data)
    if not tlvs:
        raise CardDataError("GET PROCESSING OPTIONS returned no data")
    top = tlvs[0]
    if top.tag == Tag.GPO_FORMAT_1:
        if len(top.value) < 2:
            raise CardDataError("GPO format 1 reply is shorter than its 2-byte AIP")
        return top.value[:2], parse_afl(top.value[2:]), tlvs
    if top.tag == Tag.GPO_FORMAT_2:
        aip = find_tag(tlvs, Tag.AIP)
        afl = find_tag(tlvs, Tag.AFL)
        if aip is None:
            raise CardDataError("GPO format 2 reply has no AIP (82)")
        return aip, parse_afl(afl or b""), tlvs
    raise CardDataError(f"GPO reply must start with tag 80 or 77, got {top.tag:X}")


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """An application listed in a PSE record or a PPSE reply."""

    aid: bytes
    label: str
    priority: int


def parse_directory(tlvs: Iterable[Tlv]) -> list[DirectoryEntry]:
    """The applications (61 → 4F/50/87) listed in a directory, highest priority first."""
    entries = []
    for item in walk(tlvs):
        if item.tag != Tag.APPLICATION_TEMPLATE or item.children is None:
            continue
        aid = find_tag(item.children, Tag.AID)
        if not aid or not 5 <= len(aid) <= 16:
            continue
        label = (find_tag(item.children, Tag.LABEL) or b"").decode("ascii", "replace").strip()
        priority_raw = find_tag(item.children, Tag.PRIORITY)
        # Lower number = higher priority; 0 or absent means "no priority" and sorts last.
        priority = (priority_raw[0] & 0x0F) if priority_raw else 0
        entries.append(DirectoryEntry(aid, label, priority or 16))
    return sorted(entries, key=lambda e: e.priority)


# --- card data -----------------------------------------------------------------------------------


def pan_from_bcd(value: bytes) -> str:
    """Tag 5A: BCD digits padded with F."""
    digits = value.hex().upper().rstrip("F")
    if not digits.isdigit():
        raise CardDataError("tag 5A is not BCD digits padded with F")
    return digits


def parse_track2_equivalent(value: bytes) -> tuple[str, str | None]:
    """Tag 57: PAN 'D' YYMM service code discretionary, F-padded -> (PAN, YYMM or None)."""
    text = value.hex().upper().rstrip("F")
    pan, separator, rest = text.partition("D")
    if not separator or not pan.isdigit():
        raise CardDataError("tag 57 is not PAN D YYMM... (track 2 equivalent data)")
    return pan, _expiry(rest[:4])


def _expiry(yymm: str) -> str | None:
    """YYMM when it is a plausible expiry, else None (some cards carry 0000)."""
    if len(yymm) == 4 and yymm.isdigit() and 1 <= int(yymm[2:]) <= 12:
        return yymm
    return None


def _holder_name(raw: bytes | None) -> str | None:
    if not raw:
        return None
    name = raw.decode("latin-1").strip(" \x00/")
    return name or None


def card_data_from_records(tlvs: Iterable[Tlv], *, source: CardSource, aid: str | None) -> BankCardData:
    """PAN (5A, else 57), expiry (5F24, else 57) and holder name (5F20/9F0B) from everything read."""
    items = list(tlvs)
    pan: str | None = None
    expiry: str | None = None
    raw_pan = find_tag(items, Tag.PAN)
    if raw_pan is not None:
        pan = pan_from_bcd(raw_pan)
    raw_track2 = find_tag(items, Tag.TRACK2)
    if raw_track2 is not None:
        track_pan, expiry = parse_track2_equivalent(raw_track2)
        if pan is not None and track_pan != pan:
            raise CardDataError("the card's PAN (5A) and track 2 data (57) disagree")
        pan = pan or track_pan
    raw_expiry = find_tag(items, Tag.EXPIRY)
    if raw_expiry is not None and len(raw_expiry) == 3:
        expiry = _expiry(raw_expiry.hex()[:4]) or expiry
    if pan is None:
        raise CardDataError("the card's records hold no card number (neither 5A nor 57)")
    try:
        pan = pan_rules.validate(pan)
    except pan_rules.InvalidCardNumberError as err:
        raise CardDataError(f"the card number on the chip is not valid: {err}") from err
    name = _holder_name(find_tag(items, Tag.HOLDER_NAME)) or _holder_name(find_tag(items, Tag.HOLDER_NAME_EXTENDED))
    return BankCardData(pan=pan, expiry_yymm=expiry, holder_name=name, source=source, aid=aid)


# --- magnetic stripe (keyboard wedge) and typed entry ----------------------------------------------

_TRACK1: Final = re.compile(r"%B(?P<pan>\d{1,19})\^(?P<name>[^^?]{0,26})\^(?P<yymm>\d{4}|\^)?[^?]*\?")
_TRACK2: Final = re.compile(r";(?P<pan>\d{1,19})=(?P<yymm>\d{4}|=)?[^?]*\?")
#: Keyboard-wedge readers type %E? or ;E? when the stripe could not be read.
_READ_ERROR: Final = re.compile(r"[%;+]E\?")


def _checked(pan: str, what: str) -> str:
    try:
        return pan_rules.validate(pan)
    except pan_rules.InvalidCardNumberError as err:
        raise InvalidCardNumberError(f"{what}: {err}") from err


def parse_swipe(text: str) -> BankCardData:
    """A keyboard-wedge swipe (track 1 and/or track 2 text) to card data, Luhn-checked."""
    if _READ_ERROR.search(text):
        raise InvalidCardNumberError("刷卡读取失败，请重新刷卡 / the reader could not read the stripe; swipe again")
    track1 = _TRACK1.search(text)
    track2 = _TRACK2.search(text)
    if track1 is None and track2 is None:
        raise InvalidCardNumberError(
            "未识别到磁条数据 / no track 1 (%B...^...^...?) or track 2 (;...=...?) data in the swipe"
        )
    pan = track2["pan"] if track2 else track1["pan"] if track1 else ""
    if track1 and track2 and track1["pan"] != track2["pan"]:
        raise InvalidCardNumberError("磁道1与磁道2卡号不一致 / track 1 and track 2 hold different card numbers")
    yymm_raw = (track2["yymm"] if track2 else None) or (track1["yymm"] if track1 else None) or ""
    name = track1["name"].strip(" /") if track1 else ""
    return BankCardData(
        pan=_checked(pan, "刷卡卡号 / swiped card number"),
        expiry_yymm=_expiry(yymm_raw),
        holder_name=name or None,
        source="swipe",
    )


def parse_typed(text: str) -> BankCardData:
    """A card number typed by the expert (spaces and dashes allowed), Luhn-checked."""
    return BankCardData(
        pan=_checked(text, "输入的卡号 / typed card number"), expiry_yymm=None, holder_name=None, source="typed"
    )
