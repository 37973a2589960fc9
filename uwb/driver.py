"""Driver for the UWB gateway over any pyserial URL: a real port, ``socket://`` (simulator) or ``spy://``.

Requests go one at a time; each carries a sequence number that the response echoes, so a late
answer to an earlier request is never taken for the answer to the current one. A request that gets
no answer is re-sent with the same sequence number (the gateway replays its cached answer instead
of acting twice), a bounded number of times, then GatewayOfflineError.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol, Self

import serial
import serial.threaded

from device_kit.link import Closing, start_reader
from uwb import protocol
from uwb.errors import (
    DeliveryLostError,
    DeliverySupersededError,
    DeliveryTimeoutError,
    GatewayBusyError,
    GatewayOfflineError,
    GatewayRejectedError,
    ProtocolError,
    TagNackError,
    TagNoAckError,
    TagOutOfRangeError,
)
from uwb.models import DeliveryReceipt, DownlinkState, DownlinkStatus, GatewayStatus, format_tag_id
from uwb.protocol import Envelope, EnvelopeDecoder, ReturnValue

_log = logging.getLogger("uwb.driver")

BAUDRATE = 115200


class TagDownlink(Protocol):
    """What the platform needs from a gateway: put payloads on tags and prove the tags hold them."""

    def status(self) -> GatewayStatus:
        """Node id, flags and counters (also a cheap liveness probe)."""
        ...

    def start_downlink(self, tag_id: int, payload: bytes, *, overwrite: bool = True) -> int:
        """Queue ``payload`` for ``tag_id``; return the downlink id at once."""
        ...

    def poll_downlink(self, msg_id: int, tag_id: int, payload: bytes) -> DeliveryReceipt | None:
        """Receipt once acknowledged, None while in progress, a TagError when it ended otherwise."""
        ...

    def close(self) -> None:
        """Release the link."""
        ...


class _EnvelopeReceiver(serial.threaded.Protocol):  # type: ignore[misc]
    """Reader-thread side: turn received bytes into envelopes on a queue."""

    def __init__(self) -> None:
        self.decoder = EnvelopeDecoder()
        self.frames: queue.Queue[Envelope] = queue.Queue()
        self.lost = threading.Event()
        self.lost_reason: str = ""

        self._lock = threading.Lock()

    def data_received(self, data: bytes) -> None:
        with self._lock:
            frames = self.decoder.feed(data)
        for frame in frames:
            self.frames.put(frame)

    def quiet_reset(self) -> None:
        """After a request timed out: drop a partial frame that noise may have started (see protocol.py)."""
        with self._lock:
            if self.decoder.pending:
                _log.warning("dropping %d bytes of an incomplete frame after a timeout", self.decoder.pending)
            frames = self.decoder.drop_partial()
        for frame in frames:
            self.frames.put(frame)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_reason = str(exc) if exc else "closed"
        self.lost.set()


class UwbGateway(Closing):
    """A connected gateway. Build it with ``UwbGateway.open(url)``; it is not safe to share between processes."""

    def __init__(
        self,
        url: str,
        port: serial.SerialBase,
        *,
        timeout: float,
        retries: int,
        busy_retries: int,
        poll_interval: float,
        ack_timeout: float,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.busy_retries = busy_retries
        self.poll_interval = poll_interval
        self.ack_timeout = ack_timeout
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._seq = 0
        self._last_state = DownlinkState.QUEUED
        self._reader, self._receiver = start_reader(port, _EnvelopeReceiver)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout: float = 0.5,
        retries: int = 3,
        busy_retries: int = 5,
        poll_interval: float = 0.02,
        ack_timeout: float = 5.0,
    ) -> Self:
        """Open the gateway at a pyserial URL.

        Args:
            url: ``/dev/ttyUSB0``, ``socket://127.0.0.1:7005``, ``spy:///dev/ttyUSB0`` …
            timeout: seconds to wait for the answer to one request frame.
            retries: how many times one request frame is sent before GatewayOfflineError.
            busy_retries: how many busy answers are retried (with backoff) before GatewayBusyError.
            poll_interval: seconds between delivery-status queries while waiting for a tag.
            ack_timeout: default seconds ``send_to_tag`` waits for the tag's acknowledgement.

        Raises:
            GatewayOfflineError: the port cannot be opened.

        """
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval), ("ack_timeout", ack_timeout)):
            if value <= 0:
                raise ValueError(f"UWB gateway option {name!r} must be above 0, got {value}")
        if retries < 1 or busy_retries < 0:
            raise ValueError(f"UWB gateway retries must be at least 1 (busy retries 0), got {retries}/{busy_retries}")
        try:
            # exclusive: a second process on the same real port (two workers for one gateway) fails to open
            # instead of interleaving frames; transports without locking (socket://) ignore it.
            port = serial.serial_for_url(url, baudrate=BAUDRATE, timeout=timeout, write_timeout=timeout, exclusive=True)
        except (serial.SerialException, ValueError) as err:
            raise GatewayOfflineError(f"Cannot open UWB gateway at {url}: {err}") from err
        return cls(
            url,
            port,
            timeout=timeout,
            retries=retries,
            busy_retries=busy_retries,
            poll_interval=poll_interval,
            ack_timeout=ack_timeout,
        )

    def close(self) -> None:
        """Stop the reader thread and close the port."""
        self._closed.set()
        try:
            self._reader.close()
        except (serial.SerialException, OSError) as err:
            _log.debug("closing %s: %s", self.url, err)

    # ------------------------------------------------------------ commands

    def node_id(self) -> int:
        """The gateway bridge node's 64-bit id (node_id_get 0x30)."""
        return protocol.decode_node_id(self._command(protocol.node_id_get_request(), "node_id_get"))

    def status(self) -> GatewayStatus:
        """Node id, status flags and downlink counters."""
        node_id = self.node_id()
        return protocol.decode_status(self._command(protocol.status_get_request(), "status_get"), node_id)

    def start_downlink(self, tag_id: int, payload: bytes, *, overwrite: bool = True) -> int:
        """Queue ``payload`` for ``tag_id`` at the gateway and return the downlink id (no waiting for the tag)."""
        request = protocol.dl_data_write_request(tag_id, payload, overwrite=overwrite)
        return protocol.decode_dl_handle(self._command(request, f"downlink to tag {format_tag_id(tag_id)}"))

    def downlink_status(self, msg_id: int) -> DownlinkStatus:
        """Where downlink ``msg_id`` stands."""
        status = protocol.decode_dl_status(self._command(protocol.dl_status_get_request(msg_id), "downlink status"))
        if status.msg_id != msg_id:
            raise ProtocolError(f"Asked for downlink {msg_id}, gateway answered about {status.msg_id}")
        return status

    def read_tag(self, tag_id: int) -> bytes:
        """The data the tag last acknowledged holding, as the gateway remembers it (empty if none)."""
        return protocol.decode_usr_data(self._command(protocol.tag_data_read_request(tag_id), "tag data read"))

    def send_to_tag(
        self, tag_id: int, payload: bytes, *, overwrite: bool = True, ack_timeout: float | None = None
    ) -> DeliveryReceipt:
        """Deliver ``payload`` to ``tag_id`` and return only once the tag acknowledged holding exactly it.

        Raises:
            TagOutOfRangeError, TagNoAckError, TagNackError, DeliveryTimeoutError,
            DeliverySupersededError, DeliveryLostError: the tag does not (provably) hold the payload.
            GatewayOfflineError, GatewayBusyError, GatewayRejectedError: the gateway did not take it.

        """
        started = time.monotonic()
        deadline = started + (self.ack_timeout if ack_timeout is None else ack_timeout)
        msg_id = self.start_downlink(tag_id, payload, overwrite=overwrite)
        while True:
            receipt = self.poll_downlink(msg_id, tag_id, payload, started=started)
            if receipt is not None:
                return receipt
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryTimeoutError(
                    f"Tag {format_tag_id(tag_id)} did not acknowledge downlink {msg_id} within "
                    f"{deadline - started:.1f} s (gateway state {self._last_state.name})",
                    tag_id,
                )
            if self._closed.wait(min(self.poll_interval, remaining)):
                raise GatewayOfflineError(f"UWB gateway link {self.url} closed while waiting for tag {tag_id:04X}")

    def poll_downlink(
        self, msg_id: int, tag_id: int, payload: bytes, *, started: float | None = None
    ) -> DeliveryReceipt | None:
        """Ask once where a downlink stands: a checked receipt, None while in progress, or a TagError."""
        status = self.downlink_status(msg_id)
        self._last_state = status.state
        if status.state == DownlinkState.ACKED:
            return self._receipt(status, tag_id, payload, time.monotonic() if started is None else started)
        if status.state in _FAILURES:
            error_type, reason = _FAILURES[status.state]
            raise error_type(f"Tag {format_tag_id(tag_id)} {reason} (downlink {msg_id})", tag_id)
        return None

    @staticmethod
    def _receipt(status: DownlinkStatus, tag_id: int, payload: bytes, started: float) -> DeliveryReceipt:
        expected = protocol.held_check(payload)
        if status.tag_id != tag_id or status.held_crc != expected:
            # The acknowledgement is for other data: never report that as delivered.
            raise TagNackError(
                f"Tag {format_tag_id(status.tag_id)} acknowledged data with check {status.held_crc:08X}, "
                f"expected tag {format_tag_id(tag_id)} with {expected:08X}",
                tag_id,
            )
        return DeliveryReceipt(
            tag_id=tag_id, msg_id=status.msg_id, held_check=expected, elapsed_s=time.monotonic() - started
        )

    # ------------------------------------------------------------ transport

    def _command(self, body: bytes, what: str) -> protocol.Response:
        """Send one request; retry busy answers with backoff; raise on any other refusal."""
        delay = self.poll_interval
        for attempt in range(self.busy_retries + 1):
            resp = self._transact(body, what)
            if resp.rv == ReturnValue.OK:
                return resp
            if resp.rv != ReturnValue.BUSY:
                raise GatewayRejectedError(f"UWB gateway refused {what}: {_rv_text(resp.rv)}", resp.rv)
            if attempt < self.busy_retries:
                _log.warning("gateway busy on %s, retry %d/%d in %.2f s", what, attempt + 1, self.busy_retries, delay)
                if self._closed.wait(delay):
                    break
                delay = min(delay * 2, 1.0)
        raise GatewayBusyError(f"UWB gateway stayed busy on {what} after {self.busy_retries + 1} tries")

    def _transact(self, body: bytes, what: str) -> protocol.Response:
        """One request/response exchange with same-sequence re-sends on silence."""
        with self._lock:
            self._seq = (self._seq + 1) & 0xFF
            seq = self._seq
            frame = protocol.encode_envelope(seq, body)
            for attempt in range(1, self.retries + 1):
                self._check_link(what)
                try:
                    self._reader.write(frame)
                except (serial.SerialException, OSError) as err:
                    raise GatewayOfflineError(f"UWB gateway {self.url} write failed on {what}: {err}") from err
                reply = self._await(seq, self.timeout)
                if reply is not None:
                    return protocol.parse_response(reply.body)
                self._receiver.quiet_reset()
                reply = self._await(seq, 0.0)
                if reply is not None:
                    return protocol.parse_response(reply.body)
                if attempt < self.retries:
                    _log.warning("no answer from %s to %s, re-sending (%d/%d)", self.url, what, attempt, self.retries)
            self._check_link(what)
            raise GatewayOfflineError(
                f"UWB gateway {self.url} did not answer {what} ({self.retries} tries of {self.timeout:.2f} s)"
            )

    def _await(self, seq: int, timeout: float) -> Envelope | None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                frame = (
                    self._receiver.frames.get(timeout=remaining)
                    if remaining > 0
                    else self._receiver.frames.get_nowait()
                )
            except queue.Empty:
                return None
            if frame.seq == seq:
                return frame
            _log.debug("discarding stale answer seq=%d while waiting for %d", frame.seq, seq)

    def _check_link(self, what: str) -> None:
        if self._receiver.lost.is_set():
            raise GatewayOfflineError(f"UWB gateway link {self.url} lost ({self._receiver.lost_reason}) before {what}")


_FAILURES: dict[DownlinkState, tuple[type[TagOutOfRangeError | TagNoAckError | TagNackError], str]] = {
    DownlinkState.UNREACHABLE: (TagOutOfRangeError, "was not heard by the gateway (out of range)"),
    DownlinkState.NO_ACK: (TagNoAckError, "never acknowledged (acknowledgements lost)"),
    DownlinkState.NACKED: (TagNackError, "refused the payload"),
    DownlinkState.SUPERSEDED: (DeliverySupersededError, "downlink was replaced by a newer one"),  # type: ignore[dict-item]
    DownlinkState.UNKNOWN: (DeliveryLostError, "downlink is unknown to the gateway (restarted?)"),  # type: ignore[dict-item]
}


def _rv_text(rv: int) -> str:
    try:
        return f"rv {rv} ({ReturnValue(rv).name.lower()})"
    except ValueError:
        return f"rv {rv} (undefined)"
