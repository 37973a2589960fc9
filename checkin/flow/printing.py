"""The check-in slip as the flow sees it: what goes on it, how printing ended, and the printer port.

The flow hands a SlipFacts to the port as soon as the platform has completed the check-in (the band
is on its way to the pickup slot) and goes on at once; the port prints on its own thread and reports
a SlipOutcome, so printing overlaps the expert taking the band and never holds up a check-in. A
kiosk without a printer uses NoPrinter.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeAlias

from receipt_printer.slip_layout import SlipContent

if TYPE_CHECKING:
    from collections.abc import Callable


class SlipOutcome(StrEnum):
    """How one print ended (the audit event's outcome and the done screen's slip line)."""

    PRINTED = "printed"
    PAPER_OUT = "paper_out"  # before the slip, or mid-slip: the expert gets it at the desk
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"  # no answer, cannot open, link broke
    FAILED = "failed"  # anything else the printer said

    @property
    def ok(self) -> bool:
        """True when the slip came out whole."""
        return self is SlipOutcome.PRINTED


class PaperState(StrEnum):
    """The printer's paper, for the heartbeat and staff mode; NONE without a printer or an answer."""

    NONE = ""
    OK = "ok"
    NEAR_END = "near_end"
    OUT = "out"


#: Everything printed on a 签到凭证, already masked (no full ID or card number ever reaches it): the
#: receipt printer's own slip content, so the flow, the kiosk's printer and the desk reprint share one shape.
SlipFacts: TypeAlias = SlipContent


class SlipPrinterPort(Protocol):
    """The kiosk's receipt printer, as the flow and the heartbeat use it."""

    @property
    def installed(self) -> bool:
        """False when the kiosk has no printer configured."""
        ...

    def print_slip(self, facts: SlipFacts, done: Callable[[SlipOutcome], None]) -> None:
        """Queue a slip and return at once; ``done`` is called on the printer's thread when it ends."""
        ...

    def test_print(self, done: Callable[[SlipOutcome], None]) -> None:
        """Queue the test page (staff mode); ``done`` as for print_slip."""
        ...

    def paper(self) -> PaperState:
        """The paper as last seen (never blocks on a print in progress)."""
        ...

    def refresh(self) -> PaperState:
        """Ask the printer now (staff's "paper refilled"); the last state if it is busy printing."""
        ...


class NoPrinter:
    """A kiosk without a receipt printer: nothing is printed, nothing is reported."""

    installed = False

    def print_slip(self, facts: SlipFacts, done: Callable[[SlipOutcome], None]) -> None:
        """Print nothing (the flow checks ``installed`` first)."""

    def test_print(self, done: Callable[[SlipOutcome], None]) -> None:
        """Nothing to test: reported as offline."""
        done(SlipOutcome.OFFLINE)

    def paper(self) -> PaperState:
        """No paper to report."""
        return PaperState.NONE

    def refresh(self) -> PaperState:
        """No paper to report."""
        return PaperState.NONE
