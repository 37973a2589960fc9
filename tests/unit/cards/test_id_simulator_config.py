"""The SAM simulator's fault specs, identities file and control requests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from id_card_reader.simulator import (
    SAMPLE_IDENTITIES,
    ControlServer,
    Fault,
    FaultSpec,
    SamReaderEmulator,
    SimulatorConfigError,
    load_identities,
)
from personal_data import id_number as id_rules

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("text", "fault", "remaining", "value"),
    [
        ("bad_checksum", Fault.BAD_CHECKSUM, 1, None),
        ("bad_checksum@3", Fault.BAD_CHECKSUM, 3, None),
        ("garbage_bytes@always", Fault.GARBAGE_BYTES, None, None),
        ("no_card", Fault.NO_CARD, None, None),
        ("slow_reader", Fault.SLOW_READER, None, 0.5),
        ("slow_reader:2.5", Fault.SLOW_READER, None, 2.5),
        ("reply_sw3:41", Fault.REPLY_SW3, 1, 0x41),
        ("removed_mid_read", Fault.REMOVED_MID_READ, 1, None),
        ("sam_self_test_failure", Fault.SAM_SELF_TEST_FAILURE, None, None),
    ],
)
def test_fault_specs(text: str, fault: Fault, remaining: int | None, value: float | None) -> None:
    spec = FaultSpec.parse(text)
    assert (spec.fault, spec.remaining, spec.value) == (fault, remaining, value)
    assert FaultSpec.parse(spec.describe()) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("melted", "unknown fault"),
        ("reply_sw3", "hex status"),
        ("reply_sw3:zz", "hex status"),
        ("slow_reader:-1", "0..60"),
        ("bad_checksum@0", "positive"),
        ("no_card:3", "takes no value"),
    ],
)
def test_bad_fault_specs(text: str, message: str) -> None:
    with pytest.raises(SimulatorConfigError, match=message):
        FaultSpec.parse(text)


def test_sample_identities_are_valid_cards() -> None:
    cards = load_identities(SAMPLE_IDENTITIES)
    assert len(cards) >= 4
    assert all(id_rules.is_valid(c.id_number) for c in cards)


LONG_NAME = json.dumps(
    [
        {
            "name": "一二三四五六七八九十一二三四五六",
            "sex": "1",
            "birth_date": "1960-01-01",
            "id_number": "1",
            "valid_from": "2020-01-01",
        }
    ],
    ensure_ascii=False,
)


LONG_NAME = json.dumps(
    [{"name": "一" * 16, "sex": "1", "birth_date": "1960-01-01", "id_number": "1", "valid_from": "2020-01-01"}],
    ensure_ascii=False,
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "non-empty"),
        ('[{"name": "x"}]', "missing"),
        (
            '[{"name": "x", "sex": "1", "birth_date": "1960-01-01", "id_number": "1", "valid_from": "2020-13-01"}]',
            "valid_from",
        ),
        ('[{"name": "x", "colour": "red"}]', "unknown key"),
        (LONG_NAME, "15 characters"),
    ],
)
def test_bad_identities_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ids.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SimulatorConfigError, match=message):
        load_identities(path)


def test_control_requests() -> None:
    emulator = SamReaderEmulator(load_identities(SAMPLE_IDENTITIES), present=None)
    control = ControlServer(emulator)
    try:
        assert control.execute(json.dumps({"op": "place", "index": 1}))["state"]["card"] == "3101**********0245"
        assert control.execute('{"op": "inject", "fault": "bad_checksum@2"}')["state"]["faults"] == ["bad_checksum@2"]
        assert control.execute('{"op": "clear"}')["state"]["faults"] == []
        assert control.execute('{"op": "remove"}')["state"]["card"] is None
        assert control.execute('{"op": "explode"}') == {
            "ok": False,
            "error": "unknown op 'explode'; ops: place, remove, inject, clear, state",
        }
        assert not control.execute("{")["ok"]
        assert not control.execute('{"op": "place", "index": 99}')["ok"]
    finally:
        control.stop()
