"""The cores each kind of process uses, second by second, while a load run goes on beside it.

Tells whether a platform under load is bound by the machine's cores (every core busy) or by one
process's GIL (its serving process near one core, cores left idle). Reads every process's user +
system time from /proc once a second and sums it by kind: the platform's serving processes, their
children (the face workers and the UWB delivery process), the load suite's kiosk processes,
PostgreSQL, HAProxy, the rest.

    .venv/bin/python bench/cpu_by_process.py --seconds 150 &
    .venv/bin/python bench/load_suite.py --target sqlite --checkins 3000

Prints a line a second (cores used by each kind), then the mean over the busy seconds: those in which
the serving processes used at least half of their busiest second's cores (the load, not the set-up).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from platform_server.rpc_metrics import cpu_seconds_of, proc_stat_fields

KINDS = ("serve", "children", "kiosks", "postgres", "haproxy", "other")
PROC = Path("/proc")


def kind_of(cmdline: str, parent_kind: str) -> str:
    """The kind of process a command line belongs to (see KINDS); children are told by their parent."""
    if "platform-server" in cmdline and " serve" in cmdline:
        return "serve"
    if "multiprocessing" in cmdline:  # spawned: face workers and UWB delivery by a serving process, kiosks by the suite
        return "children" if parent_kind == "serve" else "kiosks"
    if Path(cmdline.split(" ", 1)[0]).name.startswith("postgres"):  # the postmaster by path, backends "postgres: ..."
        return "postgres"
    if "haproxy" in cmdline:
        return "haproxy"
    return "other"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    return cpu_seconds_of(proc_stat_fields(pid))


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Each live process's kind and CPU seconds (user + system) so far."""
    seen: dict[int, tuple[str, int, float]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            fields = proc_stat_fields(pid)
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended between the listing and the read
            continue
        seen[pid] = (cmdline, int(fields[1]), cpu_seconds_of(fields))
    parents = {pid: kind_of(cmdline, "") for pid, (cmdline, _, _) in seen.items()}
    return {pid: (kind_of(cmdline, parents.get(ppid, "")), seconds) for pid, (cmdline, ppid, seconds) in seen.items()}


def main() -> None:
    """Sample for --seconds, a line a second, then the busy seconds' mean."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to sample")
    args = parser.parse_args()
    print("seconds " + " ".join(f"{k:>8}" for k in KINDS) + "    total", flush=True)
    before, then = cpu_seconds(), time.monotonic()
    start, rows = then, list[dict[str, float]]()
    while then - start < args.seconds:
        time.sleep(1.0)  # the sampling period, not a wait for something
        now_cpu, now = cpu_seconds(), time.monotonic()
        used = dict.fromkeys(KINDS, 0.0)  # CPU seconds by kind in this second
        for pid, (kind, seconds) in now_cpu.items():
            # A process born in this second counts from zero; one that ended is lost for its last second.
            used[kind] += seconds - (before[pid][1] if pid in before else 0.0)
        row = {k: used[k] / (now - then) for k in KINDS}
        rows.append(row)
        print(
            f"{now - start:7.1f} " + " ".join(f"{row[k]:8.2f}" for k in KINDS) + f" {sum(row.values()):8.2f}",
            flush=True,
        )
        before, then = now_cpu, now
    peak = max((r["serve"] for r in rows), default=0.0)
    busy = [r for r in rows if peak > 0 and r["serve"] >= peak / 2]
    if not busy:
        print("no serving process was seen")
        return
    mean = {k: sum(r[k] for r in busy) / len(busy) for k in KINDS}
    print(
        f"busy seconds {len(busy)}: "
        + ", ".join(f"{k} {mean[k]:.2f}" for k in KINDS)
        + f"; total {sum(mean.values()):.2f} of {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
