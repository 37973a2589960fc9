"""Debian's chromium driven by Selenium through Debian's chromedriver (never a downloaded browser)."""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import TYPE_CHECKING, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium(window: tuple[int, int] = (1366, 900)) -> Iterator[webdriver.Chrome]:
    """A fresh headless chromium with its own profile directory, quit and removed afterwards."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/bootstrap.sh installs them)")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument("--lang=zh-CN")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: Callable[[], T | None], *, timeout: float = 60.0, message: str = "") -> T:
    """Poll until `what` returns something truthy (generous deadline: CI machines are loaded)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = what()
        except Exception as err:
            last_error = err
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting: {message} (last error: {last_error})")


def screenshot(driver: webdriver.Chrome, directory: Path | None, name: str) -> None:
    """Save the page as <directory>/<name>.png when screenshots are asked for."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(directory / f"{name}.png"))
