"""The ID card driver against every named simulator fault, over TCP and over a pty."""

from __future__ import annotations

import threading
import time

import pytest

from device_kit.clock import ManualClock
from id_card_reader import (
    CardRemovedError,
    IdCardConnectionError,
    IdCardReader,
    IdCardTimeoutError,
    IdentityDataError,
    SamSelfTestError,
)
from id_card_reader import errors as idc
from id_card_reader.simulator import SamReaderEmulator, SamReaderSimulator, identity_from_dict, identity_to_dict


def read(url: str, **kwargs: float) -> tuple[object, int]:
    with IdCardReader.open(url, **kwargs) as reader:  # type: ignore[arg-type]
        card = reader.read_identity(timeout=2)
        return card, reader.retries


@pytest.mark.parametrize("fault", ["bad_checksum", "garbage_bytes", "short_frame"])
def test_one_damaged_reply_is_retried_and_the_read_succeeds(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator, fault: str
) -> None:
    sam_emulator.inject(fault)
    card, retries = read(sam_simulator.url)
    assert card == sam_emulator.identities[0]
    expected_retries = 0 if fault == "garbage_bytes" else 1  # noise before a good frame needs no resend
    assert retries == expected_retries
    assert sam_emulator.state()["faults"] == []


def test_persistent_bad_checksums_give_up_after_the_attempts(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator
) -> None:
    sam_emulator.inject("bad_checksum@always")
    with IdCardReader.open(sam_simulator.url, attempts=3) as reader, pytest.raises(idc.FrameChecksumError):
        reader.read_identity(timeout=1)
    assert sam_emulator.counts["FIND_CARD"] == 3


def test_card_removed_mid_read(sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator) -> None:
    sam_emulator.inject("removed_mid_read")
    with pytest.raises(CardRemovedError):
        read(sam_simulator.url)
    assert sam_emulator.state()["card"] is None


def test_sam_self_test_failure(sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator) -> None:
    sam_emulator.inject("sam_self_test_failure")
    with IdCardReader.open(sam_simulator.url) as reader:
        with pytest.raises(SamSelfTestError):
            reader.status()
        with pytest.raises(SamSelfTestError):
            reader.read_identity(timeout=1)


def test_slow_reader_within_the_timeout_still_reads(sam_emulator: SamReaderEmulator) -> None:
    """Each of the three replies (find, select, read) waits 0.2 s on the simulator's clock, moved by hand."""
    clock = ManualClock()
    sam_emulator.inject("slow_reader:0.2")
    results: list[tuple[object, int]] = []
    with SamReaderSimulator(sam_emulator, clock=clock) as simulator:
        thread = threading.Thread(target=lambda: results.append(read(simulator.url)), daemon=True)
        thread.start()
        for _reply in ("find", "select", "read"):
            clock.wait_for_sleepers(1)  # the reply is held until the clock moves
            assert not results
            clock.advance(0.2)
        thread.join(10)
    assert results
    assert results[0][0] == sam_emulator.identities[0]
    assert clock.monotonic() == pytest.approx(0.6)


def test_slow_reader_beyond_the_timeout_times_out(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator
) -> None:
    sam_emulator.inject("slow_reader:0.5")
    with IdCardReader.open(sam_simulator.url, timeout=0.2, attempts=2) as reader, pytest.raises(IdCardTimeoutError):
        reader.status()


def test_no_card_fault_hides_a_placed_card(sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator) -> None:
    sam_emulator.inject("no_card")
    with IdCardReader.open(sam_simulator.url) as reader, pytest.raises(idc.NoCardError):
        reader.read_identity(timeout=0.3)


@pytest.mark.parametrize(
    "code", [c for c in idc.Sw3 if c not in (idc.Sw3.SUCCESS, idc.Sw3.CARD_FOUND, idc.Sw3.FIND_FAILED)]
)
def test_every_sw3_code_maps_to_its_error(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator, code: idc.Sw3
) -> None:
    # The forced status answers the first find; a retryable one is retried (and then read fine).
    sam_emulator.inject(f"reply_sw3:{code:02X}")
    with IdCardReader.open(sam_simulator.url) as reader:
        if code in idc.RETRYABLE_STATUSES:
            assert reader.read_identity(timeout=1) == sam_emulator.identities[0]
            assert reader.retries == 1
        else:
            with pytest.raises(idc.SamStatusError) as caught:
                reader.read_identity(timeout=1)
            assert caught.value.status is code


def test_select_and_read_failures_are_retried_then_reported(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator
) -> None:
    # 0x41 on every read: the card stays, so the driver retries select+read, then gives up.
    sam_emulator.inject("reply_sw3:41@always")
    with IdCardReader.open(sam_simulator.url, attempts=3) as reader, pytest.raises(idc.SamStatusError) as caught:
        reader.read_identity(timeout=1)
    assert caught.value.status is idc.Sw3.READ_FAILED


def test_silent_reader_times_out(sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator) -> None:
    sam_emulator.inject("no_answer")
    with IdCardReader.open(sam_simulator.url, timeout=0.2, attempts=2) as reader:
        started = time.monotonic()
        with pytest.raises(IdCardTimeoutError):
            reader.status()
    assert time.monotonic() - started < 5.0  # bounded: attempts x timeout (0.4 s), not for ever


def test_invalid_identity_on_the_card_is_refused(
    sam_emulator: SamReaderEmulator, sam_simulator: SamReaderSimulator
) -> None:
    entry = identity_to_dict(sam_emulator.identities[0])
    entry["id_number"] = entry["id_number"][:17] + ("0" if entry["id_number"][17] != "0" else "1")
    sam_emulator.place(identity_from_dict(entry, "test"))
    with IdCardReader.open(sam_simulator.url) as reader, pytest.raises(IdentityDataError, match="check digit"):
        reader.read_identity(timeout=1)


def test_the_driver_works_over_a_pty(sam_emulator: SamReaderEmulator) -> None:
    with SamReaderSimulator(sam_emulator, pty=True) as simulator:
        assert simulator.url.startswith("/dev/")
        sam_emulator.inject("garbage_bytes")
        card, _ = read(simulator.url)
    assert card == sam_emulator.identities[0]


def test_unreachable_port_is_a_connection_error() -> None:
    with pytest.raises(IdCardConnectionError, match="cannot open"):
        IdCardReader.open("socket://127.0.0.1:1")
    with pytest.raises(IdCardConnectionError):
        IdCardReader.open("/dev/does-not-exist")


def test_simulator_going_away_is_a_connection_error(sam_emulator: SamReaderEmulator) -> None:
    simulator = SamReaderSimulator(sam_emulator).start()
    reader = IdCardReader.open(simulator.url, timeout=5.0, attempts=1)  # the first status is answered
    try:
        reader.status()
        simulator.stop()
        with pytest.raises((IdCardConnectionError, IdCardTimeoutError)):
            reader.status()
    finally:
        reader.close()
