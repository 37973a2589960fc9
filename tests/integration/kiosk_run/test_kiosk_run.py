"""`checkin-kiosk run --config FILE`, the real kiosk process, on a private Xvfb, driven through its window.

The simulated world (SAM simulator, private pcscd with vpcd, arm and UWB simulators, a platform
process) comes from sim_world.world; the kiosk is a real subprocess reading the TOML the
world writes. The test presses 登记办理 and 确认 with xdotool clicks found on screenshots, signs on the
pad with a mouse drag, and plays the person's devices (ID card, camera clip, bank card, taking the
band) on the simulators. It waits on the kiosk's own log (`kiosk screen: <key>`) with deadlines,
saves a screenshot of each screen it acts on, and stops the kiosk with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import cv2
import numpy as np
import pytest

from bank_card_reader.simulator import UnionPayDebitCard
from camera.simulator import make_clip
from checkin.ui import theme
from sim_world.faces import resolve_face
from sim_world.model import load_scenario
from sim_world.ui_mode import private_xvfb
from sim_world.world import World, identity_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")

KIOSK = Path(sys.executable).with_name("checkin-kiosk")
REPO = Path(__file__).resolve().parents[3]
WIDTH, HEIGHT = 1280, 800
SCREEN_TIMEOUT_S = 60.0

pytestmark = [
    pytest.mark.gui,
    pytest.mark.pcsc,
    pytest.mark.slow,
    pytest.mark.xdist_group("kiosk_run"),
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not (shutil.which("Xvfb") and shutil.which("xdotool") and shutil.which("import")),
        reason="needs xvfb, xdotool, imagemagick",
    ),
]

SCENARIO = """
[world]
batch = "RUN-2026-001"
arm_speed = 50.0

[[experts]]
key = "zhang"
name = "张伟"
id_number = "110105195803120010"
photo = "faces:obama_1.jpg|astronaut"

[[checkins]]
name = "through the window"
expert = "zhang"
"""


class KioskProcess:
    """The kiosk subprocess, its log lines as they come, and the display it draws on."""

    def __init__(
        self, process: subprocess.Popen[str], display: str, shots: Path, stream: IO[str] | None = None
    ) -> None:
        self.process = process
        self._stream = stream if stream is not None else process.stderr
        self.display = display
        self.shots = shots
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._stream is not None
        for line in self._stream:
            self.log.append(line)
            self.lines.put(line)

    def wait_screen(self, key: str, timeout: float = SCREEN_TIMEOUT_S) -> None:
        """Wait (bounded) for the kiosk to log that it shows screen `key`."""
        self.wait_log(f"kiosk screen: {key}\n", timeout)

    def wait_log(self, wanted: str, timeout: float = SCREEN_TIMEOUT_S) -> None:
        """Wait (bounded) for a log line that contains `wanted` (a trailing newline: that ends with it)."""
        if not self.saw_log(wanted, timeout):
            tail = "".join(self.log[-15:])
            pytest.fail(f"no {wanted!r} within {timeout:.0f} s (exit {self.process.poll()}):\n{tail}")

    def saw_log(self, wanted: str, timeout: float) -> bool:
        """True once a log line contains `wanted` within `timeout` s; False if none did (or the kiosk ended)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                return False
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if wanted in line.rstrip() + "\n":
                return True

    def tap_for_screen(self, x: int, y: int, key: str, *, taps: int = 3, wait_s: float = 20.0) -> int:
        """Tap (x, y) until screen `key` shows, as a person taps again when nothing happens; the taps used.

        A second tap is what a person does when the first brings nothing; the test warns when one was
        needed and fails if `taps` taps do not bring the screen. (The rare lost first tap was a button
        found before the window reached its size, see `whole_window`.)
        """
        for tap in range(1, taps + 1):
            if tap > 1:
                # As a finger is lifted: off the button first, so the next tap enters it afresh (the
                # button acts on a release only after the pointer entered it).
                self.screenshot(f"lost-tap-{tap - 1}")
                self.move(1, 1)
            self.click(x, y)
            if self.saw_log(f"kiosk screen: {key}\n", wait_s):
                return tap
        tail = "".join(self.log[-15:])
        pytest.fail(f"no {key!r} screen after {taps} taps at ({x}, {y}):\n{tail}")

    def screenshot(self, name: str) -> np.ndarray:
        """Save the whole display as `name`.png and return it (BGR)."""
        path = self.shots / f"{name}.png"
        subprocess.run(["import", "-display", self.display, "-window", "root", str(path)], check=True, timeout=30)
        image = cv2.imread(str(path))
        assert image is not None, f"unreadable screenshot {path}"
        return image

    def screenshot_until(
        self, name: str, find: Callable[[np.ndarray], T], timeout: float = 15.0
    ) -> tuple[np.ndarray, T]:
        """Screenshots until `find` succeeds on one (Tk draws a new screen a moment after the log line)."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.screenshot(name)
            try:
                return image, find(image)
            except AssertionError as err:
                if time.monotonic() > deadline:
                    tail = "".join(self.log[-15:])
                    pytest.fail(f"{name}: {err} (for {timeout:.0f} s; see {self.shots / name}.png):\n{tail}")

    def xdotool(self, *args: str) -> str:
        """Run xdotool on the kiosk's display; what it printed."""
        env = {**os.environ, "DISPLAY": self.display}
        return subprocess.run(
            ["xdotool", *args], check=True, timeout=10, env=env, capture_output=True, text=True
        ).stdout

    def pointer(self) -> tuple[int, int]:
        """Where the display's pointer is now."""
        shell = self.xdotool("getmouselocation", "--shell")
        fields = dict(line.split("=", 1) for line in shell.splitlines() if "=" in line)
        return int(fields["X"]), int(fields["Y"])

    def move(self, x: int, y: int) -> None:
        """Move the pointer to (x, y) and wait (bounded) until the display has it there.

        Not `mousemove --sync`: when the pointer is already at (x, y), as on a second tap, it waits
        for a move that never comes (a CI run's retap hung its whole 10 s on it).
        """
        self.xdotool("mousemove", str(x), str(y))
        deadline = time.monotonic() + 10
        while (where := self.pointer()) != (x, y):
            assert time.monotonic() < deadline, f"the pointer stayed at {where}, not ({x}, {y})"
            time.sleep(0.01)  # polling the display with a deadline

    def click(self, x: int, y: int) -> None:
        """A tap at (x, y): the pointer moves there first (Tk needs to see it enter the button), then clicks."""
        self.move(x, y)
        self.xdotool("click", "1")


def stop(process: subprocess.Popen[str]) -> None:
    """After a failure: SIGTERM first, so the process stops what it started (pcscd, a platform), then kill."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def whole_window(image: np.ndarray) -> np.ndarray:
    """The screenshot, once the kiosk's window has its configured size (fails before).

    Tk maps the window at 600 x 500 first and gives it its size a moment later: a button found on a
    screenshot taken in between moves before the tap lands (the window test's rare lost first tap).
    The display's root is black, the window's bottom bar is not.
    """
    assert image[HEIGHT - 1, WIDTH - 1].max() > 0, "the kiosk window has not reached its full size yet"
    return image


def home_button_centre(image: np.ndarray) -> tuple[int, int]:
    """登记办理 on the home screen, once the window has its size (see `whole_window`)."""
    return primary_button_centre(whole_window(image))


def primary_button_centre(image: np.ndarray) -> tuple[int, int]:
    """Centre of the largest area in the theme's primary colour: the screen's main button."""
    hex_colour = theme.PRIMARY.lstrip("#")
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)])
    bgr = rgb[::-1]
    mask = (np.abs(image.astype(int) - bgr).sum(axis=2) < 30).astype(np.uint8)
    count, _labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
    assert count > 1, "no primary-coloured button on the screen"
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    assert stats[largest, cv2.CC_STAT_AREA] > 5000, "the primary-coloured area is too small for a button"
    x, y = centroids[largest]
    return round(x), round(y)


def signature_pad(image: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the signature pad: the long dark border lines around it."""
    dark = image.max(axis=2) < 120  # the pad border is dark grey, its inside white
    rows = np.flatnonzero(dark.sum(axis=1) > image.shape[1] * 0.5)
    cols = np.flatnonzero(dark.sum(axis=0) > image.shape[0] * 0.2)
    assert len(rows) >= 2, "no signature pad border found"
    assert len(cols) >= 2, "no signature pad border found"
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def drawn_content(image: np.ndarray) -> int:
    """How many dark (text, drawing) pixels the content area between the bars has; fails when it is blank."""
    content = image[130 : HEIGHT - 140]
    dark = int((content.max(axis=2) < 120).sum())
    assert dark > 2000, "the content area is still blank"
    return dark


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    scenario_file = tmp_path / "run.toml"
    scenario_file.write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(scenario_file)
    saved = os.environ.get("PCSCLITE_CSOCK_NAME")
    simulated = World(scenario, tmp_path / "world", band_count=4)
    try:
        simulated.start()
        yield simulated
    finally:
        simulated.stop()
        # World.start() points this process's PC/SC clients at its pcscd: give other tests theirs back.
        if saved is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = saved


@pytest.fixture
def kiosk(world: World, tmp_path: Path) -> Iterator[KioskProcess]:
    world.kiosk_config()  # writes WORK/kiosk.toml, pointing at the world's simulators and platform
    config = world.work / "kiosk.toml"
    shots = tmp_path / "screens"
    shots.mkdir()
    with private_xvfb(WIDTH, HEIGHT) as display:
        env = {**os.environ, "DISPLAY": display}
        assert world.pcscd is not None
        env.update(world.pcscd.env)
        process = subprocess.Popen(
            [str(KIOSK), "run", "--config", str(config), "--verbose"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        running = KioskProcess(process, display, shots)
        try:
            yield running
        finally:
            stop(process)


def test_kiosk_process_checks_in_an_expert_through_its_window(world: World, kiosk: KioskProcess) -> None:
    expert = world.scenario.experts["zhang"]
    face = resolve_face(expert.photo, base=world.scenario.path.parent, work=world.work / "faces")
    assert face.path is not None, face.reason
    clip = make_clip(face.path, world.work / "clips" / "zhang", blink=True, frames=60)

    # Home: the kiosk is up once the platform answered its heartbeat and every device is healthy.
    kiosk.wait_screen("home")
    _home, start = kiosk.screenshot_until("01-home", home_button_centre)
    taps = kiosk.tap_for_screen(*start, "id_card")  # 登记办理
    if taps > 1:
        warnings.warn(f"登记办理 needed {taps} taps under Xvfb", stacklevel=1)
    kiosk.screenshot_until("02-id_card", drawn_content)
    world.show_camera(clip)  # the expert steps up to the kiosk
    assert world.id_card is not None
    world.id_card.place(identity_for(expert))

    kiosk.wait_screen("face")
    world.id_card.remove()
    kiosk.wait_screen("verifying")
    kiosk.wait_screen("card_insert")
    kiosk.screenshot_until("03-card_insert", drawn_content)
    world.insert_bank_card(UnionPayDebitCard("6212345678901232"))

    kiosk.wait_screen("card_confirm")
    _confirm, button = kiosk.screenshot_until("04-card_confirm", primary_button_centre)
    world.remove_bank_card()
    kiosk.click(*button)  # 确认

    kiosk.wait_screen("signature")
    _pad, (left, top, _right, bottom) = kiosk.screenshot_until("05-signature", signature_pad)
    y = (top + bottom) // 2
    kiosk.move(left + 60, y)
    kiosk.xdotool("mousedown", "1")
    for step in range(1, 12):
        kiosk.move(left + 60 + step * 40, y + (30 if step % 2 else -30))
    kiosk.xdotool("mouseup", "1")
    _signed, button = kiosk.screenshot_until("06-signed", primary_button_centre)
    kiosk.click(*button)  # 确认

    kiosk.wait_screen("dispensing")
    arm = world.arm
    assert arm is not None
    deadline = time.monotonic() + SCREEN_TIMEOUT_S
    while arm.take_from_pickup() is None:  # the person takes the band once the arm offers it
        assert time.monotonic() < deadline, "the arm never offered the band"
        time.sleep(0.05)

    kiosk.wait_screen("done")
    kiosk.screenshot_until("07-done", drawn_content)
    # The platform bound the band and gave the expert a room: its database says so.
    with contextlib.closing(sqlite3.connect(f"file:{world.platform_db}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT rooms.number FROM check_ins JOIN rooms ON rooms.id = check_ins.room_id"
            " WHERE check_ins.annulled_at IS NULL"
        ).fetchall()
    assert len(rows) == 1

    kiosk.process.send_signal(signal.SIGTERM)
    assert kiosk.process.wait(30) == 0
    log = "".join(kiosk.log)
    assert "Traceback" not in log
    assert "kiosk stopped (signal 15)" in log
    assert re.search(r"read ID card 1101\*+0010", log)  # masked in the log, never in clear
    assert expert.id_number not in log


def panel_buttons(image: np.ndarray, left: int) -> list[tuple[int, int]]:
    """Centres of the demo control window's buttons (customtkinter's default blue), top to bottom."""
    region = image[:, left:]
    mask = (np.abs(region.astype(int) - np.array([0xD0, 0x8E, 0x3B])).sum(axis=2) < 30).astype(np.uint8)
    count, _labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
    found = [
        (round(centroids[i][0]) + left, round(centroids[i][1]))
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_AREA] > 3000
    ]
    assert len(found) >= 5, f"expected the control window's buttons, found {len(found)}"
    return sorted(found, key=lambda centre: centre[1])


def test_live_demo_enrols_the_person_at_the_camera_and_checks_them_in(tmp_path: Path) -> None:
    # The webcam: OpenCV reads an image folder through the same VideoCapture API as a device index.
    face = resolve_face("faces:obama_1.jpg|astronaut", base=REPO, work=tmp_path / "faces")
    assert face.path is not None, face.reason
    webcam = make_clip(face.path, tmp_path / "webcam", blink=True, frames=60)
    shots = tmp_path / "screens"
    shots.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    with private_xvfb(WIDTH + 400, HEIGHT) as display:
        env["DISPLAY"] = display
        process = subprocess.Popen(
            [str(KIOSK), "demo-live", "--camera", str(webcam), "--work", str(tmp_path / "live"), "--verbose"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        kiosk = KioskProcess(process, display, shots, stream=process.stdout)
        try:
            kiosk.wait_log("demo expert enrolled live", timeout=120)
            kiosk.wait_screen("home")
            _home, start = kiosk.screenshot_until("01-home", home_button_centre)
            kiosk.click(*start)  # 登记办理: the demo puts the enrolled expert's ID card on the reader
            kiosk.wait_screen("id_card")
            kiosk.wait_screen("face")
            kiosk.wait_screen("verifying")
            # The platform matched the camera's face with the photo it imported at the start.
            kiosk.wait_screen("card_insert")
            _insert, buttons = kiosk.screenshot_until("02-card_insert", lambda image: panel_buttons(image, WIDTH))
            kiosk.click(*buttons[4])  # 插入银行卡 / Insert bank card, in the control window
            kiosk.wait_screen("card_confirm")
            kiosk.screenshot_until("03-card_confirm", drawn_content)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        finally:
            stop(process)
    log = "".join(kiosk.log)
    assert "Traceback" not in log
    assert "110108199003070024" not in log  # the demo expert's ID number never in clear
    # The live photo was on disk in clear only for the import; the platform keeps it encrypted.
    assert not list((tmp_path / "live").rglob("110108199003070024.*"))
