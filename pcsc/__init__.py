"""PC/SC plumbing: client access through pyscard, a private pcscd with vpcd, and the project's virtual cards.

Production code uses `PcscContext`/`CardChannel` (through the bank card and band readers). Tests
and the demo start a `PcscDaemon` and plug virtual cards (`bank_card_reader.simulator`,
`band_reader.simulator`) into its slots with `VirtualCardSlot`; nothing here loads a simulator.
"""

from __future__ import annotations

from pcsc.client import CardChannel, PcscContext, ResponseApdu, list_readers, resolve_reader_name
from pcsc.daemon import PcscDaemon, VpcdSlotInfo
from pcsc.errors import (
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
from pcsc.vpcd import VirtualCard, VirtualCardSlot

__all__ = [
    "CardAbsentError",
    "CardChannel",
    "CardTransmitError",
    "CardUnresponsiveError",
    "CardWaitTimeoutError",
    "PcscContext",
    "PcscDaemon",
    "PcscDaemonError",
    "PcscError",
    "PcscServiceUnavailableError",
    "ReaderNotFoundError",
    "ResponseApdu",
    "VirtualCard",
    "VirtualCardError",
    "VirtualCardSlot",
    "VpcdSlotInfo",
    "WaitCancelledError",
    "list_readers",
    "resolve_reader_name",
]
