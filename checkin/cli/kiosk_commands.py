"""`checkin-kiosk run` (the kiosk with its touch UI), and the commands other packages plug in (plugin_commands)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tkinter as tk
import warnings
from importlib.metadata import entry_points
from pathlib import Path  # noqa: TC003 - Typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import customtkinter as ctk
import typer

import checkin.config as kiosk_config
import checkin.ui.window as ui_window

# Lazy (lazy_imports): the kiosk, its UI and Tk load when `run` runs, not for --help.
from checkin import app as kiosk_app
from checkin import speech
from checkin.flow import runtime
from checkin.ui import theme

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.app import Kiosk
    from checkin.config import KioskConfig
    from checkin.flow.views import View
    from checkin.ui.window import KioskWindow

log = logging.getLogger(__name__)
screen_log = logging.getLogger("checkin.screens")

EXIT_FAILED_EXPECTATION = 1
EXIT_CONFIG = 2
EXIT_WORLD = 3


def _fail(reason: str, code: int) -> typer.Exit:
    typer.echo(f"错误 / error: {' '.join(reason.split())}", err=True)
    return typer.Exit(code)


def _quiet_pkg_resources() -> None:
    """face_recognition_models finds its files with the deprecated pkg_resources, which warns at import."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


def _logging(verbose: bool, log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        handlers.append(logging.NullHandler())
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, format="%(asctime)s %(threadName)s %(name)s %(message)s", force=True
    )


def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="CHECKIN_CONFIG", help="Kiosk configuration (TOML).")
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
) -> None:
    r"""运行终端 / Run the kiosk: devices from \[devices], the platform from \[platform], the touch UI."""
    _logging(verbose)
    try:
        cfg = kiosk_config.load_config(config)
    except kiosk_config.ConfigError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    try:
        run_kiosk_ui(cfg)
    except kiosk_config.ConfigError as err:
        raise _fail(str(err), EXIT_CONFIG) from None


class ScreenLog:
    """A flow listener that logs each new screen (its key only, never what it shows): for technicians and tests."""

    def __init__(self) -> None:
        self._last: object = None

    def on_view(self, view: View) -> None:
        """Log `kiosk screen: <key>` when the screen changes."""
        if view.screen is not self._last:
            self._last = view.screen
            screen_log.info("kiosk screen: %s", view.screen.value)


def run_kiosk_ui(cfg: KioskConfig, *, on_started: Callable[[Kiosk, KioskWindow], None] | None = None) -> None:
    """Build the kiosk on the Tk thread and run the UI until the window closes or SIGTERM/SIGINT arrives.

    The Tk root comes first: the flow's Scheduler is built on it, the kiosk on that, and the window
    last, around the root, with the flow as its actions (no late binding needed). `on_started` runs on
    the Tk thread once everything is up (the live demo adds its control panel there).
    """
    try:
        root = ctk.CTk(fg_color=theme.BACKGROUND)
    except tk.TclError as err:
        raise typer.Exit(_report_no_display(err)) from None
    inbox = runtime.CallbackInbox()
    worker = runtime.ThreadWorker(inbox)
    kiosk = kiosk_app.build_kiosk(cfg, scheduler=ui_window.TkScheduler(root), worker=worker)
    window = ui_window.KioskWindow(
        kiosk.flow,
        width=cfg.screen_width,
        height=cfg.screen_height,
        fullscreen=cfg.fullscreen,
        frame_source=kiosk.face.preview,
        root=root,
    )
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        # Runs on the main (Tk) thread between Tcl events: leave the main loop, clean up below.
        stopping.append(signum)
        root.after(0, root.quit)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    speaker = speech.Speaker(enabled=cfg.speech_enabled, rate=cfg.speech_rate, zh_voice=cfg.speech_voice)
    try:
        speaker.start()
        kiosk.flow.add_listener(window)
        kiosk.flow.add_listener(speech.PromptSpeaker(speaker))
        kiosk.flow.add_listener(ScreenLog())
        window.pump(inbox)
        kiosk.start()
        if on_started is not None:
            on_started(kiosk, window)
        # The inbox pump wakes the Tk loop every 20 ms, so a signal's handler runs promptly.
        window.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        speaker.stop()
        kiosk.close()
        worker.shutdown()
        with contextlib.suppress(tk.TclError):
            root.destroy()
    if stopping:
        log.info("kiosk stopped (signal %d)", stopping[0])


def _report_no_display(err: Exception) -> int:
    typer.echo(f"错误 / error: no display for the kiosk UI ({err}); set DISPLAY or run under Xvfb", err=True)
    return EXIT_CONFIG


def register(app: typer.Typer) -> None:
    """Add the kiosk's own commands to the top-level app."""
    app.command("run")(run)


def register_plugins(app: typer.Typer) -> None:
    """Add the commands other packages plug in (called by main(), after every module has loaded)."""
    for name, command in plugin_commands():
        app.command(name)(command)


def plugin_commands() -> list[tuple[str, Callable[..., None]]]:
    """Commands other packages add to `checkin-kiosk` (entry-point group `checkin_kiosk.commands`).

    The scenario runner and the live demo (package `sim_world`) run the platform beside the kiosk;
    the kiosk's code never imports them (nor the platform), it only lists what is installed.
    """
    return [(point.name, point.load()) for point in sorted(entry_points(group="checkin_kiosk.commands"), key=str)]
