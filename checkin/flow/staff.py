"""Staff mode as its own sub-machine: the PIN pad (with its lockout) and the menu's actions.

The check-in machine owns the two states (STAFF_PIN, STAFF_MENU) and their transitions; this class
owns what happens inside them. Each action declares the state it is allowed in (`@staff_action`)
instead of testing it by hand, and reaches the flow only through `StaffHost`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol

from checkin.config import verify_pin
from checkin.flow.views import SelfTestLine, StaffMenuView, StaffPinView

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.flow.printing import SlipOutcome

_LOG = logging.getLogger(__name__)

P = ParamSpec("P")


class StaffState(Enum):
    """Where in staff mode an action may run."""

    PIN = "pin"
    MENU = "menu"


class StaffHost(Protocol):
    """What staff mode needs from the check-in flow."""

    def staff_state(self) -> StaffState | None:
        """PIN or MENU while in staff mode, else None."""
        ...

    def staff_ports(self) -> Any:
        """The flow's ports."""
        ...

    def record(self, event: str, outcome: str, *, detail: str = "") -> None:
        """Write an audit event."""
        ...

    def publish(self) -> None:
        """Publish the current view."""
        ...

    def set_error(self, key: str, **params: str) -> None:
        """Show an error key on the current screen."""
        ...

    def pin_accepted(self) -> bool:
        """The STAFF_PIN -> STAFF_MENU trigger."""
        ...

    def stock_refilled(self, level: int) -> None:
        """The band stock is `level` now (the flow's health follows)."""
        ...


def staff_action(
    state: StaffState,
) -> Callable[[Callable[Concatenate[StaffMode, P], None]], Callable[Concatenate[StaffMode, P], None]]:
    """Declare the staff state an action runs in; called in any other state it does nothing."""

    def declare(method: Callable[Concatenate[StaffMode, P], None]) -> Callable[Concatenate[StaffMode, P], None]:
        @functools.wraps(method)
        def guarded(self: StaffMode, /, *args: P.args, **kwargs: P.kwargs) -> None:
            if self.host.staff_state() is not state:
                return
            method(self, *args, **kwargs)

        return guarded

    return declare


@dataclass(frozen=True, slots=True)
class StaffSettings:
    """The staff limits of FlowSettings."""

    staff_pin_hash: str
    max_pin_failures: int
    pin_lockout_s: int
    max_refill: int


class StaffMode:
    """The PIN pad and the staff menu, over a StaffHost."""

    def __init__(self, host: StaffHost, settings: StaffSettings) -> None:
        self.host = host
        self._settings = settings
        self.forced_out_of_service = False
        self._pin_failures = 0
        self._pin_locked_until: dt.datetime | None = None
        self._self_test: tuple[SelfTestLine, ...] = ()
        self._self_test_running = False
        self._test_print = ""

    # ---- the PIN pad -------------------------------------------------------------------------------

    @staff_action(StaffState.PIN)
    def submit_pin(self, pin: str) -> None:
        """Check the staff PIN; too many failures lock the PIN pad for a while."""
        now = self.host.staff_ports().scheduler.now()
        if self._pin_locked_until is not None and now < self._pin_locked_until:
            self.host.publish()
            return
        if verify_pin(pin, self._settings.staff_pin_hash):
            self._pin_failures = 0
            self._pin_locked_until = None
            self.host.record("staff_login", "ok")
            self.host.pin_accepted()
            return
        self._pin_failures += 1
        self.host.record("staff_login", "wrong_pin")
        if self._pin_failures >= self._settings.max_pin_failures:
            self._pin_failures = 0
            self._pin_locked_until = now + dt.timedelta(seconds=self._settings.pin_lockout_s)
        self.host.set_error("error.pin_wrong")

    # ---- the menu ----------------------------------------------------------------------------------

    def menu_opened(self) -> None:
        """Forget any earlier self-test and test print."""
        self._self_test = ()
        self._test_print = ""

    @staff_action(StaffState.MENU)
    def self_test(self) -> None:
        """Run every device's self-test on the worker and show the results."""
        if self._self_test_running:
            return
        ports = self.host.staff_ports()
        devices = dict(ports.devices)
        self._self_test_running = True
        self._self_test = ()

        def job() -> tuple[SelfTestLine, ...]:
            lines = []
            for name, device in devices.items():
                try:
                    health = device.self_test()
                except Exception as err:  # a self-test that blows up is a failed self-test
                    _LOG.warning("self-test of %s raised %s", name, type(err).__name__)
                    lines.append(SelfTestLine(device=name, ok=False, detail=type(err).__name__))
                else:
                    lines.append(SelfTestLine(device=name, ok=health.usable, detail=health.detail))
            return tuple(lines)

        def done(result: tuple[SelfTestLine, ...] | Exception) -> None:
            self._self_test_running = False
            if isinstance(result, Exception):
                result = (SelfTestLine(device="kiosk", ok=False, detail=type(result).__name__),)
            self._self_test = result
            self.host.publish()

        ports.worker.submit(job, done)
        self.host.publish()

    @staff_action(StaffState.MENU)
    def refill(self, added: str) -> None:
        """Record bands put into the magazine."""
        try:
            count = int(added.strip())
        except ValueError:
            count = 0
        if not 1 <= count <= self._settings.max_refill:
            self.host.set_error("error.refill_count_invalid", max=str(self._settings.max_refill))
            return
        level = self.host.staff_ports().stock.refill(count)
        self.host.record("stock_refill", "ok", detail=f"added={count} level={level}")
        self.host.stock_refilled(level)

    @staff_action(StaffState.MENU)
    def test_print(self) -> None:
        """Print the test page (on the printer's thread) and show how it went."""
        ports = self.host.staff_ports()
        printer = ports.printer
        if not printer.installed or self._test_print == "printing":
            return
        self._test_print = "printing"
        worker = ports.worker
        printer.test_print(lambda outcome: worker.post(lambda: self._test_print_done(outcome)))
        self.host.publish()

    def _test_print_done(self, outcome: SlipOutcome) -> None:
        self._test_print = outcome.value
        self.host.record("printer_test", outcome.value)
        self.host.publish()

    @staff_action(StaffState.MENU)
    def paper_refilled(self) -> None:
        """Staff put in a new roll: record it and ask the printer again (the heartbeat then clears the alert)."""
        ports = self.host.staff_ports()
        printer = ports.printer
        if not printer.installed:
            return

        def job() -> str:
            return str(printer.refresh().value)

        def done(result: str | Exception) -> None:
            paper = result if isinstance(result, str) else ""
            self.host.record("printer_paper_refilled", paper or "unknown")
            self.host.publish()

        ports.worker.submit(job, done)

    @staff_action(StaffState.MENU)
    def toggle_out_of_service(self) -> None:
        """Take the kiosk out of service (or back) until staff say otherwise."""
        self.forced_out_of_service = not self.forced_out_of_service
        self.host.record("out_of_service", "forced" if self.forced_out_of_service else "released")
        self.host.publish()

    @staff_action(StaffState.MENU)
    def clear_queued(self, request_id: str) -> None:
        """Staff handled a refused queued check-in (the platform's case says how): clear it here."""
        if self.host.staff_ports().pending.staff_clear(request_id):
            self.host.record("queue_record_cleared", "ok", detail=f"request_id={request_id}")
        self.host.publish()

    # ---- views -------------------------------------------------------------------------------------

    def pin_view(self, common: dict[str, Any]) -> StaffPinView:
        """The PIN pad, with the seconds left of a lockout."""
        locked = 0
        if self._pin_locked_until is not None:
            left = (self._pin_locked_until - self.host.staff_ports().scheduler.now()).total_seconds()
            locked = max(0, int(left + 0.999))
        return StaffPinView(locked_seconds=locked, **common)

    def menu_view(self, common: dict[str, Any]) -> StaffMenuView:
        """The staff menu."""
        ports = self.host.staff_ports()
        return StaffMenuView(
            band_stock=ports.stock.level(),
            pending_check_ins=ports.pending.depth(),
            queued=ports.pending.staff_list(),
            forced_out_of_service=self.forced_out_of_service,
            self_test_running=self._self_test_running,
            self_test=self._self_test,
            max_refill=self._settings.max_refill,
            printer_installed=ports.printer.installed,
            printer_paper=ports.printer.paper().value,
            test_print=self._test_print,
            **common,
        )
