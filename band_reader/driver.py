"""Wristband UID reader over PC/SC: wait for the band the arm brings, read its UID, wait for it to leave."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from band_reader.errors import (
    BandReaderUnavailableError,
    BandUnreadableError,
    NoBandError,
)
from band_reader.protocol import GET_UID, parse_uid_response
from pcsc.session import CancellableContext, pcsc_errors_as

if TYPE_CHECKING:
    from band_reader.models import BandUid
    from pcsc.client import PcscContext

log = logging.getLogger("band_reader")

#: A tag held at the edge of the field answers 63 00 now and then; read it again this many times.
READ_ATTEMPTS: Final = 3

NO_BAND: Final = "未检测到手环 / no wristband at the reader"
BAND_STAYED: Final = "手环未离开读卡器 / the band did not leave the reader"


class BandUidReader:
    """Reads the UID of the wristband on a contactless PC/SC reader."""

    def __init__(self, reader: str | None = None, *, attempts: int = READ_ATTEMPTS) -> None:
        if attempts < 1:
            raise ValueError(f"BandUidReader attempts must be at least 1, got {attempts}")
        self.reader = reader
        self.attempts = attempts
        self._session = CancellableContext()

    def cancel(self) -> None:
        """Abort a wait in another thread (it raises NoBandError)."""
        self._session.cancel()

    def _run(self, timeout: float, *, want_uid: bool) -> BandUid:
        what = NO_BAND if want_uid else BAND_STAYED
        with (
            pcsc_errors_as(
                no_card=lambda _err: NoBandError(f"{what} within {timeout:.1f} s"),
                unavailable=lambda err: BandReaderUnavailableError(
                    f"手环读卡器不可用 / band reader unavailable: {err}"
                ),
                removed=lambda _err: NoBandError("手环在读取前离开 / the band left the reader before it was read"),
                failed=lambda err: BandUnreadableError(f"读取手环失败 / could not read the band: {err}"),
            ),
            self._session.open() as context,
        ):
            if not want_uid:
                context.wait_for_removal(context.resolve(self.reader), timeout)
                return ""
            reader, _atr = context.wait_for_card(self.reader, timeout)
            return self._read(context, reader)

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
