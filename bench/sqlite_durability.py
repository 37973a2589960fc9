"""What synchronous=FULL costs on SQLite: a whole check-in (identify + complete, through the services)
and a bare one-row commit, with synchronous=NORMAL (the old setting, the baseline) and FULL, in one run.

The settings run interleaved (one operation at each in turn). FULL fsyncs the WAL at every commit,
so an acknowledged check-in survives a power cut; NORMAL only survives a crashed process. FULL is
the platform's setting, with an identify's transaction committed unflushed (its WAL frames made
durable by the completion's fsync); "FULL, identify flushed" is `[database]
identify_synchronous_commit = true` (and the platform before 7 December 2026): every commit fsynced.
Prints per-operation medians and p95, this process's CPU per check-in (the fsyncs' kernel time
included), `ratio_full_vs_normal=<x>` and `ratio_unflushed_identify_vs_flushed=<x>` (time a check-in).

    .venv/bin/python bench/sqlite_durability.py [--check-ins 150] [--commits 300] [--dir /path/on/the/real/disk]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import sqlalchemy as sa  # noqa: E402

from platform_server.db import engine as engine_module  # noqa: E402
from platform_server.services import check_in, identify  # noqa: E402
from tests.unit.platform_server.support import Seeded, luhn_pan, seed, signature_png  # noqa: E402


def pin(engine: sa.Engine, mode: str) -> None:
    """Every connection the engine opens from now on uses `mode` too (the setting is per connection)."""
    sa.event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute(f"PRAGMA synchronous={mode}"))


def seeded(folder: Path, mode: str, count: int, *, identify_flushed: bool = False) -> Seeded:
    engine_module.SQLITE_SYNCHRONOUS = mode
    name = f"{mode}-identify-flushed" if identify_flushed else mode
    s = seed(f"sqlite:///{folder / f'{name}.db'}", experts=count, rooms=count, bands=count, kiosk_ids=["K1"])
    pin(s.uow.engine, mode)
    return dataclasses.replace(s, ctx=dataclasses.replace(s.ctx, identify_synchronous_commit=identify_flushed))


def one_check_in(s: Seeded, n: int, png: bytes) -> float:
    """Seconds for check-in n (identify then complete)."""
    started = time.perf_counter()
    found = identify.identify(
        s.new_uow(), s.ctx, identify.IdentifyCommand(uuid.uuid4().hex, "K1", s.batch_code, s.ids[n], valid_to="长期")
    )
    assert found.identification_token, found.refusal
    done = check_in.complete_check_in(
        s.new_uow(),
        s.ctx,
        check_in.CompleteCommand(
            request_id=uuid.uuid4().hex,
            kiosk_id="K1",
            identification_token=found.identification_token,
            use_card_on_file=False,
            new_card_pan=luhn_pan(n=n),
            card_source="CHIP",
            signature_png=png,
            band_uid=s.bands[n][0],
        ),
    )
    assert done.refusal is None, done.refusal
    return time.perf_counter() - started


def bare_engine(folder: Path, mode: str) -> sa.Engine:
    engine_module.SQLITE_SYNCHRONOUS = mode
    engine = engine_module.make_engine(f"sqlite:///{folder / f'bare-{mode}.db'}")
    pin(engine, mode)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return engine


def one_commit(engine: sa.Engine, n: int) -> float:
    """Seconds for a one-row INSERT + COMMIT."""
    started = time.perf_counter()
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (f"row {n}",))
    return time.perf_counter() - started


def show(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    p95 = statistics.quantiles(times, n=20)[-1]
    print(f"{label:32s} median {median * 1000:7.3f} ms   p95 {p95 * 1000:7.3f} ms   ({len(times)} ops)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", type=int, default=150)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"databases in {folder}")
        modes = ("NORMAL", "FULL")  # NORMAL: the old setting, the baseline
        # Interleaved, one operation at each setting in turn, so load from other work hits both alike.
        engines = {m: bare_engine(folder, m) for m in modes}
        commits: dict[str, list[float]] = {m: [] for m in modes}
        for n in range(args.commits):
            for m in modes:
                commits[m].append(one_commit(engines[m], n))
        flushed = "FULL, identify flushed"
        worlds = {m: seeded(folder, m, args.check_ins) for m in modes}
        worlds[flushed] = seeded(folder, "FULL", args.check_ins, identify_flushed=True)
        png = signature_png()
        visits: dict[str, list[float]] = {m: [] for m in worlds}
        cpu = dict.fromkeys(worlds, 0.0)
        for n in range(args.check_ins):
            for m, world in worlds.items():
                started = time.process_time()
                visits[m].append(one_check_in(world, n, png))
                cpu[m] += time.process_time() - started
        medians = {}
        for m in modes:
            medians[("commit", m)] = show(f"bare commit, synchronous={m}", commits[m])
        for m in worlds:
            medians[("check-in", m)] = show(f"check-in, synchronous={m}", visits[m])
            print(f"{'':32s} CPU {cpu[m] / args.check_ins * 1000:7.3f} ms a check-in")
        print(f"ratio_commit_full_vs_normal={medians[('commit', 'FULL')] / medians[('commit', 'NORMAL')]:.2f}")
        print(f"ratio_full_vs_normal={medians[('check-in', 'FULL')] / medians[('check-in', 'NORMAL')]:.2f}")
        unflushed = medians[("check-in", "FULL")] / medians[("check-in", flushed)]
        print(f"ratio_unflushed_identify_vs_flushed={unflushed:.2f} (CPU {cpu['FULL'] / cpu[flushed]:.2f})")


if __name__ == "__main__":
    main()
