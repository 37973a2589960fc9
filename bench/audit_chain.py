"""`audit verify` on an untouched log of 100 000 entries, beside a plain read of the same rows.

Writes the entries through audit.record (5 000 per transaction; on PostgreSQL sealed, then placed in the
chain as the chainer places them, within the printed time), then
times the full chain walk (services.audit_chain.verify, as `platform-server audit verify` runs it)
and, as the baseline in the same run, a plain ordered read of the same columns without any HMAC.
Prints the medians and `ratio_verify_vs_read=<x>`.

    .venv/bin/python bench/audit_chain.py [--entries 100000] [--runs 3] [--pg URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import sqlalchemy as sa  # noqa: E402

from platform_server.db.models import AuditEntry  # noqa: E402
from platform_server.services import audit, audit_chain  # noqa: E402
from tests.unit.platform_server.support import seed  # noqa: E402

T0 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def fill(url: str, entries: int) -> tuple[sa.Engine, float]:
    s = seed(url, experts=5, kiosk_ids=["K1"])
    started = time.perf_counter()
    written = 0
    while written < entries:
        uow = s.new_uow()
        with uow:
            for i in range(written, min(entries, written + 5000)):
                audit.record(
                    uow,
                    at=T0 + dt.timedelta(milliseconds=i),
                    actor=f"K{i % 8 + 1}",
                    action="identify",
                    outcome="verified",
                    batch_code=s.batch_code,
                    id_hash=f"{i:064x}",
                    id_masked="1101**********1234",
                    detail={"faces": 1, "liveness": True, "distance": 0.31, "attempt": 1},
                )
            uow.commit()
        written = min(entries, written + 5000)
    # PostgreSQL: the entries were sealed; placing them is part of writing them (as the chainer does).
    audit_chain.chain_all_pending(s.uow.engine, audit_chain.key_for(s.uow.engine))
    return s.uow.engine, time.perf_counter() - started


def plain_read(engine: sa.Engine) -> int:
    table = AuditEntry.__table__
    with engine.connect() as c:
        rows = c.execution_options(yield_per=5000).execute(
            sa.select(*table.c).where(table.c.seq.is_not(None)).order_by(table.c.seq)
        )
        return sum(1 for _ in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (a private schema is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        schema = None
        if args.pg:
            schema = "bench_" + uuid.uuid4().hex[:10]
            admin = sa.create_engine(args.pg)
            with admin.begin() as c:
                c.exec_driver_sql(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.pg else "?"
            url = f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}"
        else:
            url = f"sqlite:///{Path(tmp) / 'audit.db'}"
        try:
            engine, wrote = fill(url, args.entries)
            print(
                f"{engine.dialect.name}: wrote {args.entries} chained entries in {wrote:.2f} s "
                f"({wrote / args.entries * 1e6:.1f} µs each, 5 000 per transaction)"
            )
            key = audit_chain.key_for(engine)
            reads, verifies = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                count = plain_read(engine)
                reads.append(time.perf_counter() - started)
                report = audit_chain.verify(engine, key)
                assert report.ok, report.findings
                assert report.entries == count >= args.entries
                verifies.append(report.seconds)
            read, verify = statistics.median(reads), statistics.median(verifies)
            print(f"plain ordered read of {count} entries: median {read:.3f} s")
            print(
                f"audit verify of {report.entries} entries: median {verify:.3f} s (runs: "
                + ", ".join(f"{v:.3f}" for v in verifies)
                + ")"
            )
            print(f"ratio_verify_vs_read={verify / read:.2f}")
            engine.dispose()
        finally:
            if schema:
                with admin.begin() as c:
                    c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                admin.dispose()


if __name__ == "__main__":
    main()
