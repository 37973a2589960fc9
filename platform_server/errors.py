"""The platform's one exception tree; gRPC status codes and CLI exit codes are mapped from it in one place.

Refusals an expert can see (not invited, no room left, ...) are not exceptions: they are outcomes
(`services.refusals.Refusal`). These errors are for bad calls, bad files, bad configuration and outages.
"""

from __future__ import annotations

from dataclasses import dataclass


class PlatformError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(PlatformError):
    """Configuration that cannot be used: fatal at start-up, never shown to an expert."""


class InvalidRequestError(PlatformError):
    """A call or command with missing or malformed fields (the caller's bug, not the expert's)."""


class NotFoundError(PlatformError):
    """A named thing (batch, kiosk, hotel, check-in) that does not exist."""


class AlreadyExistsError(PlatformError):
    """Creating something whose code is already taken."""


class PermissionDeniedError(PlatformError):
    """A caller acting for a kiosk or organiser it cannot prove to be."""


class KioskCertificateError(PlatformError):
    """A kiosk call whose client certificate is not the one registered for the kiosk (revoked, replaced, none)."""


class KioskDisabledError(PlatformError):
    """A call from a kiosk that organisers disabled."""


class KioskRemovedError(PlatformError):
    """A call from a kiosk that organisers removed."""


class KioskWrongBatchError(PermissionDeniedError):
    """A kiosk acting for a batch other than the one it is assigned to."""


class KioskThrottledError(PlatformError):
    """A kiosk slowed down after many refusals in a row; it may try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(PlatformError):
    """The database stayed busy or conflicting through every retry; the caller may retry later."""


class OverloadedError(PlatformError):
    """Every worker busy and the queue full (e.g. face verification): refused at once, retry shortly."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{message}; retry in {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One refused row of an imported file: its row number as the spreadsheet shows it, and why."""

    row: int
    message: str


class ImportRefusedError(PlatformError):
    """An import refused as a whole (nothing written), naming every bad row."""

    def __init__(self, summary: str, problems: list[RowProblem] | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return self.summary
        lines = [self.summary, *(f"  第{p.row}行 / row {p.row}: {p.message}" for p in self.problems[:50])]
        if len(self.problems) > 50:
            lines.append(f"  … 另有{len(self.problems) - 50}行 / and {len(self.problems) - 50} more rows")
        return "\n".join(lines)
