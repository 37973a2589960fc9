"""The kiosk's receipt printer: the 签到凭证 layout and the adapter that prints it on its own thread.

The layout is receipt_printer.slip_layout's (the console's desk reprints the same slip); the printer
is the receipt_printer driver at the configured URL. The adapter turns every printer failure into a
SlipOutcome for the flow (a printer fault never blocks a check-in) and reports its health as at
worst DEGRADED, so a printer without paper never takes the kiosk out of service; the heartbeat
carries the paper state instead.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING

from checkin.flow.models import DeviceHealth, DeviceState
from checkin.flow.printing import PaperState, SlipFacts, SlipOutcome
from checkin.texts import Language, text
from receipt_printer.driver import ReceiptPrinter
from receipt_printer.errors import CoverOpenError, PaperOutError, PrinterError, PrinterOfflineError
from receipt_printer.models import Align, Feed, QrCode, Receipt, TextLine
from receipt_printer.slip_layout import build_slip

if TYPE_CHECKING:
    from collections.abc import Callable

    from receipt_printer.models import PrinterStatus

log = logging.getLogger(__name__)


def _label(key: str) -> str:
    return f"{text(key, Language.ZH)} {text(key, Language.EN)}"


def test_receipt(kiosk_id: str) -> Receipt:
    """Staff mode's test print: both languages, a QR code and the cut."""
    return Receipt(
        (
            TextLine(_label("slip.test_title"), Align.CENTER, bold=True, double=True),
            TextLine(f"{_label('slip.kiosk')}: {kiosk_id}"),
            TextLine("中文 GB18030 / ASCII 0123456789"),
            QrCode(f"TEST-{kiosk_id}", module_dots=6),
            Feed(1),
        )
    )


class ReceiptPrinterAdapter:
    """The receipt printer behind SlipPrinterPort and SelfTestPort: one print thread, a remembered status."""

    installed = True

    def __init__(self, url: str, *, kiosk_id: str, timeout_s: float = 1.0, print_timeout_s: float = 20.0) -> None:
        self.url = url
        self._kiosk_id = kiosk_id
        self._timeout = timeout_s
        self._print_timeout = print_timeout_s
        self._printer: ReceiptPrinter | None = None
        self._busy = threading.Lock()  # one conversation with the printer at a time
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._paper = PaperState.NONE
        self._problem = "not_checked"

    # ---- SlipPrinterPort --------------------------------------------------------------------------

    def print_slip(self, facts: SlipFacts, done: Callable[[SlipOutcome], None]) -> None:
        """Queue the slip; the print thread prints it and calls ``done``."""
        self._submit(lambda: done(self._print(build_slip(facts))))

    def test_print(self, done: Callable[[SlipOutcome], None]) -> None:
        """Queue the test page."""
        self._submit(lambda: done(self._print(test_receipt(self._kiosk_id))))

    def paper(self) -> PaperState:
        """The paper as last seen."""
        return self._paper

    def refresh(self) -> PaperState:
        """Ask the printer now, unless it is printing (then the last state)."""
        if self._busy.acquire(blocking=False):
            try:
                self._note(self._connected().status())
            except PrinterError as err:
                self._lost(err)
            finally:
                self._busy.release()
        return self._paper

    # ---- SelfTestPort -----------------------------------------------------------------------------

    def health(self) -> DeviceHealth:
        """Status now (or as last seen while printing); at worst DEGRADED: a printer never stops service."""
        self.refresh()
        state = DeviceState.OK if not self._problem else DeviceState.DEGRADED
        return DeviceHealth(device="receipt_printer", state=state, detail=self._problem)

    def self_test(self) -> DeviceHealth:
        """The same status check (a test page is staff's separate "test print")."""
        return self.health()

    def close(self) -> None:
        """Finish queued slips, then close the link."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(self._print_timeout + 2)
        with self._busy:
            self._disconnect()

    # ---- internals --------------------------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="receipt-printer", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("print job failed")

    def _print(self, receipt: Receipt) -> SlipOutcome:
        with self._busy:
            try:
                report = self._connected().print_receipt(receipt)
            except PaperOutError as err:
                self._note(err.status)
                outcome = SlipOutcome.PAPER_OUT
            except CoverOpenError as err:
                self._note(err.status)
                outcome = SlipOutcome.COVER_OPEN
            except PrinterOfflineError as err:
                self._lost(err)
                outcome = SlipOutcome.OFFLINE
            except PrinterError as err:
                self._lost(err)
                outcome = SlipOutcome.FAILED
            else:
                self._note(report.after)
                outcome = SlipOutcome.PRINTED
        if outcome is SlipOutcome.PRINTED:
            log.info("slip printed (%.2f s)", report.elapsed_s)
        else:
            log.warning("slip not printed: %s", outcome.value)
        return outcome

    def _connected(self) -> ReceiptPrinter:
        if self._printer is None:
            self._printer = ReceiptPrinter.open(self.url, timeout=self._timeout, print_timeout=self._print_timeout)
        return self._printer

    def _disconnect(self) -> None:
        if self._printer is not None:
            self._printer.close()
            self._printer = None

    def _note(self, status: PrinterStatus) -> None:
        if status.paper_out:
            self._paper = PaperState.OUT
        elif status.paper_near_end:
            self._paper = PaperState.NEAR_END
        else:
            self._paper = PaperState.OK
        self._problem = ",".join(status.problems())

    def _lost(self, err: PrinterError) -> None:
        """No (sensible) answer: reconnect next time; the paper is unknown."""
        log.warning("receipt printer at %s: %s", self.url, type(err).__name__)
        self._disconnect()
        self._paper = PaperState.NONE
        self._problem = "offline"
