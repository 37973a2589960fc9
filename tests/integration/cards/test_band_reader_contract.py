"""Wristband UID reader through pyscard → the real pcscd → vpcd → virtual MIFARE bands."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from band_reader import BandUidReader, NoBandError, UnsupportedBandError
from band_reader.simulator import MifareBand

if TYPE_CHECKING:
    from pcsc import VirtualCardSlot

pytestmark = pytest.mark.pcsc


@pytest.fixture
def virtual(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--band-reader"):
        pytest.skip("needs virtual bands")


def test_real_or_default_band_gives_a_hex_uid(request: pytest.FixtureRequest) -> None:
    name = request.config.getoption("--band-reader")
    if name is None:
        request.getfixturevalue("band_slot").insert(MifareBand("04A22B1A5C3F80"))
        name = request.getfixturevalue("band_reader_name")
    uid = BandUidReader(str(name)).read_uid(timeout=5)
    assert len(uid) in (8, 14, 20)
    assert uid == uid.upper()
    int(uid, 16)


@pytest.mark.usefixtures("virtual")
@pytest.mark.parametrize("uid", ["A1B2C3D4", "04A22B1A5C3F80", "0102030405060708090A"])
def test_uid_lengths(band_slot: VirtualCardSlot, band_reader_name: str, uid: str) -> None:
    band_slot.insert(MifareBand(uid))
    assert BandUidReader(band_reader_name).read_uid(timeout=10) == uid


@pytest.mark.usefixtures("virtual")
def test_arm_cycle_sees_each_new_band_and_measures_latency(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    reader = BandUidReader(band_reader_name)
    latencies = []
    for uid in ("04000000000001", "04000000000002", "04000000000003"):
        started = time.monotonic()
        band_slot.insert(MifareBand(uid))
        assert reader.read_uid(timeout=10) == uid
        latencies.append(time.monotonic() - started)
        band_slot.remove()
        reader.wait_removed(timeout=10)
    # Printed, not asserted (speed is measured in bench/): read_uid's 10 s bounds each read.
    print(f"band insert -> UID read latency: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")


@pytest.mark.usefixtures("virtual")
def test_no_band_times_out(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    _ = band_slot
    with pytest.raises(NoBandError):
        BandUidReader(band_reader_name).read_uid(timeout=0.5)


@pytest.mark.usefixtures("virtual")
def test_a_failed_read_is_retried(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    band_slot.insert(MifareBand("04A22B1A5C3F80", fail_reads=2))
    assert BandUidReader(band_reader_name, attempts=3).read_uid(timeout=10) == "04A22B1A5C3F80"


@pytest.mark.usefixtures("virtual")
def test_unsupported_get_data(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    band_slot.insert(MifareBand("04A22B1A5C3F80", unsupported=True))
    with pytest.raises(UnsupportedBandError):
        BandUidReader(band_reader_name).read_uid(timeout=10)


@pytest.mark.usefixtures("virtual")
def test_band_stays_on_the_reader(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    band_slot.insert(MifareBand("04A22B1A5C3F80"), wait=True)
    reader = BandUidReader(band_reader_name)
    assert reader.read_uid(timeout=10) == "04A22B1A5C3F80"
    with pytest.raises(NoBandError, match="did not leave"):
        reader.wait_removed(timeout=0.5)


@pytest.mark.usefixtures("virtual")
def test_insert_and_remove_are_idempotent_and_thread_safe(band_slot: VirtualCardSlot, band_reader_name: str) -> None:
    bands = [MifareBand(f"0400000000000{i}") for i in range(4)]

    def churn(i: int) -> None:
        for _ in range(5):
            band_slot.insert(bands[i])
            band_slot.insert(bands[i])
            band_slot.remove()
            band_slot.remove()

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)  # each insert waits for pcscd's vpcd poll: about 20 s in all, more when loaded
    assert not any(t.is_alive() for t in threads)
    assert band_slot.card is None
    final = MifareBand("04FFFFFFFFFFFF")
    band_slot.insert(final, wait=True)
    assert BandUidReader(band_reader_name).read_uid(timeout=10) == "04FFFFFFFFFFFF"
