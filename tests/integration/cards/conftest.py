"""Fixtures for the card reader tests: a private pcscd per test process, vpcd slots, the SAM simulator.

Each xdist worker starts its own pcscd (own socket, own ports), so no xdist_group is needed; the
daemon is stopped at the end of the session.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from id_card_reader.simulator import (
    SAMPLE_IDENTITIES,
    SamReaderEmulator,
    SamReaderSimulator,
    load_identities,
)
from pcsc import PcscContext, PcscDaemon, VirtualCardSlot
from pcsc.daemon import SOCKET_ENV

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def pcsc_daemon() -> Iterator[PcscDaemon]:
    """A private pcscd with the vpcd driver; this process's PC/SC clients are pointed at it."""
    if os.environ.get(SOCKET_ENV):
        pytest.fail(f"{SOCKET_ENV} is already set: libpcsclite would keep using that daemon in this process")
    daemon = PcscDaemon().start()
    daemon.export_env()
    try:
        yield daemon
    finally:
        daemon.stop()
        os.environ.pop(SOCKET_ENV, None)


def _emptied(daemon: PcscDaemon, index: int) -> VirtualCardSlot:
    """Slot `index` with no card, as pcscd sees it (its poll may lag the removal by ~0.5 s)."""
    slot = daemon.slot(index)
    slot.remove()
    with PcscContext() as context:
        context.wait_for_removal(daemon.reader_names[index], timeout=5)
    return slot


@pytest.fixture
def band_slot(pcsc_daemon: PcscDaemon) -> Iterator[VirtualCardSlot]:
    """vpcd slot 0, empty at the start of each test."""
    yield _emptied(pcsc_daemon, 0)
    pcsc_daemon.slot(0).remove()


@pytest.fixture
def bank_slot(pcsc_daemon: PcscDaemon) -> Iterator[VirtualCardSlot]:
    """vpcd slot 1, empty at the start of each test."""
    yield _emptied(pcsc_daemon, 1)
    pcsc_daemon.slot(1).remove()


@pytest.fixture
def band_reader_name(pcsc_daemon: PcscDaemon) -> str:
    """The reader name of slot 0."""
    return pcsc_daemon.reader_names[0]


@pytest.fixture
def bank_reader_name(pcsc_daemon: PcscDaemon) -> str:
    """The reader name of slot 1."""
    return pcsc_daemon.reader_names[1]


@pytest.fixture
def sam_emulator() -> SamReaderEmulator:
    """The simulated SAM reader holding the bundled sample identities, identity #0 on the reader."""
    return SamReaderEmulator(load_identities(SAMPLE_IDENTITIES))


@pytest.fixture
def sam_simulator(sam_emulator: SamReaderEmulator) -> Iterator[SamReaderSimulator]:
    """The emulator served on a TCP port chosen by the kernel."""
    with SamReaderSimulator(sam_emulator) as simulator:
        yield simulator
