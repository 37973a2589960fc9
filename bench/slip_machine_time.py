"""Machine time of the e2e chip-card check-in without and with the receipt printer, alternated in one run.

The slip prints while the band is taken, so the figure with the printer should match the one
without. Runs `checkin-kiosk run-scenario scenarios/e2e.toml --only <the chip-card case>` N times
each way (alternating, so machine load hits both alike) and prints every figure, the medians and
their ratio.

    .venv/bin/python bench/slip_machine_time.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KIOSK = Path(sys.executable).with_name("checkin-kiosk")
CASE = "invited expert checks in; the band holds the room"


def one_run(*, printer: bool, keep_slip: Path | None) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="slip-bench-"))
    try:
        flag = "--printer" if printer else "--no-printer"
        args = [str(KIOSK), "run-scenario", "scenarios/e2e.toml", "--only", CASE, "--work", str(work), flag]
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
        line: dict[str, Any] = next(json.loads(x) for x in done.stdout.splitlines() if x.startswith("{"))
        if not line["ok"]:
            raise SystemExit(f"run failed: {line}")
        if keep_slip is not None and line.get("slip", {}).get("png"):
            shutil.copy(line["slip"]["png"], keep_slip)
        return line
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep-slip", type=Path, default=None, help="copy the last slip PNG here")
    options = parser.parse_args()
    figures: dict[bool, list[float]] = {False: [], True: []}
    excl: dict[bool, list[float]] = {False: [], True: []}
    for i in range(options.runs):
        for printer in (False, True):
            line = one_run(printer=printer, keep_slip=options.keep_slip if printer else None)
            figures[printer].append(float(line["machine_time_s"]))  # type: ignore[arg-type]
            excl[printer].append(float(line["machine_time_excl_vpcd_s"]))  # type: ignore[arg-type]
            slip = line.get("slip", {})
            state = slip.get("state") if isinstance(slip, dict) else None
            print(
                f"run {i + 1} {'printer   ' if printer else 'no printer'}: machine {line['machine_time_s']:.3f} s,"
                f" without vpcd {line['machine_time_excl_vpcd_s']:.3f} s, slip {state}",
                flush=True,
            )
    for label, data in (("machine_time_s", figures), ("machine_time_excl_vpcd_s", excl)):
        before, after = statistics.median(data[False]), statistics.median(data[True])
        print(f"{label}: median without printer {before:.3f} s, with printer {after:.3f} s, ratio {after / before:.2f}")


if __name__ == "__main__":
    main()
