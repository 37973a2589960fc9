"""Tests that share a daemon or a fixed port rely on xdist_group; this checks the grouping works.

A pytest/pytest-xdist combination once ignored the marker silently, so tests meant to run one after
another ran side by side. Under -n 2 the grouped tests below must all land on one worker.
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("grouping-check")
@pytest.mark.parametrize("index", range(4))
def test_grouped_tests_share_one_worker(index: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        pytest.skip("not running under xdist")
    # The parent of a worker's base temp dir is shared by all workers of one run.
    record = tmp_path_factory.getbasetemp().parent / "xdist-grouping-check"
    record.mkdir(exist_ok=True)
    (record / str(index)).write_text(worker)
    seen = {p.read_text() for p in record.iterdir()}
    assert seen == {worker}, f"grouped tests ran on several workers: {sorted(seen)}"
