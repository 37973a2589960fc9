"""Exceptions of the robot_arm package: one root, `ArmError`, and a few leaves callers act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robot_arm.protocol import ErrorCode


class ArmError(Exception):
    """Root of every error raised by the arm's driver, simulator and dispenser."""


class ArmConfigError(ArmError, ValueError):
    """A setting (port URL, speed, band list, fault name) is wrong: fatal at start-up, fix the config."""


class ArmConnectionError(ArmError):
    """The serial link could not be opened, or was lost and bounded reconnect attempts failed."""


class ArmTimeoutError(ArmError):
    """The arm did not answer or finish within the allowed time, and reconciling did not settle it."""


class ArmProtocolError(ArmError):
    """A line on the wire is malformed: bad syntax, bad checksum, unknown field or value."""


class ArmCommandError(ArmError):
    """The arm answered a command with a numbered error code."""

    def __init__(self, code: ErrorCode, command: str, detail: str = "") -> None:
        self.code = code
        self.command = command
        self.detail = detail
        text = f"arm answered E{int(code)} ({code.name}) to {command}"
        super().__init__(f"{text}: {detail}" if detail else text)


class ArmRefusedError(ArmCommandError):
    """The arm refused the command at once (`$n E<code>`): nothing moved."""


class ArmMotionError(ArmCommandError):
    """An accepted motion failed while running (`@ERR Q<k> E<code>`): the arm stopped where it was."""


class ArmPowerLossError(ArmError):
    """The arm's controller restarted (new boot count): queued motions were lost and it is not homed."""
