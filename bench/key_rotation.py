"""`keys rotate` on a database of 10 000 experts, each with a card on file and a check-in (plus photos
and stored kiosk answers), beside reading every sealed value once with the old key (the baseline).

After the rotation every value is read again with the new key and compared with what the old key read
(nothing readable lost). Then an interrupted rotation (stopped after a third of its chunks) is resumed
and timed. Prints the times and `ratio_rotate_vs_read=<x>`.

    .venv/bin/python bench/key_rotation.py [--experts 10000] [--pg URL]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import sqlalchemy as sa  # noqa: E402

from personal_data.crypto import DataKey  # noqa: E402
from platform_server.services import key_rotation  # noqa: E402
from tests.unit.platform_server.rotation_support import filled, read_everything  # noqa: E402
from tests.unit.platform_server.support import TEST_KEY  # noqa: E402


class Stop(Exception):  # noqa: N818
    """Stands for the process dying part-way."""


def run(url: str, experts: int) -> None:
    started = time.perf_counter()
    s = filled(url, experts)
    engine = s.uow.engine
    filled_in = time.perf_counter() - started
    print(f"{engine.dialect.name}: filled {experts} experts with cards and check-ins in {filled_in:.1f} s")
    started = time.perf_counter()
    before = read_everything(engine, TEST_KEY, s.ids)
    read = time.perf_counter() - started
    print(f"read everything with the old key: {read:.2f} s  {before}")
    new = DataKey.from_text(DataKey.generate_text())
    started = time.perf_counter()
    report = key_rotation.rotate(s.new_uow(), s.ctx, new, actor="os:bench")
    rotate = time.perf_counter() - started
    print(
        f"keys rotate: {rotate:.2f} s  ({report.experts} experts, {report.pages} pages, {report.cards} cards, "
        f"{report.check_ins} check-ins, {report.photos} photos, {report.answers} answers)"
    )
    after = read_everything(engine, new, s.ids)
    assert after == before, (after, before)
    print("read everything with the new key: all readable, same counts")
    chunks = 0
    stop_at = max(1, experts // key_rotation.CHUNK // 3)

    def die(_what: str, _n: int) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == stop_at:
            raise Stop

    newer = DataKey.from_text(DataKey.generate_text())
    s2 = s.ctx.__class__(data_key=new, rules=s.ctx.rules, face_verifier=None, clock=s.ctx.clock)
    with contextlib.suppress(Stop):
        key_rotation.rotate(s.new_uow(), s2, newer, actor="os:bench", on_chunk=die)
    started = time.perf_counter()
    resumed = key_rotation.rotate(s.new_uow(), s2, newer, actor="os:bench")
    print(
        f"interrupted after {stop_at} chunks, resumed in {time.perf_counter() - started:.2f} s "
        f"({resumed.experts} experts left to move)"
    )
    assert read_everything(engine, newer, s.ids) == before
    print("after the resumed rotation: all readable")
    print(f"ratio_rotate_vs_read={rotate / read:.2f}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=10_000)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (a private schema is made and dropped)")
    args = parser.parse_args()
    if not args.pg:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{Path(tmp) / 'rotate.db'}", args.experts)
        return
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(args.pg)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in args.pg else "?"
        run(f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}", args.experts)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


if __name__ == "__main__":
    main()
