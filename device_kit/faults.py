"""One fault-injection interface for every simulator: named faults with declared parameters.

``inject(name, **params)`` switches a fault on (unknown names and parameters are refused with the
list of known ones), ``clear()`` switches one or all off, ``faults`` lists what the device offers.
The simulator reads the switches with ``active(name)`` and ``param(name, key)``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

ParamValue: TypeAlias = int | float | str | bool


class FaultError(ValueError):
    """A fault name or parameter that the simulator does not have, or a parameter of the wrong type."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A named fault: what it does (one line for ``sim-ctl faults``) and its parameters with defaults."""

    name: str
    help: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)


class FaultSet:
    """The faults a simulator offers and which are switched on; thread-safe."""

    def __init__(self, specs: Iterable[FaultSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._active: dict[str, dict[str, ParamValue]] = {}
        self._lock = threading.Lock()

    @property
    def faults(self) -> tuple[str, ...]:
        """The names of every fault this simulator offers."""
        return tuple(self._specs)

    def spec(self, name: str) -> FaultSpec:
        """The declaration of one fault; FaultError for an unknown name."""
        try:
            return self._specs[name]
        except KeyError:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(self._specs)}") from None

    def inject(self, name: str, **params: ParamValue) -> None:
        """Switch ``name`` on with ``params`` (defaults for the rest); refuses unknown names and keys."""
        spec = self.spec(name)
        values = dict(spec.params)
        for key, raw in params.items():
            if key not in spec.params:
                known = ", ".join(spec.params) or "none"
                raise FaultError(f"fault {name!r} has no parameter {key!r}; known: {known}")
            values[key] = coerce(name, key, spec.params[key], raw)
        with self._lock:
            self._active[name] = values

    def clear(self, name: str | None = None) -> None:
        """Switch one fault off (or every fault when ``name`` is None)."""
        if name is not None:
            self.spec(name)
        with self._lock:
            if name is None:
                self._active.clear()
            else:
                self._active.pop(name, None)

    def active(self, name: str) -> bool:
        """True while ``name`` is switched on."""
        with self._lock:
            return name in self._active

    def param(self, name: str, key: str) -> ParamValue:
        """A parameter of an active fault (its default when the fault is off)."""
        with self._lock:
            values = self._active.get(name)
            if values is not None:
                return values[key]
        return self.spec(name).params[key]

    def snapshot(self) -> dict[str, dict[str, ParamValue]]:
        """The active faults and their parameters (a copy)."""
        with self._lock:
            return {name: dict(values) for name, values in self._active.items()}


def coerce(fault: str, key: str, default: ParamValue, raw: ParamValue) -> ParamValue:
    """``raw`` (often text from the control channel) as the type of the parameter's default."""
    try:
        value = _convert(default, raw)
    except (TypeError, ValueError) as err:
        kind = type(default).__name__
        raise FaultError(f"fault {fault!r} parameter {key!r} must be {kind}, not {raw!r}") from err
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise FaultError(f"fault {fault!r} parameter {key!r} must not be negative, got {value}")
    return value


def _convert(default: ParamValue, raw: ParamValue) -> ParamValue:
    """``raw`` as the type of ``default``; ValueError when it is not one."""
    if isinstance(default, bool):
        if not isinstance(raw, str):
            return bool(raw)
        if raw.lower() not in {"1", "0", "true", "false", "on", "off", "yes", "no"}:
            raise ValueError(raw)
        return raw.lower() in {"1", "true", "on", "yes"}
    if isinstance(default, int):
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return str(raw)
