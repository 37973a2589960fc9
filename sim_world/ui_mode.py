"""A scenario played through the kiosk's real touch UI: `checkin-kiosk run-scenario FILE --ui`.

Tk owns the main thread; the runner (the simulated world and the person) runs on another thread and
the flow on its FlowThread, exactly as headless. The window is one more flow listener: views are
handed to the Tk thread, and a button pressed by a real person is handed back to the flow's thread.
Without a display a private Xvfb is started, and with --screenshots each new screen is saved as PNG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageTk

import checkin.ui.window as ui_window  # lazy (lazy_imports): runs once DISPLAY is set
from checkin.flow.machine import FlowListenerBase
from sim_world.runner import ScenarioRunner, run_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from checkin.flow.views import View
    from sim_world.model import Scenario

log = logging.getLogger(__name__)
_PUMP_MS = 30


@contextlib.contextmanager
def private_xvfb(width: int, height: int) -> Iterator[str]:
    """Start Xvfb on a free display number (it writes the number once ready); yield the DISPLAY value."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise RuntimeError("no display and no Xvfb: install the Debian package xvfb (scripts/bootstrap.sh does)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(  # noqa: S603 - fixed argument list
        [binary, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


class _ToTk(FlowListenerBase):
    """Views from the flow's thread, queued for the Tk thread."""

    def __init__(self) -> None:
        self.views: queue.SimpleQueue[View] = queue.SimpleQueue()

    def on_view(self, view: View) -> None:
        self.views.put(view)


class _FlowActions:
    """What the window's buttons call, run on the flow's thread (a person may touch the demo too)."""

    def __init__(self, runner: ScenarioRunner) -> None:
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            kiosk, thread = self._runner.kiosk, self._runner.thread
            if kiosk is None or thread is None:
                return
            method = getattr(kiosk.flow, name)
            thread.post(lambda: method(*args, **kwargs))

        return call


def _screenshot(display: str, path: Path) -> None:
    binary = shutil.which("import")
    if binary is None:
        log.warning("ImageMagick's import is missing: no screenshot %s", path.name)
        return
    subprocess.run([binary, "-display", display, "-window", "root", str(path)], check=False)  # noqa: S603


def _import_before_threads() -> None:
    """Import, on this thread, what the preview (PIL's Tk bridge) and the face analysis import lazily.

    Seen in a demo run: the Tk thread importing PIL._imagingtk while the capture thread imported a
    numpy submodule on its first np.percentile deadlocked on the import locks. Importing both here,
    before any other thread runs, takes that race away.
    """
    np.percentile(np.arange(4.0), 50)
    np.unique(np.arange(4))
    ImageTk.PhotoImage(Image.new("RGB", (2, 2)))


def run_with_ui(  # noqa: C901 - the Tk loop, the person's thread and clean-up in one place
    scenario: Scenario,
    *,
    work: Path | None,
    screenshots: Path | None,
    emit: Callable[[dict[str, object]], None],
    width: int = 1280,
    height: int = 800,
) -> int:
    """Play the scenario with the window showing; return how many check-ins did not end as expected."""
    display = os.environ.get("DISPLAY")
    own_display = private_xvfb(width, height) if not display else contextlib.nullcontext(display)
    with own_display as shown_on:
        os.environ["DISPLAY"] = shown_on
        to_tk = _ToTk()
        runner = ScenarioRunner(scenario, work=work, listeners=[to_tk])
        window = ui_window.KioskWindow(
            _FlowActions(runner),
            width=width,
            height=height,
            fullscreen=False,
            frame_source=lambda: runner.kiosk.face.preview() if runner.kiosk is not None else None,
        )
        _import_before_threads()  # needs the Tk root the window made
        state: dict[str, Any] = {"failures": 0, "done": False, "error": None, "shots": 0, "last": None}

        def person() -> None:
            try:
                with runner:
                    for result in runner.run():
                        emit(result.as_json())
                        state["failures"] += not result.ok
            except Exception as err:  # shown after the window closes, with the one-line reason
                state["error"] = err
            finally:
                state["done"] = True

        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)

        def pump() -> None:
            with contextlib.suppress(queue.Empty):
                while True:
                    view = to_tk.views.get_nowait()
                    window.on_view(view)
                    key = (
                        view.screen,
                        getattr(view, "phase", None),
                        getattr(view, "hint", None),
                        view.error,
                        getattr(view, "code", None),
                    )
                    if screenshots is not None and key != state["last"]:
                        state["last"] = key
                        window.settle()
                        state["shots"] += 1
                        _screenshot(shown_on, screenshots / f"{state['shots']:03d}-{view.screen.value}.png")
            if state["done"] and to_tk.views.empty():
                window.root.quit()
                return
            window.root.after(_PUMP_MS, pump)

        run_in_thread(person)
        window.root.after(_PUMP_MS, pump)
        try:
            window.run()
        finally:
            # Ctrl-C or SIGTERM ends the main loop early: stop the world (platform, pcscd) from here.
            if not state["done"]:
                runner.close()
            with contextlib.suppress(Exception):
                window.root.destroy()
    if state["error"] is not None:
        raise state["error"]
    if screenshots is not None:
        log.info("%d screenshots in %s", state["shots"], screenshots)
    return int(state["failures"])
