"""Forks the invitation reader process, as early as the CLI can: before Typer and the database code load.

Only the standard library is imported here (the child imports the spreadsheet code itself), so the
console script can start parsing the workbook on the second core some 0.2 s after it was spawned
(see cli.py and services.spreadsheets.InvitationReader).
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Lazy (lazy_imports): the spreadsheet code loads in the reader process, after the fork.
from platform_server.services import spreadsheets
from platform_server.services import timeline as timelines

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from platform_server.services.timeline import Timeline

# Global options of `platform-server` that take a value, and those of `invitations import`.
_GLOBAL_VALUE_OPTIONS = {"--config", "-c", "--db"}
_IMPORT_VALUE_OPTIONS = {"--batch", "-b"}


def can_fork() -> bool:
    """True when forking is available and safe (a process with other threads can deadlock its child)."""
    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def fork_reader(path: Path, timeline: Timeline) -> tuple[Connection, BaseProcess]:
    """Start the reader process for `path`; (the writer's end of its pipe, the process)."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_run, args=(child, path, timeline), name="invitation-reader", daemon=True)
    process.start()
    child.close()
    timeline.mark("reader process forked")
    return parent, process


def _run(connection: Connection, path: Path, timeline: Timeline) -> None:
    """The reader process's body (imports the spreadsheet code in the child, not before the fork)."""
    spreadsheets.reader_main(connection, path, timeline)


def import_file_in(argv: list[str]) -> Path | None:
    """The FILE of `invitations import FILE ...` in the command-line arguments, or None.

    Understands the global options before the command; anything unusual (help, an unknown option,
    no file) gives None, and the command then starts its reader itself after Typer parsed the line.
    """
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        option = argv[index]
        if option in _GLOBAL_VALUE_OPTIONS:
            index += 2
        elif option.split("=", 1)[0] in _GLOBAL_VALUE_OPTIONS and "=" in option:
            index += 1
        else:
            return None
    if argv[index : index + 2] != ["invitations", "import"]:
        return None
    rest = argv[index + 2 :]
    position = 0
    file: str | None = None
    while position < len(rest):
        token = rest[position]
        if token in _IMPORT_VALUE_OPTIONS:
            position += 2
            continue
        if token in {"--verbose", "-v"} or (token.startswith("--batch=") and len(token) > len("--batch=")):
            position += 1
            continue
        if token.startswith("-") or file is not None:
            return None  # --help, an option Typer will explain, or a second file: let Typer answer
        file = token
        position += 1
    return Path(file) if file else None


@dataclass
class EarlyReader:
    """A reader process the console script forked before parsing its command line."""

    path: Path
    timeline: Timeline
    connection: Connection
    process: BaseProcess

    @classmethod
    def start(cls, argv: list[str]) -> EarlyReader | None:
        """Fork the reader if `argv` is `invitations import FILE ...` and forking is safe, else None."""
        path = import_file_in(argv)
        if path is None or not can_fork():
            return None
        timeline = timelines.Timeline.from_environment(verbose=bool({"-v", "--verbose"} & set(argv)))
        timeline.mark("interpreter started")
        connection, process = fork_reader(path, timeline)
        return cls(path, timeline, connection, process)

    def close(self) -> None:
        """Stop an unused reader (the command did not want this file)."""
        self.connection.close()  # a reader waiting for the key sees EOF and ends
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
