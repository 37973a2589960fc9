"""Peak memory of each refused import bomb beside a normal small import, measured in the same run.

Each case runs in its own Python process (so its peak RSS is its own, from getrusage): a normal
20-row invitation workbook and a normal 5-photo zip are the baselines; then the xlsx bombs (one cell
at XFD2000, a huge declared dimension, a far cell without a dimension, six million cells without
references) and the zip bombs (20 000 entries, 3 GB unpacked, nested zips, a path that climbs out).
Prints per case the peak RSS, its ratio to the baseline of its kind, the time and the refusal, and
last `max_ratio_refusal_vs_baseline=<x>`. With --unprotected it also times calamine on the XFD2000
bomb without the check (about 1.3 GB: only on a quiet machine).

    .venv/bin/python bench/input_bombs.py [--unprotected]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from tests.unit.platform_server import bombs  # noqa: E402
from tests.unit.platform_server.support import face_image, many_ids  # noqa: E402

_CHILD = """
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/proto/gen"]
from pathlib import Path
kind, path = sys.argv[2], Path(sys.argv[3])
started = time.perf_counter()
outcome = "read"
try:
    if kind == "sheet":
        from platform_server.services import spreadsheets
        table = spreadsheets.read_table(path, spreadsheets.INVITATION_COLUMNS, spreadsheets.INVITATION_REQUIRED)
        outcome = f"read {len(table.rows)} rows"
    elif kind == "calamine":
        from python_calamine import CalamineWorkbook
        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python(skip_empty_area=False)
        outcome = f"calamine read {len(rows)} rows"
    else:
        from platform_server.services import imports
        from tests.unit.platform_server.support import FakeFaceVerifier, seed
        seeded = seed(f"sqlite:///{path.parent / (path.stem + '.db')}", verifier=FakeFaceVerifier())
        report = imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
        outcome = f"imported {report.rows} photos"
except Exception as err:
    outcome = f"refused: {type(err).__name__}: {str(err).splitlines()[0][:150]}"
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent that spawned this process.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak_kib": hwm,
                  "seconds": time.perf_counter() - started, "outcome": outcome}))
"""


def measure(kind: str, path: Path) -> dict[str, object]:
    """Run one case in a fresh process; its peak RSS, seconds and outcome."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), kind, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        return {"peak_kib": 0, "seconds": 0.0, "outcome": f"process ended {done.returncode}: {done.stderr[-200:]}"}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def normal_photos(path: Path) -> Path:
    """Five reference photos of the first five invited experts of the seeded batch."""
    ids = many_ids(5)
    with zipfile.ZipFile(path, "w") as archive:
        for i, value in enumerate(ids):
            archive.writestr(f"{value}.jpg", face_image(f"person{i}"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unprotected", action="store_true", help="also run calamine on the XFD2000 bomb unchecked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        rows = [
            bombs.HEADER,
            *([v, f"专家{i}", "13900000000", "设计院", "市政", ""] for i, v in enumerate(many_ids(20))),
        ]
        cases: list[tuple[str, str, str, Path]] = [
            ("sheet", "sheet", "normal 20-row workbook (baseline)", bombs.xlsx(work / "normal.xlsx", rows)),
            (
                "sheet",
                "sheet",
                "one cell at XFD2000",
                bombs.xlsx(work / "xfd.xlsx", [bombs.HEADER], far_cell="XFD2000"),
            ),
            ("sheet", "sheet", "declared A1:XFD1048576", bombs.declared_dimension(work / "dimension.xlsx")),
            (
                "sheet",
                "sheet",
                "far cell, no dimension, r='xfd2000'",
                bombs.far_cell_without_dimension(work / "far.xlsx", "xfd2000", b"'"),
            ),
            ("sheet", "sheet", "6 000 000 cells without references", bombs.many_cells(work / "cells.xlsx")),
            ("photos", "photos", "normal 5-photo zip (baseline)", normal_photos(work / "normal.zip")),
            ("photos", "photos", "20 000 entries", bombs.many_entries(work / "entries.zip")),
            ("photos", "photos", "300 x 10 MB = 3 GB unpacked", bombs.huge_total(work / "huge.zip")),
            ("photos", "photos", "nested zips, 3 levels", bombs.nested(work / "nested.zip")),
            ("photos", "photos", "entry ../../(ID number).jpg", bombs.traversal(work / "traversal.zip")),
        ]
        if args.unprotected:
            cases.append(("calamine", "sheet", "XFD2000 read by calamine unchecked", work / "xfd.xlsx"))
        baselines: dict[str, int] = {}
        worst = 0.0
        print(f"{'case':40} {'file':>9} {'peak RSS':>10} {'x base':>7} {'time':>8}  outcome")
        for kind, family, label, path in cases:
            result = measure(kind, path)
            peak = int(str(result["peak_kib"]))
            baselines.setdefault(family, peak)
            ratio = peak / baselines[family]
            if "baseline" not in label and kind != "calamine":
                worst = max(worst, ratio)
            size = path.stat().st_size
            seconds = float(str(result["seconds"]))
            print(
                f"{label:40} {size / 1024:7.0f}KB {peak / 1024:8.1f}MB {ratio:7.2f} {seconds * 1000:6.0f}ms  "
                f"{result['outcome']}",
                flush=True,
            )
        print(f"max_ratio_refusal_vs_baseline={worst:.2f}")


if __name__ == "__main__":
    main()
