"""Machine time of the full chip-card check-in (the e2e scenario's measure), ten runs: each, the median, the max.

Runs `checkin-kiosk run-scenario scenarios/e2e.toml --only <the chip-card case>` N times, each in a
fresh world, and prints every run's machine time with the simulated readers' detection in it (and
without), the median, the max and the load average. With `--baseline`, every run is paired with one
where the person signs instantly (`world.sign_s = 0`): the band is then fetched after the pen is
lifted, so its detection is back on the critical path; the ratio of the medians is printed.

    .venv/bin/python bench/checkin_machine_time.py --runs 10
    .venv/bin/python bench/checkin_machine_time.py --runs 3 --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIOSK = Path(sys.executable).with_name("checkin-kiosk")
SCENARIO = REPO / "scenarios" / "e2e.toml"
CASE = "invited expert checks in; the band holds the room"
BUDGET_S = 0.7


def one_run(scenario: Path) -> dict[str, object]:
    """One fresh world, the chip-card case only; its JSON line."""
    work = Path(tempfile.mkdtemp(prefix="machine-time-"))
    try:
        args = [str(KIOSK), "run-scenario", str(scenario), "--only", CASE, "--work", str(work), "--no-printer"]
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
        line: dict[str, object] = next(json.loads(x) for x in done.stdout.splitlines() if x.startswith("{"))
        if not line["ok"]:
            raise SystemExit(f"run failed: {line}")
        return line
    finally:
        shutil.rmtree(work, ignore_errors=True)


def instant_signer() -> Path:
    """A copy of the e2e scenario whose person signs in no time (next to it: photo paths are relative)."""
    text = re.sub(r"(?m)^sign_s = .*$", "sign_s = 0.0", SCENARIO.read_text(encoding="utf-8"))
    fd, name = tempfile.mkstemp(prefix=".bench-instant-", suffix=".toml", dir=SCENARIO.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return Path(name)


def _f(line: dict[str, object], key: str) -> float:
    value = line.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def main() -> None:
    """Run, print each figure, then the median, the max and how many runs were over the budget."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", action="store_true", help="pair each run with an instant signer")
    options = parser.parse_args()
    baseline = instant_signer() if options.baseline else None
    figures: list[float] = []
    base: list[float] = []
    try:
        for i in range(options.runs):
            load = os.getloadavg()[0]
            line = one_run(SCENARIO)
            figures.append(_f(line, "machine_time_s"))
            print(
                f"run {i + 1:2}: machine {_f(line, 'machine_time_s'):.3f} s"
                f" (card detect {_f(line, 'card_detect_s'):.3f}, band on the path {_f(line, 'band_detect_s'):.3f},"
                f" without vpcd {_f(line, 'machine_time_excl_vpcd_s'):.3f}) load {load:.2f}",
                flush=True,
            )
            if baseline is not None:
                b = one_run(baseline)
                base.append(_f(b, "machine_time_s"))
                print(
                    f"        instant signer: machine {_f(b, 'machine_time_s'):.3f} s"
                    f" (band detect {_f(b, 'band_detect_s'):.3f})",
                    flush=True,
                )
    finally:
        if baseline is not None:
            baseline.unlink(missing_ok=True)
    median, worst = statistics.median(figures), max(figures)
    over = sum(f >= BUDGET_S for f in figures)
    print(
        f"machine_time_s over {len(figures)} runs: median {median:.3f} s, max {worst:.3f} s,"
        f" {over} at or over {BUDGET_S} s; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if base:
        b_median = statistics.median(base)
        print(f"instant signer (band fetched after signing): median {b_median:.3f} s; ratio {median / b_median:.2f}")


if __name__ == "__main__":
    main()
