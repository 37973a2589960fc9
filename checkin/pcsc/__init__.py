"""PC/SC plumbing: client access through pyscard, a private pcscd with vpcd, and the project's virtual cards.

Production code uses `PcscContext`/`CardChannel` (through the bank card and band readers). Tests
and the demo start a `PcscDaemon` and plug virtual cards into its slots with `VirtualCardSlot`.
"""

from __future__ import annotations

from checkin.band_reader.simulator import MifareBand
from checkin.bank_card.simulator import ChainingCard, DeadCard, OtherLayoutCard, UnionPayDebitCard
from checkin.pcsc.client import CardChannel, PcscContext, ResponseApdu, list_readers, resolve_reader_name
from checkin.pcsc.daemon import PcscDaemon, VpcdSlotInfo
from checkin.pcsc.errors import (
    CardAbsentError,
    CardTransmitError,
    CardUnresponsiveError,
    CardWaitTimeoutError,
    PcscDaemonError,
    PcscError,
    PcscServiceUnavailableError,
    ReaderNotFoundError,
    VirtualCardError,
    WaitCancelledError,
)
from checkin.pcsc.vpcd import VirtualCard, VirtualCardSlot

__all__ = [
    "CardAbsentError",
    "CardChannel",
    "CardTransmitError",
    "CardUnresponsiveError",
    "CardWaitTimeoutError",
    "ChainingCard",
    "DeadCard",
    "MifareBand",
    "OtherLayoutCard",
    "PcscContext",
    "PcscDaemon",
    "PcscDaemonError",
    "PcscError",
    "PcscServiceUnavailableError",
    "ReaderNotFoundError",
    "ResponseApdu",
    "UnionPayDebitCard",
    "VirtualCard",
    "VirtualCardError",
    "VirtualCardSlot",
    "VpcdSlotInfo",
    "WaitCancelledError",
    "list_readers",
    "resolve_reader_name",
]
