"""ID card reader driver: the SAM serial protocol over any pyserial URL (real port, socket://, pty)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Final, TypeAlias

import serial
from serial.threaded import Protocol

from device_kit.link import Closing, start_reader
from id_card_reader.errors import (
    SW3_TEXT,
    CardRemovedError,
    FrameFormatError,
    IdCardConnectionError,
    IdCardError,
    IdCardProtocolError,
    IdCardTimeoutError,
    NoCardError,
    SamStatusError,
    Sw3,
)
from id_card_reader.models import IdentityCard, PhotoDecoder, ReaderStatus, UnavailablePhotoDecoder
from id_card_reader.protocol import (
    BAUDRATE,
    Command,
    FrameAssembler,
    SamFrame,
    SamReply,
    build_request,
    decode_base_info,
    decode_identity_text,
    decode_sam_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("id_card_reader")
wire_log = logging.getLogger("id_card_reader.wire")

#: After a damaged frame, how long the line must stay quiet before we resend (at 115200 baud a
#: byte takes 87 µs, so 100 ms of silence means the reader has finished talking).
QUIET_AFTER_DAMAGE: Final = 0.1
#: Read timeout of the serial port in the reader thread: bounds how long close() waits on
#: transports without cancel_read (socket://).
_PORT_POLL: Final = 0.05


class SamFramePacketizer(Protocol):  # type: ignore[misc]
    """pyserial threaded Protocol: frames the byte stream and hands each frame to a callback.

    Runs in pyserial's ReaderThread; `on_item` receives SamFrame or a recovered protocol error,
    and `on_lost` the exception that ended the connection (None on a clean close).
    """

    def __init__(
        self,
        on_item: Callable[[SamFrame | IdCardProtocolError], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        self._assembler = FrameAssembler()
        self._lock = threading.Lock()
        self._on_item = on_item
        self._on_lost = on_lost
        self._last_data_at = 0.0

    def reset(self) -> None:
        """Drop a partial frame; called by the driver before each command."""
        with self._lock:
            self._assembler.reset()

    def stalled_partial(self, quiet: float) -> int:
        """Bytes of a partial frame after which the line has been quiet for `quiet` s (0 if none)."""
        with self._lock:
            if self._assembler.pending and time.monotonic() - self._last_data_at >= quiet:
                return self._assembler.pending
            return 0

    def data_received(self, data: bytes) -> None:
        """Feed the framer from the reader thread."""
        with self._lock:
            self._last_data_at = time.monotonic()
            items = self._assembler.feed(data)
        for item in items:
            self._on_item(item)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Report the end of the link."""
        self._on_lost(exc)


class _LinkLost:
    """Queue marker: the reader thread ended because the link failed."""

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc


_Item: TypeAlias = "SamFrame | IdCardProtocolError | _LinkLost"


class IdCardReader(Closing):
    """A SAM ID card reader on a serial link: status, find, select, read, and a polling read_identity()."""

    def __init__(
        self,
        port: serial.SerialBase,
        *,
        timeout: float = 1.0,
        read_timeout: float = 3.0,
        attempts: int = 3,
        backoff: float = 0.05,
        poll_interval: float = 0.2,
        photo_decoder: PhotoDecoder | None = None,
        name: str = "",
    ) -> None:
        if timeout <= 0 or read_timeout <= 0:
            raise ValueError("ID card reader timeouts must be above 0 seconds")
        if attempts < 1:
            raise ValueError(f"ID card reader attempts must be at least 1, got {attempts}")
        self.name = name or getattr(port, "port", "") or "id-card-reader"
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.attempts = attempts
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.photo_decoder: PhotoDecoder = photo_decoder or UnavailablePhotoDecoder()
        #: Commands resent after a damaged frame, a timeout or a line-noise status, since opening.
        self.retries = 0
        self._items: queue.Queue[_Item] = queue.Queue()
        self._io_lock = threading.Lock()
        self._closed = threading.Event()
        self._port = port
        self._thread, self._packetizer = start_reader(port, self._make_packetizer)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout: float = 1.0,
        read_timeout: float = 3.0,
        attempts: int = 3,
        photo_decoder: PhotoDecoder | None = None,
    ) -> IdCardReader:
        """Open the reader at a pyserial URL: /dev/ttyUSB0, socket://127.0.0.1:7101, /dev/pts/3, loop://."""
        try:
            port = serial.serial_for_url(url, baudrate=BAUDRATE, timeout=_PORT_POLL)
        except (serial.SerialException, ValueError, OSError) as err:
            raise IdCardConnectionError(
                f"无法打开身份证阅读器 / cannot open the ID card reader at {url}: {err}"
            ) from err
        return cls(
            port,
            timeout=timeout,
            read_timeout=read_timeout,
            attempts=attempts,
            photo_decoder=photo_decoder,
            name=url,
        )

    def _make_packetizer(self) -> SamFramePacketizer:
        return SamFramePacketizer(self._items.put, lambda exc: self._items.put(_LinkLost(exc)))

    def close(self) -> None:
        """Stop the reader thread and close the port (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.close()

    # --- one command ------------------------------------------------------------------------------

    def transact(self, command: Command, data: bytes = b"", *, timeout: float | None = None) -> SamReply:
        """Send one command and return its reply, resending on damage or silence (bounded, logged)."""
        limit = self.timeout if timeout is None else timeout
        last: IdCardError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                reply = self._exchange(command, data, limit)
            except IdCardProtocolError as err:
                last = err
            except IdCardTimeoutError as err:
                last = err
            else:
                if reply.sw3 not in (Sw3.TERMINAL_CHECKSUM, Sw3.TERMINAL_LENGTH):
                    return reply
                last = reply.error(command.name)
            if attempt < self.attempts:
                self.retries += 1
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "%s: %s; attempt %d of %d, resending in %.2f s", command.name, last, attempt, self.attempts, delay
                )
                if self._closed.wait(delay):
                    break
        assert last is not None
        log.error("%s failed after %d attempts: %s", command.name, self.attempts, last)
        raise last

    def _exchange(self, command: Command, data: bytes, limit: float) -> SamReply:
        if self._closed.is_set():
            raise IdCardConnectionError(f"身份证阅读器已关闭 / the ID card reader {self.name} is closed")
        with self._io_lock:
            self._drain()
            frame = build_request(command, data)
            wire_log.debug(">>> %s %s", command.name, frame.hex(" ").upper())
            try:
                self._thread.write(frame)
            except (serial.SerialException, OSError) as err:
                raise IdCardConnectionError(f"身份证阅读器连接中断 / lost the link to {self.name}: {err}") from err
            deadline = time.monotonic() + limit
            damage: IdCardProtocolError | None = None
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if damage is not None:
                        raise damage
                    raise IdCardTimeoutError(
                        f"身份证阅读器无应答 / no complete reply to {command.name} "
                        f"within {limit:.2f} s from {self.name}"
                    )
                try:
                    item = self._items.get(timeout=min(remaining, QUIET_AFTER_DAMAGE))
                except queue.Empty:
                    stalled = self._packetizer.stalled_partial(QUIET_AFTER_DAMAGE)
                    if stalled:
                        # Inter-byte timeout: a frame that stopped half-way will never complete.
                        self._packetizer.reset()
                        damage = FrameFormatError(f"short frame: {stalled} byte(s), then the line went quiet")
                        wire_log.debug("<<< damaged: %s", damage)
                        deadline = min(deadline, time.monotonic())
                    continue
                if isinstance(item, _LinkLost):
                    raise IdCardConnectionError(
                        f"身份证阅读器连接中断 / lost the link to {self.name}: {item.exc or 'closed'}"
                    )
                if isinstance(item, IdCardProtocolError):
                    wire_log.debug("<<< damaged: %s", item)
                    damage = item
                    deadline = min(deadline, time.monotonic() + QUIET_AFTER_DAMAGE)
                    continue
                reply = item.as_reply()
                # Only status and length: a base-info reply carries the ID number.
                wire_log.debug("<<< %s SW3=%02X, %d data bytes", command.name, reply.sw3, len(reply.data))
                return reply

    def _drain(self) -> None:
        self._packetizer.reset()
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _LinkLost):
                raise IdCardConnectionError(
                    f"身份证阅读器连接中断 / lost the link to {self.name}: {item.exc or 'closed'}"
                )

    def _expect(self, command: Command, ok: tuple[int, ...], *, timeout: float | None = None) -> SamReply:
        reply = self.transact(command, timeout=timeout)
        if reply.sw1 or reply.sw2 or reply.sw3 not in ok:
            raise reply.error(command.name)
        return reply

    # --- the SAM commands ---------------------------------------------------------------------------

    def status(self) -> ReaderStatus:
        """Ask the SAM for its self-test status; raise SamSelfTestError (0x60) and friends on failure."""
        reply = self._expect(Command.GET_SAM_STATUS, (Sw3.SUCCESS,))
        return ReaderStatus(reply.sw3, SW3_TEXT[Sw3.SUCCESS])

    def sam_id(self) -> str:
        """The SAM module's ID, as printed on the reader's label."""
        return decode_sam_id(self._expect(Command.READ_SAM_ID, (Sw3.SUCCESS,)).data)

    def reset_sam(self) -> None:
        """Reset the SAM (after a self-test failure, before giving up on the reader)."""
        self._expect(Command.RESET_SAM, (Sw3.SUCCESS,))

    def find_card(self) -> bool:
        """寻卡: True when a card is in the field, False when none is (0x80)."""
        reply = self.transact(Command.FIND_CARD)
        if reply.sw3 == Sw3.FIND_FAILED and not (reply.sw1 or reply.sw2):
            return False
        if reply.sw1 or reply.sw2 or reply.sw3 != Sw3.CARD_FOUND:
            raise reply.error(Command.FIND_CARD.name)
        return True

    def _find_while_polling(self) -> bool:
        """find_card(), where a transient card-level status (a card sliding into place) means "not yet"."""
        try:
            return self.find_card()
        except SamStatusError as err:
            if not err.retryable:
                raise
            log.info("find card: %s; polling on", err)
            return False

    def select_card(self) -> None:
        """选卡: select the card found by find_card()."""
        self._expect(Command.SELECT_CARD, (Sw3.SUCCESS,))

    def read_identity_once(self) -> IdentityCard:
        """读基本信息: read and check the selected card's identity (one attempt at the card level)."""
        reply = self._expect(Command.READ_BASE_INFO, (Sw3.SUCCESS,), timeout=self.read_timeout)
        info = decode_base_info(reply.data)
        return decode_identity_text(info.text, info.photo_wlt)

    def read_identity(self, timeout: float) -> IdentityCard:
        """Wait up to `timeout` s for a card, then find, select and read it with bounded retries.

        Raises NoCardError when no card came, CardRemovedError when it left during the read, or the
        error of the last failed attempt.
        """
        deadline = time.monotonic() + timeout
        while not self._find_while_polling():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoCardError(f"未检测到身份证 / no ID card on the reader within {timeout:.1f} s")
            # Real readers are polled about once a second; faster polling only heats the RF field.
            if self._closed.wait(min(self.poll_interval, remaining)):
                raise IdCardConnectionError(f"身份证阅读器已关闭 / the ID card reader {self.name} is closed")
        last: IdCardError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                self.select_card()
                card = self.read_identity_once()
            except (SamStatusError, IdCardTimeoutError, IdCardProtocolError) as err:
                if not err.retryable:
                    raise
                last = err
                log.warning("reading the ID card failed (attempt %d of %d): %s", attempt, self.attempts, err)
                # A card that left the field shows as "no card" on the next find; anything else is retried.
                if not self.find_card():
                    raise CardRemovedError(
                        "身份证在读取过程中被移开，请重新放置 / the ID card was moved away while reading"
                    ) from err
                self.retries += 1
            else:
                log.info("read ID card %s", card.masked_id_number)
                return card
        assert last is not None
        raise last

    def decode_photo(self, card: IdentityCard) -> bytes:
        """The card's photo as BMP bytes, through the plugged-in WLT decoder."""
        return self.photo_decoder.decode(card.photo_wlt)
