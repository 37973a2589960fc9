"""Every command's --help is Chinese first, English second, and shows its text whole.

Typer renders help through rich, which reads ``[word]`` as a style tag and drops it: ``checkin-kiosk
run`` said "devices from , the platform from ," for "from [devices], ... from [platform]". Each
console script's command tree is walked, and every bracketed token of a command's or an option's
help must appear in what ``--help`` prints (escape one as ``\\[word]``). Organisers and technicians
read these lines: each command's first line is ``中文 / English``, as every user-facing text is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

import checkin.cli
import platform_server.cli
import receipt_printer.cli
import robot_arm.cli
import uwb.cli
from checkin.cli import kiosk_commands

if TYPE_CHECKING:
    from collections.abc import Iterator

BRACKETED = re.compile(r"\[[^\]\s]{1,40}\]")
CHINESE_THEN_ENGLISH = re.compile(r"^[^/]*[\u4e00-\u9fff][^/]* / [A-Za-z`]")


def _console_script_apps() -> dict[str, typer.Typer]:
    kiosk = checkin.cli.app
    registered = {command.name for command in kiosk.registered_commands}
    if not {name for name, _ in kiosk_commands.plugin_commands()} <= registered:
        kiosk_commands.register_plugins(kiosk)  # as checkin.cli.main() does
    return {
        "checkin-kiosk": kiosk,
        "platform-server": platform_server.cli.app,
        "robot-arm": robot_arm.cli.app,
        "uwb": uwb.cli.app,
        "receipt-printer": receipt_printer.cli.app,
    }


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, [*path, name])


def _help_texts(command: Any) -> list[str]:
    return [command.help or "", *(getattr(param, "help", None) or "" for param in command.params)]


@pytest.mark.parametrize("script", ["checkin-kiosk", "platform-server", "robot-arm", "uwb", "receipt-printer"])
def test_no_bracketed_word_is_lost_from_help(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line a row: no token is wrapped
    app = _console_script_apps()[script]
    runner = CliRunner()
    lost: list[str] = []
    for path, command in _commands(typer.main.get_command(app), []):
        wanted = {token for text in _help_texts(command) for token in BRACKETED.findall(text)}
        if not wanted:
            continue
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.replace("│", " ").split())
        lost += [f"{script} {' '.join(path)}: {token}" for token in sorted(wanted) if token not in shown]
    assert lost == []


@pytest.mark.parametrize("script", ["checkin-kiosk", "platform-server", "robot-arm", "uwb", "receipt-printer"])
def test_every_command_says_what_it_does_in_chinese_then_english(script: str) -> None:
    app = _console_script_apps()[script]
    english_only = [
        f"{script} {' '.join(path)}: {first}"
        for path, command in _commands(typer.main.get_command(app), [])
        if not CHINESE_THEN_ENGLISH.match(first := (command.help or "").strip().split("\n", 1)[0])
    ]
    assert english_only == []
