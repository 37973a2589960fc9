"""The kiosk's durable queue of check-ins the platform has not settled yet (SQLite, encrypted at rest).

The rule it keeps: no band leaves the arm without either the platform's acknowledgement or a
record here. The dispense step writes the CompleteCheckIn request here *before* its first send
(state `in_flight`), so a crash, a power cut or a lost answer at any later moment leaves a record.
What happens to a record:

- `in_flight`   the live flow owns it; it becomes `deliver`, `annul` or is forgotten once the band's
                fate is known. Found at start-up, it means the kiosk died mid-dispense: `orphaned`.
- `deliver`     band handed out, no answer: replay CompleteCheckIn (same request id, marked HANDED_OUT)
                until answered; the platform honours it however late (its signed token proves it
                identified the expert), or opens a needs-staff case when it truly cannot.
- `annul`       band not handed out: replay CompleteCheckIn if no check-in id is known yet (to learn
                it), then AnnulCheckIn (its own stable request id) with the reason.
- `orphaned`    outcome unknown: replay CompleteCheckIn marked UNKNOWN (the platform flags the
                check-in and opens a case), then report `dispense_outcome_unknown`.
- `refused`     the platform refused a replay and opened a needs-staff case (its id is kept): shown
                in staff mode until staff clear it, never retried.

A record is removed only when the platform has answered. The payload (token, card number,
signature, band) is SM4-GCM encrypted with the kiosk's data key, bound to its request id.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from checkin.flow.models import (
    AnnulReason,
    AnnulRequest,
    AnnulResult,
    CardSource,
    CompleteRequest,
    CompleteResult,
    DispenseState,
    KioskEvent,
    NewCard,
    QueuedRecordInfo,
    Refused,
)
from checkin.flow.ports import PlatformUnavailableError
from personal_data import crypto

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_check_ins (
    request_id       TEXT PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'deliver', 'annul', 'orphaned', 'refused')),
    payload          BLOB NOT NULL,
    check_in_id      TEXT,
    annul_reason     TEXT,
    annul_detail     TEXT NOT NULL DEFAULT '',
    annul_request_id TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    case_id          TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
)
"""


class RecordState(StrEnum):
    """Where a queued check-in stands (see the module docstring)."""

    IN_FLIGHT = "in_flight"
    DELIVER = "deliver"
    ANNUL = "annul"
    ORPHANED = "orphaned"
    REFUSED = "refused"


DUE_STATES = (RecordState.DELIVER, RecordState.ANNUL, RecordState.ORPHANED)


class QueueError(Exception):
    """The queue file cannot be used (corrupt, wrong key, unknown record)."""


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """One queued check-in, decrypted."""

    request: CompleteRequest
    state: RecordState
    check_in_id: str | None
    annul_reason: AnnulReason | None
    annul_detail: str
    annul_request_id: str | None
    attempts: int
    last_error: str


def _encode(request: CompleteRequest) -> bytes:
    card = request.new_card
    body = {
        "request_id": request.request_id,
        "token": request.identification_token,
        "band_uid": request.band_uid,
        "signature_png": base64.b64encode(request.signature_png).decode("ascii"),
        "new_card": None
        if card is None
        else {"pan": card.pan, "source": card.source.value, "expiry": card.expiry_yymm, "holder": card.holder_name},
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _decode(raw: bytes) -> CompleteRequest:
    body = json.loads(raw)
    card = body["new_card"]
    return CompleteRequest(
        request_id=body["request_id"],
        identification_token=body["token"],
        new_card=None
        if card is None
        else NewCard(
            pan=card["pan"], source=CardSource(card["source"]), expiry_yymm=card["expiry"], holder_name=card["holder"]
        ),
        signature_png=base64.b64decode(body["signature_png"]),
        band_uid=body["band_uid"],
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class PendingQueue:
    """The SQLite-backed queue; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, key: crypto.DataKey, *, on_change: Callable[[], None] | None = None) -> None:
        self._path = path
        self._key = key
        self._lock = threading.Lock()
        self._on_change = on_change
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # WAL + synchronous=FULL: a commit is on disk (fsync'd) before write_ahead returns, so a
            # power cut right after it cannot lose the record that vouches for a band.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending_check_ins)")}
            if "case_id" not in columns:  # a queue file written before needs-staff cases
                self._db.execute("ALTER TABLE pending_check_ins ADD COLUMN case_id TEXT NOT NULL DEFAULT ''")
        except sqlite3.DatabaseError as err:
            raise QueueError(f"queue file {path} cannot be opened: {err}") from err

    def set_on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from any thread) whenever a record becomes due (wakes the replayer)."""
        self._on_change = callback

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # ---- the flow's side (checkin.flow.ports.PendingStore) ----------------------------------------

    def write_ahead(self, request: CompleteRequest) -> None:
        """Record a CompleteCheckIn before its first send; a repeated request id keeps the first record."""
        payload = crypto.encrypt(self._key, _encode(request), request.request_id.encode())
        now = _now()
        self._exec(
            "INSERT OR IGNORE INTO pending_check_ins (request_id, state, payload, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (request.request_id, RecordState.IN_FLIGHT.value, payload, now, now),
        )

    def acknowledged(self, request_id: str, check_in_id: str) -> None:
        """The platform completed the check-in: remember its id (the band's fate is still open)."""
        self._exec(
            "UPDATE pending_check_ins SET check_in_id = ?, updated_at = ? WHERE request_id = ?",
            (check_in_id, _now(), request_id),
        )

    def forget(self, request_id: str) -> None:
        """Nothing left to deliver for this request: remove it."""
        self._exec("DELETE FROM pending_check_ins WHERE request_id = ?", (request_id,))

    def deliver_later(self, request_id: str) -> None:
        """Band handed out without an answer: the replayer delivers it."""
        self._set_state(request_id, RecordState.DELIVER)

    def annul_later(self, request_id: str, reason: AnnulReason, detail: str) -> None:
        """Band not handed out: the replayer completes (if needed) and annuls."""
        self._exec(
            "UPDATE pending_check_ins SET state = ?, annul_reason = ?, annul_detail = ?, "
            "annul_request_id = COALESCE(annul_request_id, ?), updated_at = ? WHERE request_id = ?",
            (RecordState.ANNUL.value, reason.value, detail, str(uuid.uuid4()), _now(), request_id),
        )
        self._changed()

    def depth(self) -> int:
        """Records the platform has not settled (refused ones included: staff must look at them)."""
        row = self._exec("SELECT COUNT(*) FROM pending_check_ins").fetchone()
        return int(row[0])

    # ---- the replayer's side ----------------------------------------------------------------------

    def recover_after_restart(self) -> int:
        """At start-up, nothing is live: in-flight records are orphans of a crash. Returns how many."""
        cur = self._exec(
            "UPDATE pending_check_ins SET state = ?, updated_at = ? WHERE state = ?",
            (RecordState.ORPHANED.value, _now(), RecordState.IN_FLIGHT.value),
        )
        return cur.rowcount

    def due(self) -> list[str]:
        """Request ids the replayer should work on, oldest first."""
        marks = ",".join("?" for _ in DUE_STATES)
        rows = self._exec(
            f"SELECT request_id FROM pending_check_ins WHERE state IN ({marks}) ORDER BY created_at",  # noqa: S608 - placeholders only
            tuple(s.value for s in DUE_STATES),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def count(self, state: RecordState) -> int:
        """Records in one state."""
        row = self._exec("SELECT COUNT(*) FROM pending_check_ins WHERE state = ?", (state.value,)).fetchone()
        return int(row[0])

    def load(self, request_id: str) -> PendingRecord:
        """One record, decrypted; QueueError if it is missing or does not decrypt with this key."""
        row = self._exec(
            "SELECT state, payload, check_in_id, annul_reason, annul_detail, annul_request_id, attempts, last_error "
            "FROM pending_check_ins WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        if row is None:
            raise QueueError(f"no queued check-in with request id {request_id}")
        try:
            request = _decode(crypto.decrypt(self._key, row[1], request_id.encode()))
        except crypto.DecryptionError as err:
            raise QueueError(f"queued check-in {request_id} does not decrypt with this kiosk's data key") from err
        return PendingRecord(
            request=request,
            state=RecordState(row[0]),
            check_in_id=row[2],
            annul_reason=AnnulReason(row[3]) if row[3] else None,
            annul_detail=row[4],
            annul_request_id=row[5],
            attempts=int(row[6]),
            last_error=row[7],
        )

    def attempt_failed(self, request_id: str, error: str) -> None:
        """Count a failed replay attempt (no answer, or an error status)."""
        self._exec(
            "UPDATE pending_check_ins SET attempts = attempts + 1, last_error = ?, updated_at = ? WHERE request_id = ?",
            (error[:200], _now(), request_id),
        )

    def mark_refused(self, request_id: str, code: str, case_id: str = "") -> None:
        """The platform refused a replayed check-in (and opened `case_id`): show it to staff, stop retrying."""
        self._exec(
            "UPDATE pending_check_ins SET state = ?, last_error = ?, case_id = ?, updated_at = ? WHERE request_id = ?",
            (RecordState.REFUSED.value, code, case_id, _now(), request_id),
        )

    # ---- staff mode ---------------------------------------------------------------------------------

    def staff_list(self) -> tuple[QueuedRecordInfo, ...]:
        """Every record, oldest first, as staff mode shows it (band UID, no card or token)."""
        rows = self._exec(
            "SELECT request_id, state, payload, last_error, case_id, attempts, created_at "
            "FROM pending_check_ins ORDER BY created_at"
        ).fetchall()
        listed = []
        for request_id, state, payload, last_error, case_id, attempts, created_at in rows:
            try:
                band = _decode(crypto.decrypt(self._key, payload, str(request_id).encode())).band_uid
            except (crypto.DecryptionError, ValueError, KeyError):
                band = "?"
            listed.append(
                QueuedRecordInfo(
                    request_id=str(request_id),
                    state=RecordState(state).value,
                    band_uid=band,
                    problem=str(last_error),
                    case_id=str(case_id),
                    attempts=int(attempts),
                    since=str(created_at)[:19].replace("T", " "),
                )
            )
        return tuple(listed)

    def staff_clear(self, request_id: str) -> bool:
        """Staff handled a refused record (the platform's case says how): remove it. Only refused ones."""
        cur = self._exec(
            "DELETE FROM pending_check_ins WHERE request_id = ? AND state = ?", (request_id, RecordState.REFUSED.value)
        )
        return cur.rowcount == 1

    def _set_state(self, request_id: str, state: RecordState) -> None:
        self._exec(
            "UPDATE pending_check_ins SET state = ?, updated_at = ? WHERE request_id = ?",
            (state.value, _now(), request_id),
        )
        self._changed()


class ReplayPlatform(Protocol):
    """The platform calls the replayer makes (checkin.platform_client.PlatformClient)."""

    def complete_check_in(self, request: CompleteRequest) -> CompleteResult:
        """CompleteCheckIn."""
        ...

    def annul_check_in(self, request: AnnulRequest) -> AnnulResult:
        """AnnulCheckIn."""
        ...

    def report_event(self, event: KioskEvent) -> None:
        """ReportKioskEvent."""
        ...


@dataclass
class ReplayStats:
    """What one pass over the queue did."""

    delivered: int = 0
    annulled: int = 0
    refused: int = 0
    unanswered: int = 0


# What the replay of a record tells the platform about its band (an `annul` record's band never left).
_DISPENSE_OF = {RecordState.DELIVER: DispenseState.HANDED_OUT, RecordState.ORPHANED: DispenseState.UNKNOWN}


class QueueReplayer:
    """Settles queued records with the platform: once at start-up, then from a background thread with backoff."""

    def __init__(
        self,
        queue: PendingQueue,
        platform: ReplayPlatform,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self._queue = queue
        self._platform = platform
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        queue.set_on_change(self.notify)

    def notify(self) -> None:
        """A record became due: run a pass now instead of after the backoff."""
        self._wake.set()

    def replay_once(self) -> ReplayStats:
        """One pass over every due record; stops at the first record the platform does not answer."""
        stats = ReplayStats()
        for request_id in self._queue.due():
            try:
                self._settle(request_id, stats)
            except PlatformUnavailableError as err:
                self._queue.attempt_failed(request_id, str(err))
                stats.unanswered += 1
                break  # the platform is down: do not hammer it record by record
            except Exception as err:  # an error status or a bad record: count it, go on with the others
                log.warning("replay of %s failed: %s", request_id, type(err).__name__)
                self._queue.attempt_failed(request_id, f"{type(err).__name__}: {err}")
                stats.unanswered += 1
        self.passes += 1
        return stats

    def _settle(self, request_id: str, stats: ReplayStats) -> None:
        record = self._queue.load(request_id)
        check_in_id = record.check_in_id
        if check_in_id is None:
            result = self._platform.complete_check_in(
                dataclasses.replace(record.request, dispense=_DISPENSE_OF.get(record.state, DispenseState.LIVE))
            )
            if isinstance(result, Refused):
                code = result.refusal.code.value
                if record.state is RecordState.ANNUL:
                    # Never completed (or refused): there is nothing to annul.
                    self._event("queued_annul_nothing_to_annul", code, request_id)
                    self._queue.forget(request_id)
                else:
                    # The platform opened a case for it (its id came back); the event lands on the same case.
                    self._event("queued_check_in_refused", code, request_id)
                    self._queue.mark_refused(request_id, code, result.needs_staff_case_id)
                    stats.refused += 1
                return
            check_in_id = result.check_in.check_in_id
            self._queue.acknowledged(request_id, check_in_id)
        if record.state is RecordState.DELIVER:
            self._event("queued_check_in_delivered", "ok", request_id, check_in_id)
            self._queue.forget(request_id)
            stats.delivered += 1
        elif record.state is RecordState.ORPHANED:
            self._event("dispense_outcome_unknown", "needs_staff", request_id, check_in_id)
            self._queue.forget(request_id)
            stats.delivered += 1
        elif record.state is RecordState.ANNUL:
            annul = AnnulRequest(
                request_id=record.annul_request_id or str(uuid.uuid4()),
                check_in_id=check_in_id,
                reason=record.annul_reason or AnnulReason.DISPENSE_FAILED,
                detail=record.annul_detail,
            )
            outcome = self._platform.annul_check_in(annul)
            if isinstance(outcome, Refused):
                self._event("annul_refused", outcome.refusal.code.value, request_id, check_in_id)
            else:
                stats.annulled += 1
            self._queue.forget(request_id)

    def _event(self, event: str, outcome: str, request_id: str, check_in_id: str | None = None) -> None:
        detail = f"request_id={request_id}" + (f" check_in_id={check_in_id}" if check_in_id else "")
        log.info("queue: %s %s %s", event, outcome, detail)
        try:
            self._platform.report_event(
                KioskEvent(
                    request_id=str(uuid.uuid4()),
                    event=event,
                    outcome=outcome,
                    occurred_at=dt.datetime.now(dt.UTC),
                    detail=detail,
                )
            )
        except Exception as err:  # the audit event is best effort; the queue state is what counts
            log.warning("could not report %s: %s", event, type(err).__name__)

    # ---- background thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (call after recover_after_restart())."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="queue-replayer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        delay = self._backoff_initial
        while not self._stop.is_set():
            self._wake.clear()
            stats = self.replay_once()
            if stats.unanswered:
                wait: float | None = delay
                delay = min(delay * 2, self._backoff_max)
            else:
                delay = self._backoff_initial
                # Nothing failed: sleep until a record becomes due (or re-check now and then).
                wait = self._backoff_max if self._queue.due() else None
            self._wake.wait(wait)
