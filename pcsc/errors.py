"""Errors of the PC/SC layer: the service, the reader, the card link, the private daemon."""

from __future__ import annotations


class PcscError(Exception):
    """Root of every error raised by pcsc."""

    def __init__(self, message: str, *, hresult: int | None = None) -> None:
        super().__init__(message)
        self.hresult = hresult


class PcscServiceUnavailableError(PcscError):
    """pcscd is not running or not reachable on the socket in PCSCLITE_CSOCK_NAME."""


class ReaderNotFoundError(PcscError):
    """No reader matches the configured name (the message lists the readers there are)."""


class CardWaitTimeoutError(PcscError):
    """No card arrived (or left) within the time allowed."""


class WaitCancelledError(PcscError):
    """A wait was cancelled from another thread (the kiosk's cancel button)."""


class CardAbsentError(PcscError):
    """The card is not in the reader, or left it during a command."""


class CardUnresponsiveError(PcscError):
    """A card is in the reader but does not answer reset (mute, upside down, or dead)."""


class CardTransmitError(PcscError):
    """An APDU exchange failed for another reason; the message carries the PC/SC code."""


class PcscDaemonError(PcscError):
    """The private pcscd for tests and demos could not be started (the message says why)."""


class VirtualCardError(PcscError):
    """A virtual card could not be connected to its vpcd slot."""
