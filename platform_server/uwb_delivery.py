"""The UWB delivery worker: drains the ``uwb_deliveries`` outbox to the gateway (serve: in its own process).

Rules it keeps (docs/uwb-protocol.md, docs/technician-uwb.md):

- a row is marked delivered only on the tag's acknowledgement of exactly its payload;
- a gateway outage never counts against a row: rows claimed while the gateway is unreachable are
  released untouched and the worker probes the gateway with backoff until it answers;
- tag-level failures (out of range, no ack, refused, too slow) count an attempt; the service layer
  backs off exponentially (capped) and after ``[uwb] max_attempts`` marks the row failed and flags
  the check-in for staff;
- an older row never lands after a newer one for the same tag: rows are taken in id order, a row
  with a newer row for its tag is superseded instead of sent, and every write uses the gateway's
  overwrite flag so an older downlink still queued in the gateway is dropped there too;
- restarts are safe: at start the worker releases leases a killed predecessor left, and re-sending
  a row is harmless because a write replaces the tag's whole payload (idempotent);
- a round's acknowledgements are recorded in a thread of their own while the next round goes out
  (at most one record pending): under load the record is a long transaction, and the worker's pace
  is then the longer of the two, not their sum. Rows acknowledged but not yet recorded stay claimed,
  so no other round takes them; a record that fails leaves them to be sent again when the claim lapses.

Exactly one worker may drive one gateway (a real serial port is opened exclusively): with several
replicas each starts a worker, but only the one holding the gateway's lease (worker_lease.py) runs;
the others stand by and one takes over when the holder's process ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from platform_server import worker_lease
from platform_server.services import uwb as outbox
from uwb import payload
from uwb.driver import UwbGateway
from uwb.errors import DeliveryTimeoutError, PayloadError, TagError, UwbError
from uwb.models import BandCleared, BandContent, RoomAssignment

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from platform_server.bootstrap import Platform
    from platform_server.config import UwbSection
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext
    from platform_server.worker_lease import Lease
    from uwb.driver import TagDownlink

log = logging.getLogger(__name__)

#: Longest pause between probes of an unreachable gateway: a probe is one status request, and every
#: second of pause after the gateway's return is a second more before the bands written meanwhile.
GATEWAY_BACKOFF_MAX_S = 2.0


@dataclass
class WorkerCounters:
    """What the worker has done since it started (logged, and read by tests)."""

    sent: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    superseded: int = 0
    #: Rounds that ended because the gateway could not be opened, did not answer or refused.
    gateway_failures: int = 0


class _GatewayDownError(Exception):
    """The gateway (not a tag) failed: stop this round, release claims, probe with backoff."""


@dataclass
class _InFlight:
    delivery_id: int
    tag_id: int
    data: bytes
    msg_id: int


def content_of(delivery: outbox.Delivery, tag_id: int) -> BandContent:
    """What the band must hold for an outbox row."""
    if delivery.kind == "clear":
        return BandCleared(tag_id)
    return RoomAssignment(tag_id, delivery.batch_code, delivery.hotel_code, delivery.room_number)


class _AckRecorder:
    """Records acknowledgements in a thread of its own, one round at a time, while the worker goes on.

    `submit` first waits for the round before (so the worker is never more than one round ahead of
    the database), then hands this one over; `flush` waits for what is pending. A record that fails is
    logged here and its rows keep their claim until it lapses (services.uwb.CLAIM_LEASE), then are sent
    again: a write replaces the band's whole payload.
    """

    def __init__(self, record: Callable[[list[_InFlight]], None]) -> None:
        self._record = record
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uwb-record")
        self._pending: Future[None] | None = None

    def submit(self, acked: list[_InFlight]) -> None:
        """Record `acked` in the background, after the round before has been recorded."""
        self.flush()
        if acked:
            self._pending = self._executor.submit(self._logged, list(acked))

    def flush(self) -> None:
        """Wait until every acknowledgement handed over has been recorded (or its record has failed)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Flush and end the thread."""
        self.flush()
        self._executor.shutdown(wait=True)

    def _logged(self, acked: list[_InFlight]) -> None:
        try:
            self._record(acked)
        except Exception:
            log.exception(
                "UWB: could not record %d acknowledgements; their rows are sent again when the claim lapses",
                len(acked),
            )


class UwbDeliveryWorker:
    """Background thread that sends due outbox rows to the gateway and records the outcome."""

    def __init__(
        self,
        new_uow: Callable[[], UnitOfWork],
        ctx: ServiceContext,
        settings: UwbSection,
        *,
        open_gateway: Callable[[], TagDownlink] | None = None,
        batch_size: int = 32,  # downlinks in flight at once: half the gateway's queue of 64
        waves: int = 8,  # batches per claim: one claim and one record transaction for up to 256 rows
        ack_timeout_s: float = 10.0,
        poll_interval_s: float = 0.05,
        lease: Lease | None = None,
    ) -> None:
        self._new_uow = new_uow
        self._ctx = ctx
        self._settings = settings
        self._open_gateway = open_gateway or (lambda: UwbGateway.open(settings.port))
        self._batch_size = batch_size
        self._waves = waves
        self._ack_timeout_s = ack_timeout_s
        self._poll_interval_s = poll_interval_s
        self._gateway: TagDownlink | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease = lease
        self.counters = WorkerCounters()
        self._recorder = _AckRecorder(self._record_acks)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            raise RuntimeError("UWB delivery worker already started")
        self._thread = threading.Thread(target=self._run, name="uwb-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the thread to finish its current poll, release unfinished claims and close the gateway."""
        self._stopping.set()
        self._ctx.bell.ring()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("UWB delivery worker did not stop within %.0f s", timeout)
        self._recorder.close()
        self._close_gateway()

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        try:
            while self._take_lease():
                self._drive()
        finally:
            self._recorder.flush()  # the last acknowledgements recorded while this worker holds the gateway
            if self._lease is not None:
                self._lease.release()

    def _take_lease(self) -> bool:
        """Wait until this worker may drive the gateway (always, without a lease); False when stopping."""
        if self._lease is None:
            return not self._stopping.is_set()
        return worker_lease.wait_for(self._lease, self._stopping, self._settings.poll_s)

    def _drive(self) -> None:
        """Deliver until stopping, or until the lease is lost (then the caller waits to take it again)."""
        try:
            released = outbox.release_claims(self._new_uow(), self._ctx.clock())
        except Exception:
            # The database went away again: stand by and take the lease anew rather than end the thread.
            log.exception("UWB worker start: could not release earlier claims")
            if self._lease is not None:
                self._lease.release()
            self._stopping.wait(self._settings.poll_s)
            return
        if released:
            log.info("UWB worker start: %d pending deliveries made due again (earlier process stopped)", released)
        backoff = self._settings.poll_s
        while not self._stopping.is_set():
            if self._lease is not None and not self._lease.still_held():
                log.warning("UWB worker lease lost (database connection ended): standing by")
                self._recorder.flush()
                self._close_gateway()
                return
            generation = self._ctx.bell.generation
            try:
                handled = self._round()
            except _GatewayDownError as err:
                self.counters.gateway_failures += 1
                log.warning("UWB gateway unavailable, next try in %.1f s: %s", backoff, err)
                self._close_gateway()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, GATEWAY_BACKOFF_MAX_S)
                continue
            except Exception:
                # A database hiccup must not kill the worker; the rows stay in the outbox.
                log.exception("UWB delivery round failed; retrying in %.1f s", self._settings.poll_s)
                self._stopping.wait(self._settings.poll_s)
                continue
            backoff = self._settings.poll_s
            if handled == 0:
                # Woken early by any committed event (a new check-in), else poll at poll_s.
                self._ctx.bell.wait(generation, self._settings.poll_s)

    def run_once(self) -> int:
        """One round, its acknowledgements recorded before it returns; how many rows were handled.

        Raises:
            _GatewayDownError: the gateway failed; claims of unfinished rows were released.

        """
        try:
            return self._round()
        finally:
            self._recorder.flush()

    def _round(self) -> int:
        """Claim due rows, send them, wait for their acknowledgements, hand those to the recorder.

        The record goes on in the background while the next round is claimed and sent.
        """
        gateway = self._connected_gateway()
        # Under load every write transaction queues for the database's write lock beside the kiosks'
        # (SQLite: one writer): a claim of several waves and one record of their acknowledgements keep
        # the worker's pace up after a gateway outage, when the backlog is large.
        claimed = outbox.claim_due(self._new_uow(), self._ctx.clock(), self._batch_size * self._waves)
        if not claimed:
            return 0
        unfinished = {d.delivery_id for d in claimed}
        ordered = sorted(claimed, key=lambda d: d.delivery_id)
        acked: list[_InFlight] = []
        try:
            for start in range(0, len(ordered), self._batch_size):
                if self._stopping.is_set():
                    break
                in_flight = self._send_all(gateway, ordered[start : start + self._batch_size], unfinished)
                self._await_acks(gateway, in_flight, unfinished, acked)
        except UwbError as err:
            self._recorder.submit(acked)
            self._release(unfinished)
            raise _GatewayDownError(str(err)) from err
        self._recorder.submit(acked)
        if unfinished:  # only when stopping: leave them due for the next process
            self._release(unfinished)
        return len(claimed)

    def _send_all(self, gateway: TagDownlink, claimed: list[outbox.Delivery], unfinished: set[int]) -> list[_InFlight]:
        in_flight: list[_InFlight] = []
        busy_tags: set[int] = set()
        usual = outbox.current_tags_for(self._new_uow(), [d.delivery_id for d in claimed])
        for delivery in claimed:
            tag_text = usual.get(delivery.delivery_id) or outbox.current_tag_for(self._new_uow(), delivery.delivery_id)
            if tag_text is None:
                self.counters.superseded += 1
                unfinished.discard(delivery.delivery_id)
                continue
            tag_id = int(tag_text, 16)
            if tag_id in busy_tags:
                continue  # a second row for this tag in one round (mapping changed): next round
            try:
                data = payload.encode(content_of(delivery, tag_id))
            except PayloadError as err:
                # Will not fit tomorrow either: fail now, visibly, instead of retrying.
                self._failed(delivery.delivery_id, f"payload: {err}", permanent=True)
                unfinished.discard(delivery.delivery_id)
                continue
            msg_id = gateway.start_downlink(tag_id, data, overwrite=True)
            self.counters.sent += 1
            busy_tags.add(tag_id)
            in_flight.append(_InFlight(delivery.delivery_id, tag_id, data, msg_id))
            log.info(
                "UWB delivery %d: downlink %d to tag %s (%s)", delivery.delivery_id, msg_id, tag_text, delivery.kind
            )
        return in_flight

    def _await_acks(
        self, gateway: TagDownlink, in_flight: list[_InFlight], unfinished: set[int], acked: list[_InFlight]
    ) -> None:
        """Poll until every downlink is acknowledged (added to `acked`), refused or out of time."""
        deadline = time.monotonic() + self._ack_timeout_s
        while in_flight:
            for item in list(in_flight):
                try:
                    receipt = gateway.poll_downlink(item.msg_id, item.tag_id, item.data)
                except TagError as err:
                    self._failed(item.delivery_id, str(err))
                    in_flight.remove(item)
                    unfinished.discard(item.delivery_id)
                    continue
                if receipt is not None:
                    acked.append(item)
                    in_flight.remove(item)
                    unfinished.discard(item.delivery_id)  # claimed until recorded: not released
            if not in_flight:
                return
            if time.monotonic() >= deadline:
                for item in in_flight:
                    # The gateway keeps trying; the next attempt overwrites that downlink anyway.
                    timeout = DeliveryTimeoutError(
                        f"no acknowledgement within {self._ack_timeout_s:.1f} s", item.tag_id
                    )
                    self._failed(item.delivery_id, f"tag {item.tag_id:04X}: {timeout}")
                    unfinished.discard(item.delivery_id)
                return
            if self._stopping.wait(self._poll_interval_s):
                return

    # ------------------------------------------------------------ helpers

    def _record_acks(self, acked: list[_InFlight]) -> None:
        """Mark every acknowledgement of one claim delivered, in one transaction (the recorder's thread)."""
        outbox.mark_delivered_many(self._new_uow(), self._ctx, [item.delivery_id for item in acked])
        self.counters.delivered += len(acked)
        for item in acked:
            log.info("UWB delivery %d acknowledged by tag %04X", item.delivery_id, item.tag_id)

    def _failed(self, delivery_id: int, error: str, *, permanent: bool = False) -> None:
        given_up = outbox.mark_failed_attempt(
            self._new_uow(),
            self._ctx,
            delivery_id,
            error,
            max_attempts=1 if permanent else self._settings.max_attempts,
            retry_after=_seconds(self._settings.retry_s),
        )
        self.counters.failed_attempts += 1
        if given_up:
            self.counters.given_up += 1
            log.error("UWB delivery %d given up, staff flagged: %s", delivery_id, error)
        else:
            log.warning("UWB delivery %d attempt failed: %s", delivery_id, error)

    def _release(self, delivery_ids: set[int]) -> None:
        if delivery_ids:
            outbox.release_claims(self._new_uow(), self._ctx.clock(), sorted(delivery_ids))

    def _connected_gateway(self) -> TagDownlink:
        if self._gateway is not None:
            return self._gateway
        try:
            gateway = self._open_gateway()
        except UwbError as err:
            raise _GatewayDownError(str(err)) from err
        try:
            status = gateway.status()
        except UwbError as err:
            gateway.close()
            raise _GatewayDownError(str(err)) from err
        log.info("UWB gateway %016X connected, radio %s", status.node_id, "up" if status.radio_up else "DOWN")
        self._gateway = gateway
        return gateway

    def _close_gateway(self) -> None:
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.close()


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def build_worker(platform: Platform) -> UwbDeliveryWorker:
    """The worker for bootstrap: the gateway at ``[uwb] port``, the platform's units of work and context."""
    lease = worker_lease.lease_for(platform.engine, platform.config.uwb.port)
    return UwbDeliveryWorker(platform.new_uow, platform.ctx, platform.config.uwb, lease=lease)
