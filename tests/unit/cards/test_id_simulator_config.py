"""The SAM simulator's fault specs, identities file and control requests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from id_card_reader.simulator import (
    SAMPLE_IDENTITIES,
    Fault,
    FaultSpec,
    SamReaderEmulator,
    SamReaderSimulator,
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


def test_control_requests_on_the_kit_channel() -> None:
    emulator = SamReaderEmulator(load_identities(SAMPLE_IDENTITIES), present=None)
    sim = SamReaderSimulator(emulator)

    def control(request: str) -> dict[str, object]:
        return sim.handle_control(request.encode())

    placed = control(json.dumps({"op": "place", "index": 1}))
    assert placed["card"] == "3101**********0245"
    injected = control('{"op": "inject", "fault": "bad_checksum", "params": {"times": 2}}')
    assert injected["active"] == {"bad_checksum": "bad_checksum@2"}
    assert control('{"op": "inject", "fault": "reply_sw3", "params": {"sw3": "33"}}')["active"] == {
        "bad_checksum": "bad_checksum@2",
        "reply_sw3": "reply_sw3:33@1",
    }
    assert control('{"op": "clear"}')["active"] == {}
    assert control('{"op": "remove"}')["card"] is None
    assert control('{"op": "explode"}') == {
        "ok": False,
        "error": "FaultError: unknown op 'explode'; known: inject, clear, faults, status, place, remove",
    }
    assert not control("{")["ok"]
    assert not control('{"op": "place", "index": 99}')["ok"]
    assert not control('{"op": "inject", "fault": "reply_sw3", "params": {"sw3": "XYZ"}}')["ok"]
    assert not control('{"op": "inject", "fault": "gremlins"}')["ok"]
    assert "times" in str(control('{"op": "faults"}')["faults"])
