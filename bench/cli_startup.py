"""Start-up time of the command-line tools, beside the bare interpreter measured in the same run.

Each command runs as a fresh subprocess (wall clock from spawn to exit), alternating with the
baseline `python -c pass` so machine noise hits both alike. Prints each median and
`ratio_<tool>_vs_python=<x>`.

    .venv/bin/python bench/cli_startup.py [--runs 7] [--baseline-tree ../../main]

With `--baseline-tree`, each tool also runs from that source tree (put first on PYTHONPATH, so this
venv's interpreter and dependencies load the other checkout's code), interleaved with this tree's
runs, and `ratio_<tool>_vs_baseline=<x>` is printed (and `..._cpu`, on CPU time, steadier when
the machine is shared): before/after figures from one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PYTHON = "python -c pass"
BASELINE = "baseline: "
COMMANDS: dict[str, list[str]] = {
    PYTHON: [sys.executable, "-c", "pass"],
    "platform-server --help": [str(BIN / "platform-server"), "--help"],
    "platform-server invitations import --help": [str(BIN / "platform-server"), "invitations", "import", "--help"],
    "checkin-kiosk --help": [str(BIN / "checkin-kiosk"), "--help"],
}


def baseline_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """The environment that makes the console scripts load the code of `tree` instead of this tree's."""
    return {**env, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "proto" / "gen")])}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawn to exit of one run, and its CPU seconds (user + system); a failure stops the bench.

    The CPU time is the steadier figure on a shared machine: waiting for a core does not count.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Warm the bytecode cache once, then time every command `--runs` times, interleaved."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to time beside this one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"), "COLUMNS": "100"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONPATH", None)
        runs: dict[str, tuple[list[str], dict[str, str]]] = {name: (cmd, env) for name, cmd in COMMANDS.items()}
        if args.baseline_tree is not None:
            other = baseline_env(env, args.baseline_tree.resolve())
            runs |= {f"{BASELINE}{name}": (cmd, other) for name, cmd in COMMANDS.items() if name != PYTHON}
        for command, command_env in runs.values():  # untimed: compile the bytecode, as a deployed install has it
            timed(command, command_env)
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, (command, command_env) in runs.items():
                wall, used = timed(command, command_env)
                times[name].append(wall)
                cpu[name].append(used)
    base = statistics.median(times[PYTHON])
    for name, values in times.items():
        print(
            f"{name:55s} median {statistics.median(values):.3f} s  best {min(values):.3f} s  of {len(values)}"
            f"  (cpu median {statistics.median(cpu[name]):.3f} s)"
        )
    for name, values in times.items():
        if name != PYTHON and not name.startswith(BASELINE):
            key = name.replace(" --help", "").replace(" ", "_").replace("-", "_")
            print(f"ratio_{key}_vs_python={statistics.median(values) / base:.2f}")
            if f"{BASELINE}{name}" in times:
                baseline = statistics.median(times[f"{BASELINE}{name}"])
                print(f"ratio_{key}_vs_baseline={statistics.median(values) / baseline:.2f}")
                baseline_cpu = statistics.median(cpu[f"{BASELINE}{name}"])
                print(f"ratio_{key}_vs_baseline_cpu={statistics.median(cpu[name]) / baseline_cpu:.2f}")


if __name__ == "__main__":
    main()
