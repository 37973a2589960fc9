"""Fixtures shared by every test area. Area fixtures live in tests/<layer>/<area>/conftest.py."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tests.support.paths import SHARED_FACES
from tests.support.thread_stacks import thread_stacks

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the real PostgreSQL started by scripts/postgres.sh (scripts/test.sh exports it).

    Outside CI a missing server skips; in CI it fails, so a broken set-up cannot pass silently.
    """
    url = os.environ.get("PLATFORM_TEST_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("PLATFORM_TEST_PG_URL is not set: scripts/test.sh starts PostgreSQL and sets it")
        pytest.skip("PostgreSQL not started (run scripts/postgres.sh start, or make test)")
    return url


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces: face images of public figures for tests (see its SOURCES.md)."""
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/data/faces is not present beside the repository")
    return SHARED_FACES


def pytest_addoption(parser: pytest.Parser) -> None:
    """Card reader contract suites (tests/integration/cards) run against real readers when named."""
    group = parser.getgroup("card readers")
    group.addoption("--id-card-port", default=None, help="pyserial URL of a real SAM ID card reader")
    group.addoption("--bank-reader", default=None, help="PC/SC name of a real bank card reader (card presented)")
    group.addoption("--band-reader", default=None, help="PC/SC name of a real wristband reader (band presented)")
    printer = parser.getgroup("receipt printer")
    printer.addoption(
        "--printer", default=None, help="URL of a real receipt printer (socket://HOST:9100, /dev/ttyUSB0)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test that fails shows every thread's stack at that moment, so a rare failure on a loaded CI
    machine (a server thread that answered nothing, a wait that never ended) says where things stood."""
    del item, call
    report = yield
    if report.when == "call" and report.failed:
        report.sections.append(("threads when the test failed", thread_stacks()))
    return report
