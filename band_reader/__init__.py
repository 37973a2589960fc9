"""Wristband UID reader: PC/SC GET DATA (FF CA 00 00 00) on the contactless reader at the arm."""

from __future__ import annotations

from band_reader.driver import BandUidReader
from band_reader.errors import (
    BandProtocolError,
    BandReaderError,
    BandReaderUnavailableError,
    BandUnreadableError,
    NoBandError,
    UnsupportedBandError,
)
from band_reader.models import BandUid
from band_reader.protocol import parse_uid_response

__all__ = [
    "BandProtocolError",
    "BandReaderError",
    "BandReaderUnavailableError",
    "BandUid",
    "BandUidReader",
    "BandUnreadableError",
    "NoBandError",
    "UnsupportedBandError",
    "parse_uid_response",
]
