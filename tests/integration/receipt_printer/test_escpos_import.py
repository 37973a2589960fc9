"""python-escpos imported by the protocol module leaves nothing behind in the process or in /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

PROBE = """
import logging, tempfile
import receipt_printer.protocol as protocol
protocol.encode_receipt  # the module is whole
print(len(logging.getLogger().handlers), tempfile.gettempdir())
"""


def _import_in_a_fresh_process(tmp_dir: Path, **extra_env: str) -> str:
    env = {**os.environ, "TMPDIR": str(tmp_dir), **extra_env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_importing_the_protocol_leaves_no_directory_in_tmp_and_no_root_handler(tmp_path: Path) -> None:
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    assert _import_in_a_fresh_process(tmp_dir) == f"0 {tmp_dir}"
    assert list(tmp_dir.iterdir()) == []


def test_an_operator_named_pickle_directory_is_still_used(tmp_path: Path) -> None:
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    cache = tmp_path / "escpos-cache"
    cache.mkdir()
    _import_in_a_fresh_process(tmp_dir, ESCPOS_CAPABILITIES_PICKLE_DIR=str(cache))
    assert [p.name.endswith(".capabilities.pickle") for p in cache.iterdir()] == [True]
    assert list(tmp_dir.iterdir()) == []
