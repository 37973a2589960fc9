"""Value types of the uwb package: tag ids, payload contents, delivery states and receipts."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

_TAG_ID_RE = re.compile(r"^[0-9A-Fa-f]{4}$")

#: Short ids 0x0000 and 0xFFFF are not valid node addresses (unset / broadcast).
RESERVED_TAG_IDS = frozenset({0x0000, 0xFFFF})


def parse_tag_id(text: str) -> int:
    """Parse a tag's 16-bit short id written as exactly 4 hex digits (``204C``), as on the band's label."""
    if not _TAG_ID_RE.match(text):
        raise ValueError(f"Tag id must be 4 hex digits like 204C, got {text!r}")
    value = int(text, 16)
    if value in RESERVED_TAG_IDS:
        raise ValueError(f"Tag id {text!r} is reserved (0000 and FFFF are not tag addresses)")
    return value


def format_tag_id(tag_id: int) -> str:
    """Format a short id as 4 upper-case hex digits, the form used in the database and on labels."""
    return f"{tag_id:04X}"


class PayloadKind(enum.IntEnum):
    """What a band payload tells the band to hold."""

    ASSIGN = 1
    CLEAR = 2


@dataclass(frozen=True, slots=True)
class RoomAssignment:
    """The hotel room and batch a band must carry for the tag it is addressed to."""

    tag_id: int
    batch_code: str
    hotel_code: str
    room_number: str


@dataclass(frozen=True, slots=True)
class BandCleared:
    """An empty band: the check-in was annulled or the band withdrawn."""

    tag_id: int


#: What a band holds after a payload is applied.
BandContent: TypeAlias = RoomAssignment | BandCleared


class DownlinkState(enum.IntEnum):
    """State of one downlink as the gateway reports it (TLV 0xC1)."""

    QUEUED = 0
    SENT = 1
    ACKED = 2
    NACKED = 3
    NO_ACK = 4
    UNREACHABLE = 5
    SUPERSEDED = 6
    UNKNOWN = 7


#: States after which the gateway will not change the downlink any more.
TERMINAL_DOWNLINK_STATES = frozenset(
    {
        DownlinkState.ACKED,
        DownlinkState.NACKED,
        DownlinkState.NO_ACK,
        DownlinkState.UNREACHABLE,
        DownlinkState.SUPERSEDED,
        DownlinkState.UNKNOWN,
    }
)


@dataclass(frozen=True, slots=True)
class DownlinkStatus:
    """One answer to a delivery-status query."""

    msg_id: int
    tag_id: int
    state: DownlinkState
    held_crc: int


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """Proof that a tag acknowledged holding exactly the payload sent to it."""

    tag_id: int
    msg_id: int
    #: CRC-32 of the payload, as the tag reported holding it.
    held_check: int
    elapsed_s: float


class StatusFlag(enum.IntFlag):
    """Bits of the DWM1001 status word (status_get 0x32 → 0x5A) that the gateway uses."""

    LOC_READY = 1 << 0
    UWBMAC_JOINED = 1 << 1
    BH_STATUS_CHANGED = 1 << 2
    BH_DATA_READY = 1 << 3
    BH_INITIALIZED = 1 << 4
    UWB_SCAN_READY = 1 << 5
    USR_DATA_READY = 1 << 6
    USR_DATA_SENT = 1 << 7
    FWUP_IN_PROGRESS = 1 << 8


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The gateway's node id, status flags and downlink counters."""

    node_id: int
    flags: StatusFlag
    queued: int
    tags_heard: int
    acked_total: int

    @property
    def radio_up(self) -> bool:
        """True when the gateway's bridge node has joined the UWB network and can reach tags."""
        return StatusFlag.UWBMAC_JOINED in self.flags
