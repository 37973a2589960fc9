"""Phase timestamps of a bulk import, to find its critical path (`--verbose` or PLATFORM_IMPORT_TIMING=1).

Every mark is seconds since the process was spawned (read from /proc on Linux, so interpreter
start-up and imports are counted), on a clock shared by the forked reader process and the writer,
so both processes' marks sort into one timeline. Marks never carry row contents.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

ENV_FLAG = "PLATFORM_IMPORT_TIMING"
_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)


def _now() -> float:
    """Seconds on a clock that /proc's process start times are measured on (boot time on Linux)."""
    return time.clock_gettime(_CLOCK) if _CLOCK is not None else time.perf_counter()


def _spawned_at() -> float:
    """When this process (the CLI's, before any fork) was spawned, on the _now() clock; now if unknown."""
    if _CLOCK is None:
        return _now()
    try:
        with open("/proc/self/stat", "rb") as handle:  # noqa: PTH123  (no pathlib import on the start-up path)
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks since boot
    except (OSError, ValueError, IndexError):
        return _now()


class Timeline:
    """Named marks from one or more processes; `enabled=False` makes mark() a no-op."""

    def __init__(self, *, enabled: bool, origin: float | None = None) -> None:
        """Start the timeline at the process's spawn (or at `origin`, a _now() value)."""
        self.enabled = enabled
        self.origin = origin if origin is not None else (_spawned_at() if enabled else 0.0)
        self.marks: list[tuple[float, str, str]] = []

    @classmethod
    def from_environment(cls, *, verbose: bool = False) -> Timeline:
        """Enabled by --verbose or PLATFORM_IMPORT_TIMING=1."""
        return cls(enabled=verbose or os.environ.get(ENV_FLAG, "") not in {"", "0"})

    def mark(self, phase: str, process: str = "writer") -> None:
        """Record that `phase` ended now."""
        if self.enabled:
            self.marks.append((_now() - self.origin, process, phase))

    def add(self, marks: list[tuple[float, str, str]]) -> None:
        """Marks recorded by another process against the same origin."""
        self.marks.extend(marks)

    def report(self, out: TextIO | None = None) -> None:
        """Print the marks in time order with the gap since the previous mark of the same process."""
        if not self.enabled:
            return
        stream = out or sys.stderr
        last: dict[str, float] = {}
        print("import timeline (s since process start / +s since that process's previous mark):", file=stream)
        for at, process, phase in sorted(self.marks):
            gap = at - last.get(process, 0.0)
            last[process] = at
            print(f"  {at:7.3f}  {process:<6} +{gap:6.3f}  {phase}", file=stream)
