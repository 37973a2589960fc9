"""`platform-server` console script: the two start-up tricks of `invitations import`, in one place.

1. The invitation reader process is forked before the command line's code is imported: parsing the
   workbook starts on the second core ~0.2 s after spawn while this process loads Typer (~0.15 s)
   and the database code (~0.7 s). Only the standard library and `reader_process` are loaded here.
2. After `invitations import` the process leaves with os._exit once its output is flushed and the
   database closed: the interpreter's teardown of everything loaded (~0.3-0.5 s) would otherwise be
   a fifth of the import's time. Every other command exits normally.

Importing `platform_server.cli` (tests, other tools) has no such side effect.
"""

from __future__ import annotations

import os
import sys

from platform_server import cli  # lazy (lazy_imports): its code runs after the fork
from platform_server.services.reader_process import EarlyReader


def main() -> None:
    """Fork the reader for `invitations import FILE` (else nothing), then run the command line."""
    early = EarlyReader.start(sys.argv[1:])
    try:
        cli.main(early)
    except SystemExit as done:
        if not cli.wants_fast_exit():
            raise
        _leave_now(done.code)


def _leave_now(code: int | str | None) -> None:
    """Flush what was written and end the process without the interpreter's teardown."""
    if isinstance(code, str):
        sys.stderr.write(f"{code}\n")
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))
