"""Every live thread's stack as text: attached to a failed test's report to say where each thread was."""

from __future__ import annotations

import sys
import threading
import traceback


def thread_stacks() -> str:
    """Name and stack of every thread of this process, the current one included."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():  # the one public-enough way to see other threads
        stack = "".join(traceback.format_stack(frame))
        parts.append(f"--- thread {names.get(ident, '?')} ({ident})\n{stack}")
    return "\n".join(parts)
