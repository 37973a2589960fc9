"""The scenario file: who is at the kiosk, what the camera sees, which card, which faults.

A scenario is a TOML file (format in docs/scenario-format.md). Parsing is strict: unknown keys,
wrong types and references to undefined experts are refused with the key's path, so a typo never
silently turns a scenario into a different one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import receipt_printer.simulator as printer_sim  # lazy (lazy_imports): only printer faults need it
from personal_data import bank_card, id_number

if TYPE_CHECKING:
    from pathlib import Path


#: The card a check-in presents when its scenario names none: a Luhn-valid UnionPay test number.
SAMPLE_PAN = "6212345678901232"


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the key and the problem."""


class Liveness(StrEnum):
    """What the camera shows of the person."""

    BLINK = "blink"  # a live person who blinks
    STILL = "still"  # a still photo held up to the camera
    NO_FACE = "no_face"  # nobody in front of the camera


class CardKind(StrEnum):
    """How the expert gives the bank card."""

    CHIP = "chip"  # inserted or tapped: a virtual EMV card through pcscd
    ON_FILE = "on_file"  # confirms the card the platform has on file
    TYPED = "typed"
    SWIPE = "swipe"
    DEAD_CHIP_THEN_TYPED = "dead_chip_then_typed"  # an unreadable chip, then typed entry


class FaultWhen(StrEnum):
    """The point in the check-in where a fault is injected."""

    DISPENSING = "dispensing"  # when the arm brings the band to the reader (before binding)
    AT_READER = "at_reader"  # the same moment, by its physical name
    START = "start"  # before the expert presses 登记办理


@dataclass(frozen=True, slots=True)
class Expert:
    """An expert known to the scenario: on the ID card, maybe on the invited list."""

    key: str
    id_number: str
    name: str
    photo: str  # a face reference: faces:<file>, astronaut, or a path relative to the scenario
    invited: bool = True


@dataclass(frozen=True, slots=True)
class Fault:
    """A device fault, injected at a point of the check-in."""

    device: str  # arm | platform | uwb | id_card | printer
    name: str  # the device simulator's named fault; for platform: kill
    when: FaultWhen = FaultWhen.DISPENSING
    restart_after_s: float = 1.0  # platform kill: how long it stays down


@dataclass(frozen=True, slots=True)
class CheckInCase:
    """One expert's visit to the kiosk."""

    name: str
    expert: str
    camera: str | None  # face reference shown to the camera; None: the expert's own photo
    liveness: Liveness
    card: CardKind
    card_number: str | None
    signature: str  # scribble | empty_then_scribble
    take_band: bool
    faults: tuple[Fault, ...]
    expect: str  # checked_in | refused:<reason> | band_problem | room_pending | staff


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario file."""

    path: Path
    batch_code: str
    arm_speed: float
    experts: dict[str, Expert]
    checkins: tuple[CheckInCase, ...]
    allow_id_only: bool = False
    #: The platform's [rules] identification_ttl_s (0: its default): short, to outlast it in an outage.
    identification_ttl_s: int = 0
    #: How long the person takes to sign (person time; the kiosk fetches the band meanwhile).
    sign_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


_EXPECT_PREFIXES = ("checked_in", "refused:", "band_problem", "room_pending", "staff")
_FAULT_DEVICES = ("arm", "platform", "uwb", "id_card", "printer")


def _take(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ScenarioError(f"{where}: '{key}' is required")
        return default
    value = table.pop(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ScenarioError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _no_leftovers(table: dict[str, Any], where: str) -> None:
    if table:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(table))}")


def _parse_expert(raw: dict[str, Any], index: int) -> Expert:
    where = f"experts[{index}]"
    table = dict(raw)
    expert = Expert(
        key=_take(table, "key", str, where),
        id_number=_take(table, "id_number", str, where),
        name=_take(table, "name", str, where),
        photo=_take(table, "photo", str, where),
        invited=_take(table, "invited", bool, where, default=True),
    )
    _no_leftovers(table, where)
    try:
        id_number.validate(expert.id_number)
    except id_number.InvalidIdNumberError as err:
        raise ScenarioError(f"{where}.id_number: {err}") from err
    return expert


def _check_printer_fault(name: str, where: str) -> None:
    names = tuple(spec.name for spec in printer_sim.FAULTS)
    if name not in names:
        raise ScenarioError(f"{where}.name: expected one of {', '.join(names)}, got {name!r}")


def _parse_fault(raw: dict[str, Any], where: str) -> Fault:
    table = dict(raw)
    device = _take(table, "device", str, where)
    if device not in _FAULT_DEVICES:
        raise ScenarioError(f"{where}.device: expected one of {', '.join(_FAULT_DEVICES)}, got {device!r}")
    name = _take(table, "name", str, where)
    if device == "printer":
        _check_printer_fault(name, where)
    when_text = _take(table, "when", str, where, default=FaultWhen.DISPENSING.value)
    try:
        when = FaultWhen(when_text)
    except ValueError as err:
        raise ScenarioError(f"{where}.when: expected one of {', '.join(FaultWhen)}, got {when_text!r}") from err
    restart = _take(table, "restart_after_s", float, where, default=1.0)
    _no_leftovers(table, where)
    return Fault(device=device, name=name, when=when, restart_after_s=restart)


def _parse_case(raw: dict[str, Any], index: int, experts: dict[str, Expert]) -> CheckInCase:
    where = f"checkins[{index}]"
    table = dict(raw)
    name = _take(table, "name", str, where)
    expert = _take(table, "expert", str, where)
    if expert not in experts:
        raise ScenarioError(f"{where}.expert: no expert with key {expert!r}")
    liveness_text = _take(table, "liveness", str, where, default=Liveness.BLINK.value)
    card_table = _take(table, "bank_card", dict, where, default={"kind": CardKind.CHIP.value, "number": SAMPLE_PAN})
    card_where = f"{where}.bank_card"
    card_table = dict(card_table)
    card_kind_text = _take(card_table, "kind", str, card_where)
    card_number = _take(card_table, "number", str, card_where, default=None)
    _no_leftovers(card_table, card_where)
    try:
        liveness = Liveness(liveness_text)
        card = CardKind(card_kind_text)
    except ValueError as err:
        raise ScenarioError(f"{where}: {err}") from err
    if card in (CardKind.CHIP, CardKind.TYPED, CardKind.SWIPE, CardKind.DEAD_CHIP_THEN_TYPED) and card_number is None:
        raise ScenarioError(f"{card_where}.number: required for kind {card.value!r}")
    if card_number is not None:
        try:
            bank_card.validate(card_number)
        except bank_card.InvalidCardNumberError as err:
            raise ScenarioError(f"{card_where}.number: {err}") from err
    signature = _take(table, "signature", str, where, default="scribble")
    if signature not in ("scribble", "empty_then_scribble"):
        raise ScenarioError(f"{where}.signature: expected scribble or empty_then_scribble")
    faults = tuple(
        _parse_fault(f, f"{where}.faults[{i}]") for i, f in enumerate(_take(table, "faults", list, where, default=[]))
    )
    expect = _take(table, "expect", str, where, default="checked_in")
    if not expect.startswith(_EXPECT_PREFIXES):
        raise ScenarioError(f"{where}.expect: must start with one of {', '.join(_EXPECT_PREFIXES)}")
    case = CheckInCase(
        name=name,
        expert=expert,
        camera=_take(table, "camera", str, where, default=None),
        liveness=liveness,
        card=card,
        card_number=card_number,
        signature=signature,
        take_band=_take(table, "take_band", bool, where, default=True),
        faults=faults,
        expect=expect,
    )
    _no_leftovers(table, where)
    return case


def parse_scenario(text: str, path: Path) -> Scenario:
    """Parse and validate scenario TOML text; `path` anchors relative photo paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from err
    world = dict(_take(data, "world", dict, "scenario", default={}))
    batch_code = _take(world, "batch", str, "world", default="DEMO-2026-001")
    arm_speed = _take(world, "arm_speed", float, "world", default=50.0)
    allow_id_only = _take(world, "allow_id_only", bool, "world", default=False)
    identification_ttl_s = _take(world, "identification_ttl_s", int, "world", default=0)
    sign_s = _take(world, "sign_s", float, "world", default=0.0)
    _no_leftovers(world, "world")
    if not 0 <= sign_s <= 30:
        raise ScenarioError("world.sign_s: must be 0..30 seconds")
    if arm_speed <= 0:
        raise ScenarioError("world.arm_speed: must be above 0")
    if identification_ttl_s and not 5 <= identification_ttl_s <= 3600:
        raise ScenarioError("world.identification_ttl_s: must be 5..3600 seconds (0: the platform's default)")
    experts: dict[str, Expert] = {}
    for i, raw in enumerate(_take(data, "experts", list, "scenario")):
        expert = _parse_expert(raw, i)
        if expert.key in experts:
            raise ScenarioError(f"experts[{i}].key: duplicate key {expert.key!r}")
        experts[expert.key] = expert
    cases = tuple(_parse_case(raw, i, experts) for i, raw in enumerate(_take(data, "checkins", list, "scenario")))
    if not cases:
        raise ScenarioError("scenario: 'checkins' is empty")
    _no_leftovers(data, "scenario")
    return Scenario(
        path=path,
        batch_code=batch_code,
        arm_speed=arm_speed,
        experts=experts,
        checkins=cases,
        allow_id_only=allow_id_only,
        identification_ttl_s=identification_ttl_s,
        sign_s=sign_s,
    )


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read: {err.strerror}") from err
    return parse_scenario(text, path)
