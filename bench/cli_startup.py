"""Start-up time of the command-line tools, beside the bare interpreter measured in the same run.

Each command runs as a fresh subprocess (wall clock from spawn to exit), alternating with the
baseline `python -c pass` so machine noise hits both alike. Prints each median and
`ratio_<tool>_vs_python=<x>`.

    .venv/bin/python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "platform-server --help": [str(BIN / "platform-server"), "--help"],
    "platform-server invitations import --help": [str(BIN / "platform-server"), "invitations", "import", "--help"],
    "checkin-kiosk --help": [str(BIN / "checkin-kiosk"), "--help"],
}


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit of one run; a failing command stops the bench."""
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    """Warm the bytecode cache once, then time every command `--runs` times, interleaved."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"), "COLUMNS": "100"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for command in COMMANDS.values():  # untimed: compile the bytecode, as a deployed install has it
            timed(command, env)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.runs):
            for name, command in COMMANDS.items():
                times[name].append(timed(command, env))
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        print(f"{name:45s} median {statistics.median(values):.3f} s  best {min(values):.3f} s  of {len(values)}")
    for name, values in times.items():
        if name != "python -c pass":
            key = name.replace(" --help", "").replace(" ", "_").replace("-", "_")
            print(f"ratio_{key}_vs_python={statistics.median(values) / base:.2f}")


if __name__ == "__main__":
    main()
