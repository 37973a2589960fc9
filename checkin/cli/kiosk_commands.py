"""`checkin-kiosk run` (the kiosk with its touch UI) and `checkin-kiosk run-scenario FILE` (headless check-ins)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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


def run_scenario(  # noqa: PLR0917 - Typer maps options to parameters
    file: Annotated[Path, typer.Argument(help="Scenario file (TOML, docs/scenario-format.md).")],
    work: Annotated[
        Path | None, typer.Option("--work", help="Folder for the world's files (default: a temporary one).")
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only the check-ins with this name.")] = None,
    ui: Annotated[bool, typer.Option("--ui", help="Show the kiosk UI while the scenario runs.")] = False,
    screenshots: Annotated[
        Path | None, typer.Option("--screenshots", help="With --ui: save a PNG of every new screen here.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
    printer: Annotated[
        bool, typer.Option("--printer/--no-printer", help="With the receipt printer simulator (default) or none.")
    ] = True,
) -> None:
    """运行场景 / Run a scenario's check-ins through the real flow, drivers, simulators and platform.

    Prints one JSON line per check-in; exits 1 when any check-in did not end as expected.
    """
    _quiet_pkg_resources()
    from checkin.scenario.model import ScenarioError, load_scenario  # noqa: PLC0415
    from checkin.scenario.runner import RunnerError  # noqa: PLC0415
    from checkin.scenario.world import WorldError  # noqa: PLC0415

    _logging(verbose, (work / "runner.log") if work is not None else None)
    # SIGTERM (and Ctrl-C) unwind through the runner's clean-up, which stops the platform and pcscd.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        scenario = load_scenario(file)
    except ScenarioError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    if only:
        unknown = set(only) - {c.name for c in scenario.checkins}
        if unknown:
            raise _fail(f"--only: no check-in named {', '.join(sorted(unknown))} in {file}", EXIT_CONFIG)
        from dataclasses import replace  # noqa: PLC0415

        scenario = replace(scenario, checkins=tuple(c for c in scenario.checkins if c.name in only))
    try:
        if ui:
            from checkin.scenario.ui_mode import run_with_ui  # noqa: PLC0415

            failures = run_with_ui(scenario, work=work, screenshots=screenshots, emit=_emit)
        else:
            failures = _run_headless(scenario, work, printer=printer)
    except (WorldError, RunnerError) as err:
        raise _fail(str(err), EXIT_WORLD) from None
    if failures:
        raise typer.Exit(EXIT_FAILED_EXPECTATION)


def _exit_on_signal(signum: int, _frame: object) -> None:
    typer.echo(f"停止 / stopping (signal {signum})", err=True)
    raise SystemExit(128 + signum)


def _emit(line: dict[str, object]) -> None:
    typer.echo(json.dumps(line, ensure_ascii=False))
    sys.stdout.flush()


def _run_headless(scenario: object, work: Path | None, *, printer: bool = True) -> int:
    from checkin.scenario.runner import ScenarioRunner  # noqa: PLC0415

    failures = 0
    with ScenarioRunner(scenario, work=work, printer=printer) as runner:  # type: ignore[arg-type]
        for result in runner.run():
            _emit(result.as_json())
            failures += not result.ok
    return failures


def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="CHECKIN_CONFIG", help="Kiosk configuration (TOML).")
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
) -> None:
    """运行终端 / Run the kiosk: devices from [devices], the platform from [platform], the touch UI."""
    from checkin.config import ConfigError, load_config  # noqa: PLC0415

    _logging(verbose)
    try:
        cfg = load_config(config)
    except ConfigError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    try:
        run_kiosk_ui(cfg)
    except ConfigError as err:
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
    import tkinter as tk  # noqa: PLC0415

    import customtkinter as ctk  # noqa: PLC0415

    from checkin.app import build_kiosk  # noqa: PLC0415
    from checkin.flow.runtime import CallbackInbox, ThreadWorker  # noqa: PLC0415
    from checkin.speech import PromptSpeaker, Speaker  # noqa: PLC0415
    from checkin.ui import theme  # noqa: PLC0415
    from checkin.ui.window import KioskWindow, TkScheduler  # noqa: PLC0415

    try:
        root = ctk.CTk(fg_color=theme.BACKGROUND)
    except tk.TclError as err:
        raise typer.Exit(_report_no_display(err)) from None
    inbox = CallbackInbox()
    worker = ThreadWorker(inbox)
    kiosk = build_kiosk(cfg, scheduler=TkScheduler(root), worker=worker)
    window = KioskWindow(
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
    speaker = Speaker(enabled=cfg.speech_enabled, rate=cfg.speech_rate, zh_voice=cfg.speech_voice)
    try:
        speaker.start()
        kiosk.flow.add_listener(window)
        kiosk.flow.add_listener(PromptSpeaker(speaker))
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


def demo_live(
    camera: Annotated[
        str, typer.Option("--camera", help="The webcam (device index) or, for tests, a video file or image folder.")
    ] = "0",
    scenario_file: Annotated[
        Path, typer.Option("--scenario", help="Batch and other experts of the demo (TOML).")
    ] = Path("scenarios/demo.toml"),
    work: Annotated[Path, typer.Option("--work", help="Folder for the world's files.")] = Path("var/demo-live"),
    panel: Annotated[bool, typer.Option("--panel/--no-panel", help="Show the simulated devices' controls.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
) -> None:
    """现场演示 / Live demo: enrol the person at the webcam as a demo expert, then run the kiosk UI on it.

    Needs a display. Ctrl-C or closing the window stops the kiosk and the simulated world.
    """
    import os  # noqa: PLC0415

    _quiet_pkg_resources()
    from checkin.scenario.live_demo import LiveDemo, LiveDemoError, control_panel  # noqa: PLC0415
    from checkin.scenario.model import ScenarioError, load_scenario  # noqa: PLC0415
    from checkin.scenario.world import WorldError  # noqa: PLC0415

    _logging(verbose, work / "demo-live.log")
    if not os.environ.get("DISPLAY"):
        raise _fail("the live demo needs a display (set DISPLAY); without one run `make demo` for screenshots", 2)
    try:
        scenario = load_scenario(scenario_file)
    except ScenarioError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    demo = LiveDemo(scenario, work.resolve(), camera)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        typer.echo("演示：请正视摄像头并眨眨眼，正在采集参考照片 / demo: look at the camera and blink for your photo")
        config = demo.start(on_hint=lambda hint: typer.echo(f"  {hint}"))
        typer.echo(
            f"演示：已登记为 {demo.scenario.experts['live'].name} / demo: you are enrolled; press 登记办理 to check in"
        )

        def started(kiosk: Kiosk, window: KioskWindow) -> None:
            kiosk.flow.add_listener(demo)
            if panel:
                control_panel(window.root, demo, x=config.screen_width + 10)

        run_kiosk_ui(config, on_started=started)
    except (WorldError, LiveDemoError) as err:
        raise _fail(str(err), EXIT_WORLD) from None
    finally:
        demo.stop()


def _report_no_display(err: Exception) -> int:
    typer.echo(f"错误 / error: no display for the kiosk UI ({err}); set DISPLAY or run under Xvfb", err=True)
    return EXIT_CONFIG


def register(app: typer.Typer) -> None:
    """Add the kiosk's own commands to the top-level app."""
    app.command("run")(run)
    app.command("run-scenario")(run_scenario)
    app.command("demo-live")(demo_live)
