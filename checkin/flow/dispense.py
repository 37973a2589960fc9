"""The dispense transaction of one check-in: write-ahead, CompleteCheckIn, band retries, settlement.

bind(uid) writes the request ahead to the durable queue, then sends CompleteCheckIn; a band the
platform refuses is replaced by another; the outcome is settled with the queue (forget, deliver
later, annul later).

It knows the dispenser, the platform and the queue ports and nothing of the state machine or the
screens: `run()` is the worker-side job, `settle()` runs on the flow's thread and says where the
check-in goes next (`Verdict`). Testable on its own with the fakes of the ports.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from checkin.flow.models import AnnulReason, Completed, CompleteRequest, RefusalCode
from checkin.flow.ports import BindDecision, DispenseOutcome, PlatformUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.flow.models import CheckInInfo, NewCard, Refusal
    from checkin.flow.ports import DispensePhase, DispenseReport, DispenserPort, PendingStore, PlatformPort

_LOG = logging.getLogger(__name__)

#: Binding refusals about one particular band: another band may succeed.
BAND_REFUSALS = frozenset({RefusalCode.BAND_UNKNOWN, RefusalCode.BAND_NOT_AVAILABLE})


class BindStatus(Enum):
    """What became of one bind(uid)."""

    NOT_CALLED = "not_called"
    ACKNOWLEDGED = "acknowledged"  # the platform completed the check-in
    UNCONFIRMED = "unconfirmed"  # no answer: the band goes out, the queue delivers the check-in
    REFUSED = "refused"
    ERROR = "error"  # an unexpected failure: do not hand out, annul in the background


@dataclass
class BindLedger:
    """What happened inside bind(uid), written on the worker thread and read after the job."""

    status: BindStatus = BindStatus.NOT_CALLED
    request_id: str | None = None
    check_in: CheckInInfo | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class DispenseJobResult:
    """The last band's report and ledger."""

    report: DispenseReport
    ledger: BindLedger


class Verdict(Enum):
    """Where the check-in goes after the dispense."""

    DONE = "done"  # band out, platform acknowledged
    ROOM_PENDING = "room_pending"  # band out, the queue delivers the check-in
    BAND_PROBLEM = "band_problem"  # no band for the expert: staff
    REFUSED = "refused"  # the platform refused the check-in itself (not the band)


@dataclass(frozen=True, slots=True)
class Settlement:
    """The verdict and what the screens need from it."""

    verdict: Verdict
    check_in: CheckInInfo | None = None
    refusal: Refusal | None = None
    band_not_taken: bool = False
    #: Audit lines (event, outcome, detail) for the flow to record.
    audit: tuple[tuple[str, str, str], ...] = ()


@dataclass
class DispenseTransaction:
    """One expert's dispense: what to complete (token, card, signature) and the ports to do it with."""

    dispenser: DispenserPort
    platform: PlatformPort
    pending: PendingStore
    token: str
    card: NewCard | None
    signature_png: bytes
    max_band_attempts: int = 2
    #: Worker thread: the arm's progress (the flow posts it to its own thread).
    on_progress: Callable[[DispensePhase], None] = lambda _phase: None
    #: Worker thread: the platform completed the check-in (the slip may start printing).
    on_completed: Callable[[CheckInInfo], None] = lambda _info: None
    #: One ledger per band tried, read on the flow's thread if the dispenser raised.
    ledgers: list[BindLedger] = field(default_factory=list)

    def run(self) -> DispenseJobResult:
        """The worker-side job: one band, and another while the platform refuses the band itself."""
        outcome = self._one_band()
        for _ in range(self.max_band_attempts - 1):
            refusal = outcome.ledger.refusal
            band_refused = refusal is not None and refusal.code in BAND_REFUSALS
            if outcome.report.outcome is not DispenseOutcome.REJECTED or not band_refused:
                break
            _LOG.warning("band %s refused by the platform; trying another band", outcome.report.uid)
            outcome = self._one_band()
        return outcome

    def _one_band(self) -> DispenseJobResult:
        ledger = BindLedger()
        self.ledgers.append(ledger)
        report = self.dispenser.dispense(lambda uid: self._bind(ledger, uid), self.on_progress)
        return DispenseJobResult(report, ledger)

    def _bind(self, ledger: BindLedger, uid: str) -> BindDecision:
        request = CompleteRequest(
            request_id=str(uuid.uuid4()),
            identification_token=self.token,
            new_card=self.card,
            signature_png=self.signature_png,
            band_uid=uid,
        )
        ledger.request_id = request.request_id
        # Durable BEFORE the first send: from here on, whatever happens to this process, the queue
        # knows a band may be bound and replays or annuls it.
        self.pending.write_ahead(request)
        try:
            result = self.platform.complete_check_in(request)
        except PlatformUnavailableError:
            ledger.status = BindStatus.UNCONFIRMED
            return BindDecision(bound=True, reason="unconfirmed")
        except Exception as err:
            _LOG.error("complete_check_in failed unexpectedly: %s", type(err).__name__)
            ledger.status = BindStatus.ERROR
            return BindDecision(bound=False, reason=type(err).__name__)
        if isinstance(result, Completed):
            self.pending.acknowledged(request.request_id, result.check_in.check_in_id)
            ledger.status = BindStatus.ACKNOWLEDGED
            ledger.check_in = result.check_in
            # The slip starts printing now, while the arm hands the band out (no time added).
            self.on_completed(result.check_in)
            return BindDecision(bound=True)
        self.pending.forget(request.request_id)
        ledger.status = BindStatus.REFUSED
        ledger.refusal = result.refusal
        return BindDecision(bound=False, reason=result.refusal.code.value)

    def settle(self, result: DispenseJobResult | Exception) -> Settlement:
        """On the flow's thread: settle the outcome with the queue and say where the check-in goes."""
        pending = self.pending
        if isinstance(result, Exception):
            # The dispenser raised instead of reporting: where the band is, is unknown. If bind ran,
            # the durable record is still in flight; hand it to the background to annul.
            _LOG.error("dispense raised %s", type(result).__name__)
            last = self.ledgers[-1] if self.ledgers else None
            unsettled = {BindStatus.ACKNOWLEDGED, BindStatus.UNCONFIRMED, BindStatus.ERROR}
            if last is not None and last.request_id is not None and last.status in unsettled:
                pending.annul_later(last.request_id, AnnulReason.DISPENSE_FAILED, type(result).__name__)
            return Settlement(Verdict.BAND_PROBLEM, audit=(("dispense", "error", type(result).__name__),))
        report, ledger = result.report, result.ledger
        rid = ledger.request_id
        audit = (("dispense", "needs_staff", report.reason),) if report.needs_staff else ()
        if report.outcome is DispenseOutcome.HANDED_OUT:
            if ledger.status is BindStatus.ACKNOWLEDGED and ledger.check_in is not None and rid is not None:
                pending.forget(rid)
                return Settlement(Verdict.DONE, check_in=ledger.check_in, audit=audit)
            if rid is not None:
                pending.deliver_later(rid)
            return Settlement(Verdict.ROOM_PENDING, audit=audit)
        if ledger.status is BindStatus.REFUSED and ledger.refusal is not None:
            if ledger.refusal.code in BAND_REFUSALS:
                return Settlement(Verdict.BAND_PROBLEM, audit=audit)
            return Settlement(Verdict.REFUSED, refusal=ledger.refusal, audit=audit)
        if rid is not None and ledger.status is not BindStatus.NOT_CALLED:
            reason = (
                AnnulReason.BAND_NOT_TAKEN
                if report.outcome is DispenseOutcome.NOT_TAKEN
                else (AnnulReason.BAND_UNREADABLE if report.reason == "UNREADABLE_UID" else AnnulReason.DISPENSE_FAILED)
            )
            pending.annul_later(rid, reason, report.reason)
        not_taken = report.outcome is DispenseOutcome.NOT_TAKEN
        return Settlement(Verdict.BAND_PROBLEM, band_not_taken=not_taken, audit=audit)
