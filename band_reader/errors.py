"""Errors of the wristband UID reader: one root and the leaves the dispensing flow acts on."""

from __future__ import annotations

from typing import ClassVar


class BandReaderError(Exception):
    """Root of every error raised by band_reader."""

    key: ClassVar[str] = "band_reader_error"


class BandReaderUnavailableError(BandReaderError):
    """The PC/SC service or the named reader is not there."""

    key = "band_reader_unavailable"


class NoBandError(BandReaderError):
    """No wristband came to the reader within the time allowed (or it left before it was read)."""

    key = "no_band"


class BandUnreadableError(BandReaderError):
    """A band is there but its UID could not be read (63 00, a mute tag, a lost link)."""

    key = "band_unreadable"


class UnsupportedBandError(BandReaderError):
    """The reader or tag does not support GET DATA (6A 81): wrong tag type or reader firmware."""

    key = "band_unsupported"


class BandProtocolError(BandReaderError):
    """An answer that is not a UID with 90 00 (bad length, unexpected status word)."""

    key = "band_unreadable"
