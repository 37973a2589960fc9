"""The console's live board: delay from a completed check-in to the row showing in the browser.

A real platform (gRPC on a free port, SQLite file), the console (uvicorn, default settings: the
stream polls the events table every 0.1 s) and Debian's headless chromium on the board. A
MutationObserver in the page stamps each new check-in row with Date.now(); the kiosk side stamps
the moment CompleteCheckIn returned (same machine, same wall clock). One check-in at a time, each
waited for before the next. Baseline in the same run: the CompleteCheckIn round trip itself.
Prints p50/p99 of both and `ratio_board_p50_vs_rpc_p50=<x>`.

    .venv/bin/python bench/console_board_latency.py [--check-ins 100] [--poll 0.1]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]

from selenium.webdriver.common.by import By  # noqa: E402

from platform_server.console.app import ConsoleSettings  # noqa: E402
from platform_server.services import accounts  # noqa: E402
from tests.integration.console.browser import chromium, wait_for  # noqa: E402
from tests.integration.console.support import PASSWORD, add_person, start_console  # noqa: E402
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: E402
from tests.support.platform import start, stop  # noqa: E402

OBSERVE = """
window.seen = {};
new MutationObserver((records) => {
  const now = Date.now();
  for (const r of records) for (const n of r.addedNodes) {
    if (n.dataset && n.dataset.checkIn && !(n.dataset.checkIn in window.seen)) window.seen[n.dataset.checkIn] = now;
  }
}).observe(document.getElementById("feed"), {childList: true});
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-ins", type=int, default=100)
    parser.add_argument("--poll", type=float, default=0.1)
    args = parser.parse_args()
    n = args.check_ins
    with tempfile.TemporaryDirectory() as tmp:
        running = start(f"sqlite:///{tmp}/platform.db", experts=n, rooms=n, bands=n)
        add_person(running.platform, "bench", accounts.Role.ORGANISER)
        console = start_console(running.platform, ConsoleSettings(poll_interval_s=args.poll))
        browser_gen = chromium()
        driver = next(browser_gen)
        try:
            driver.get(console.url + "/login")
            driver.find_element(By.ID, "username").send_keys("bench")
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            driver.find_element(By.ID, "sign-in").click()
            wait_for(lambda: driver.find_elements(By.ID, "batches"))
            s = running.seeded
            driver.get(f"{console.url}/batches/{s.batch_code}")
            wait_for(lambda: driver.find_element(By.ID, "live").get_attribute("data-state") == "live")
            driver.execute_script(OBSERVE)
            delays: list[float] = []
            rpc: list[float] = []
            for i in range(n):
                token = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, s.ids[i]))
                sent = time.perf_counter()
                done = running.kiosk.CompleteCheckIn(complete_request("K1", token.identification_token, s.bands[i][0]))
                returned_ms = time.time() * 1000
                rpc.append((time.perf_counter() - sent) * 1000)
                check_in_id = done.check_in.check_in_id
                assert check_in_id, done
                seen = wait_for(functools.partial(driver.execute_script, f"return window.seen['{check_in_id}'];"))
                delays.append(float(seen) - returned_ms)
            assert driver.find_element(By.ID, "c-arrived").text == str(n)
        finally:
            with contextlib.suppress(StopIteration):
                next(browser_gen)
            console.stop()
            stop(running)
    print(f"check-ins={n} poll_interval_s={args.poll}")
    print(
        f"board_delay_ms p50={pct(delays, 0.5):.0f} p99={pct(delays, 0.99):.0f} max={max(delays):.0f} "
        f"mean={statistics.fmean(delays):.0f}"
    )
    print(f"baseline CompleteCheckIn_rpc_ms p50={pct(rpc, 0.5):.0f} p99={pct(rpc, 0.99):.0f}")
    print(f"ratio_board_p50_vs_rpc_p50={pct(delays, 0.5) / pct(rpc, 0.5):.2f}")


if __name__ == "__main__":
    main()
