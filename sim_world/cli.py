"""`checkin-kiosk run-scenario FILE` (headless or with the UI) and `checkin-kiosk demo-live`: the simulated world.

Plugged into `checkin-kiosk` through the entry-point group `checkin_kiosk.commands` (pyproject.toml):
these commands start the platform and the simulators beside the kiosk, which the kiosk's own code
never imports.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from checkin.cli.kiosk_commands import (
    EXIT_CONFIG,
    EXIT_FAILED_EXPECTATION,
    EXIT_WORLD,
    _fail,
    _logging,
    _quiet_pkg_resources,
    run_kiosk_ui,
)

# Lazy (lazy_imports): the world, the runner and the platform load when a command runs.
from sim_world import live_demo, model, runner, ui_mode, world

if TYPE_CHECKING:
    from checkin.app import Kiosk
    from checkin.ui.window import KioskWindow


def _exit_on_signal(signum: int, _frame: object) -> None:
    typer.echo(f"停止 / stopping (signal {signum})", err=True)
    raise SystemExit(128 + signum)


def _emit(line: dict[str, object]) -> None:
    typer.echo(json.dumps(line, ensure_ascii=False))
    sys.stdout.flush()


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
    _logging(verbose, (work / "runner.log") if work is not None else None)
    # SIGTERM (and Ctrl-C) unwind through the runner's clean-up, which stops the platform and pcscd.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        scenario = model.load_scenario(file)
    except model.ScenarioError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    if only:
        unknown = set(only) - {c.name for c in scenario.checkins}
        if unknown:
            raise _fail(f"--only: no check-in named {', '.join(sorted(unknown))} in {file}", EXIT_CONFIG)
        scenario = replace(scenario, checkins=tuple(c for c in scenario.checkins if c.name in only))
    try:
        if ui:
            failures = ui_mode.run_with_ui(scenario, work=work, screenshots=screenshots, emit=_emit)
        else:
            failures = _run_headless(scenario, work, printer=printer)
    except (world.WorldError, runner.RunnerError) as err:
        raise _fail(str(err), EXIT_WORLD) from None
    if failures:
        raise typer.Exit(EXIT_FAILED_EXPECTATION)


def _run_headless(scenario: object, work: Path | None, *, printer: bool = True) -> int:
    failures = 0
    with runner.ScenarioRunner(scenario, work=work, printer=printer) as scenario_runner:  # type: ignore[arg-type]
        for result in scenario_runner.run():
            _emit(result.as_json())
            failures += not result.ok
    return failures


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
    _quiet_pkg_resources()
    _logging(verbose, work / "demo-live.log")
    if not os.environ.get("DISPLAY"):
        raise _fail("the live demo needs a display (set DISPLAY); without one run `make demo` for screenshots", 2)
    try:
        scenario = model.load_scenario(scenario_file)
    except model.ScenarioError as err:
        raise _fail(str(err), EXIT_CONFIG) from None
    demo = live_demo.LiveDemo(scenario, work.resolve(), camera)
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
                live_demo.control_panel(window.root, demo, x=config.screen_width + 10)

        run_kiosk_ui(config, on_started=started)
    except (world.WorldError, live_demo.LiveDemoError) as err:
        raise _fail(str(err), EXIT_WORLD) from None
    finally:
        demo.stop()
