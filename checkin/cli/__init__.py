"""`checkin-kiosk`: the kiosk's command line (run the kiosk, scenarios, device diagnostics, simulators).

Each command group lives in its own module; heavy imports happen inside commands so that
`--help` and the diagnostics start fast.
"""

from __future__ import annotations

import typer

from checkin.cli import devices, kiosk_commands, simulators

app = typer.Typer(
    name="checkin-kiosk",
    help="评标专家自助签到终端 / Expert check-in kiosk.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(devices.app, name="devices")
app.add_typer(simulators.app, name="sim")
kiosk_commands.register(app)


def main() -> None:
    """Console-script entry point: the kiosk's commands plus those other packages plug in."""
    kiosk_commands.register_plugins(app)
    app()
