"""Resident ID card (二代身份证) reader: SAM serial protocol driver, models, errors and simulator.

The kiosk codes against `IdCardReader.open(url).read_identity(timeout)` and `IdentityCard`; the
URL picks a real port (/dev/ttyUSB0), a simulator (socket://127.0.0.1:7101) or a pty.
"""

from __future__ import annotations

from id_card_reader.driver import IdCardReader
from id_card_reader.errors import (
    CardRemovedError,
    IdCardConnectionError,
    IdCardError,
    IdCardExpiredError,
    IdCardProtocolError,
    IdCardTimeoutError,
    IdentityDataError,
    NoCardError,
    PhotoDecoderUnavailableError,
    SamSelfTestError,
    SamStatusError,
)
from id_card_reader.models import IdentityCard, PhotoDecoder, PlaceholderPhotoDecoder, ReaderStatus

__all__ = [
    "CardRemovedError",
    "IdCardConnectionError",
    "IdCardError",
    "IdCardExpiredError",
    "IdCardProtocolError",
    "IdCardReader",
    "IdCardTimeoutError",
    "IdentityCard",
    "IdentityDataError",
    "NoCardError",
    "PhotoDecoder",
    "PhotoDecoderUnavailableError",
    "PlaceholderPhotoDecoder",
    "ReaderStatus",
    "SamSelfTestError",
    "SamStatusError",
]
