"""wait_for_signal returns on SIGTERM even when the kernel hands the signal to another thread.

Python runs a signal's handler only in the main thread, once that thread wakes; a simulator's CLI
has other threads, and Linux may deliver a process's signal to any of them. Run in a fresh process
(a handler can be installed only from the main thread), with the signal sent to one other thread.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import signal, threading, time
from device_kit.cli import wait_for_signal

other = threading.Thread(target=threading.Event().wait, daemon=True)
other.start()
threading.Timer(0.5, lambda: signal.pthread_kill(other.ident, signal.SIGTERM)).start()
started = time.monotonic()
wait_for_signal()
print(f"returned after {time.monotonic() - started:.1f} s")
"""


def test_a_sigterm_received_by_another_thread_ends_the_wait() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("returned after "), done.stdout
