"""Wristband UID reader over PC/SC: wait for the band the arm brings, read its UID, wait for it to leave."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final

from band_reader.errors import (
    BandReaderError,
    BandReaderUnavailableError,
    BandUnreadableError,
    NoBandError,
)
from band_reader.protocol import GET_UID, parse_uid_response
from pcsc.client import PcscContext
from pcsc.errors import (
    CardAbsentError,
    CardWaitTimeoutError,
    PcscError,
    PcscServiceUnavailableError,
    ReaderNotFoundError,
    WaitCancelledError,
)

if TYPE_CHECKING:
    from band_reader.models import BandUid

log = logging.getLogger("band_reader")

#: A tag held at the edge of the field answers 63 00 now and then; read it again this many times.
READ_ATTEMPTS: Final = 3


class BandUidReader:
    """Reads the UID of the wristband on a contactless PC/SC reader."""

    def __init__(self, reader: str | None = None, *, attempts: int = READ_ATTEMPTS) -> None:
        if attempts < 1:
            raise ValueError(f"BandUidReader attempts must be at least 1, got {attempts}")
        self.reader = reader
        self.attempts = attempts
        self._context: PcscContext | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Abort a wait in another thread (it raises NoBandError)."""
        with self._lock:
            if self._context is not None:
                self._context.cancel()

    def _run(self, timeout: float, *, want_uid: bool) -> BandUid:
        try:
            with PcscContext() as context:
                with self._lock:
                    self._context = context
                try:
                    if not want_uid:
                        context.wait_for_removal(context.resolve(self.reader), timeout)
                        return ""
                    reader, _atr = context.wait_for_card(self.reader, timeout)
                    return self._read(context, reader)
                finally:
                    with self._lock:
                        self._context = None
        except BandReaderError:
            raise
        except (CardWaitTimeoutError, WaitCancelledError) as err:
            what = (
                "未检测到手环 / no wristband at the reader"
                if want_uid
                else "手环未离开读卡器 / the band did not leave the reader"
            )
            raise NoBandError(f"{what} within {timeout:.1f} s") from err
        except (PcscServiceUnavailableError, ReaderNotFoundError) as err:
            raise BandReaderUnavailableError(f"手环读卡器不可用 / band reader unavailable: {err}") from err
        except CardAbsentError as err:
            raise NoBandError("手环在读取前离开 / the band left the reader before it was read") from err
        except PcscError as err:
            raise BandUnreadableError(f"读取手环失败 / could not read the band: {err}") from err

    def _read(self, context: PcscContext, reader: str) -> BandUid:
        last: BandUnreadableError | None = None
        for attempt in range(1, self.attempts + 1):
            with context.connect(reader) as channel:
                response = channel.exchange(GET_UID)
            try:
                uid = parse_uid_response(response.data, response.sw1, response.sw2)
            except BandUnreadableError as err:
                last = err
                log.warning("band read attempt %d of %d: %s", attempt, self.attempts, err)
                continue
            log.info("band %s at %s", uid, reader)
            return uid
        assert last is not None
        raise last

    def read_uid(self, timeout: float) -> BandUid:
        """Wait up to `timeout` s for a band, then return its UID (upper-case hex)."""
        return self._run(timeout, want_uid=True)

    def wait_removed(self, timeout: float) -> None:
        """Wait up to `timeout` s for the band to leave the reader (NoBandError if it stays)."""
        self._run(timeout, want_uid=False)
