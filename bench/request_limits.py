"""The request limits' check per request, compiled per message type, against the descriptors read field by field.

Every call to the platform has its request checked against platform_server/grpc_api/limits.py's table
before a servicer sees it. `RequestChecker` compiles the table per message type once; the baseline, in
the same run, is the same check read off the descriptors field by field on every request (the code
before, kept as the test's oracle in tests/unit/platform_server/test_request_limits.py). Requests as
the kiosks send them: an ID-only identify with a full ID card, a completion with a new card and a
signature, a beat with six devices, an Echo.

    .venv/bin/python bench/request_limits.py

Printed per request: µs per check, each way (best of five rounds), and
`ratio_compiled_vs_walked` for the identify and the completion together (below 1: cheaper).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from expertcheckin.v1 import diagnostics_pb2, kiosk_pb2  # noqa: E402

from platform_server.grpc_api import limits  # noqa: E402
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: E402
from tests.unit.platform_server.test_request_limits import _walked  # noqa: E402

ROUNDS, CALLS = 5, 3000


def requests() -> dict[str, Any]:
    """The requests as a kiosk sends them, each parsed from its bytes as the server receives it."""
    identify = identify_request("K-0001", "LOAD", "110101199003070011")
    card = identify.id_card
    card.sex_code, card.nation_code, card.birth_date, card.valid_from = "1", "01", "19900307", "20200101"
    card.address, card.issuing_authority = "北京市东城区东华门街道 1 号", "北京市公安局东城分局"
    complete = complete_request("K-0001", "a" * 120, "04:A1:B2:C3:D4:E5:F6")
    beat = kiosk_pb2.HeartbeatRequest(kiosk_id="K-0001", band_stock=50, software_version="1.4.0")
    beat.kiosk_time.seconds = 1_800_000_000
    for n in range(6):
        beat.devices.add(device=f"device{n}", state=1, detail="ok")
    echo = diagnostics_pb2.EchoRequest(message="x" * 32)
    built = {"identify": identify, "complete": complete, "heartbeat": beat, "echo": echo}
    return {name: type(m).FromString(m.SerializeToString()) for name, m in built.items()}


def per_check_us(check: Any, request: Any) -> float:
    """Best of ROUNDS rounds of CALLS checks, in µs a check."""
    return min(timeit.repeat(lambda: check(request), number=CALLS, repeat=ROUNDS)) / CALLS * 1e6


def main() -> None:
    """Print each request's figures and the ratio for a check-in's two requests."""
    checker = limits.RequestChecker(limits.LIMITS)
    totals = {"compiled": 0.0, "walked": 0.0}
    print(f"request limits, µs a check (best of {ROUNDS} rounds of {CALLS})")
    for name, request in requests().items():
        assert checker.violations(request) == _walked(request, limits.LIMITS) == [], name
        compiled = per_check_us(checker.violations, request)
        walked = per_check_us(lambda r: _walked(r, limits.LIMITS), request)
        if name in {"identify", "complete"}:
            totals["compiled"] += compiled
            totals["walked"] += walked
        print(f"{name:10s} compiled={compiled:6.1f} walked={walked:6.1f}")
    print(f"ratio_compiled_vs_walked={totals['compiled'] / totals['walked']:.2f}")


if __name__ == "__main__":
    main()
