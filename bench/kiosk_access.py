"""Cost of the kiosk gate (services.kiosk_access.admit, one indexed read) beside the identify it guards.

In-process, over a fresh SQLite file: alternates admit() and an ID-only identify() so both see the
same machine load; prints the p50 of each and their ratio. `--calls N` rounds (default 2000).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from platform_server.services import identify, kiosk_access  # noqa: E402
from tests.unit.platform_server.support import seed  # noqa: E402


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seeded = seed(f"sqlite:///{Path(tmp) / 'p.db'}", experts=50, kiosk_ids=["K1"])
        gate, ident = [], []
        for n in range(args.calls):
            started = time.perf_counter()
            kiosk_access.admit(
                seeded.new_uow(),
                seeded.ctx,
                "K1",
                certificates_required=False,
                presented_sha256=None,
                batch_code=seeded.batch_code,
                identify=True,
            )
            gate.append(time.perf_counter() - started)
            started = time.perf_counter()
            identify.identify(
                seeded.new_uow(),
                seeded.ctx,
                identify.IdentifyCommand(uuid.uuid4().hex, "K1", seeded.batch_code, seeded.ids[n % 50], "长期"),
            )
            ident.append(time.perf_counter() - started)
        gate_ms, ident_ms = statistics.median(gate) * 1e3, statistics.median(ident) * 1e3
        print(f"admit     n={args.calls} p50={gate_ms:.3f} ms")
        print(f"identify  n={args.calls} p50={ident_ms:.3f} ms (ID-only, in-process, no gRPC)")
        print(f"ratio_admit_vs_identify_p50={gate_ms / ident_ms:.2f}")


if __name__ == "__main__":
    main()
