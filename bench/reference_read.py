"""CPU of a face identify's reference read on SQLite: the encoding stored before the photo, and behind it.

Seeds a database as bench/load_suite.py does for face runs (reference photos of ../shared/data/faces,
a few hundred KB each), copies it, and takes the copy back to revision 0100 (the photo before the
encoding in each row, as before migration 0110). Then reads the references of random experts with the
identify's own statement (services.identify._REFERENCES) on each, alternating, and prints this
process's CPU per read. The copy at 0100 is the baseline, measured in the same run.

    .venv/bin/python bench/reference_read.py
    .venv/bin/python bench/reference_read.py --experts 1000 --reads 8000
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from bench.load_suite import seed  # noqa: E402
from personal_data.crypto import DataKey  # noqa: E402
from platform_server.db.engine import alembic_config, make_engine  # noqa: E402
from platform_server.services.identify import _REFERENCES  # noqa: E402

_STATEMENT = _REFERENCES.replace(":photo_id", "?").replace(":expert_id", "?")


def take_back_to_0100(path: Path) -> None:
    """Downgrade the database at `path` to 0100: its reference tables rebuilt with the photo first."""
    from alembic import command  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{path}")
    command.downgrade(alembic_config(engine), "0100")
    engine.dispose()


def cpu_per_read_us(path: Path, picks: list[tuple[int, int]]) -> float:
    """Microseconds of this process's CPU per reference read, on a fresh connection to `path`."""
    connection = sqlite3.connect(path)
    try:
        for photo_id, expert_id in picks[:200]:  # the connection's first pages, the statement's preparation
            connection.execute(_STATEMENT, (photo_id, expert_id)).fetchall()
        start = time.process_time()
        for photo_id, expert_id in picks:
            connection.execute(_STATEMENT, (photo_id, expert_id)).fetchall()
        return (time.process_time() - start) / len(picks) * 1e6
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, default=400)
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reference-read-"))
    try:
        now = tmp / "head.db"
        seed(f"sqlite:///{now}", DataKey.generate_text(), experts=args.experts, kiosks=1, faces=True)
        before = tmp / "0100.db"
        shutil.copyfile(now, before)
        take_back_to_0100(before)
        connection = sqlite3.connect(now)
        rows = connection.execute("SELECT id, expert_id FROM reference_photos").fetchall()
        (photo_bytes,) = connection.execute("SELECT avg(length(image_encrypted)) FROM reference_photos").fetchone()
        photo_kb = photo_bytes / 1000
        connection.close()
        picks = [random.choice(rows) for _ in range(args.reads)]
        print(f"{len(rows)} reference photos of {photo_kb:.0f} KB on average, {args.reads} reads a round")
        ratios = []
        for n in range(args.rounds):
            encoding_first = cpu_per_read_us(now, picks)
            photo_first = cpu_per_read_us(before, picks)
            ratios.append(encoding_first / photo_first)
            print(
                f"round {n + 1}: encoding first {encoding_first:.1f} us CPU a read,"
                f" photo first (0100, baseline) {photo_first:.1f} us, ratio {ratios[-1]:.3f}"
            )
        print(f"ratio_cpu_vs_baseline={sorted(ratios)[len(ratios) // 2]:.3f} (median of {len(ratios)} rounds)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
