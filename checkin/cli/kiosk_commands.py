"""`checkin-kiosk run` and `checkin-kiosk run-scenario`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def register(app: typer.Typer) -> None:
    """Add the kiosk's own commands to the top-level app."""
    _ = app
