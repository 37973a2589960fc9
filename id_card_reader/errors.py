"""Errors of the ID card reader: one root, a leaf per SAM status code and per link failure.

Every error carries a stable `key` the kiosk UI translates (user-facing failures are data), and
a bilingual message for logs and the technician's diagnostics. No message ever holds an ID number
in clear.
"""

from __future__ import annotations

from typing import ClassVar


class IdCardError(Exception):
    """Root of every error raised by id_card_reader."""

    key: ClassVar[str] = "id_card_error"
    #: True when trying the same step again may succeed (a link glitch, a card moved a little).
    retryable: ClassVar[bool] = False


# --- the link and the frames -------------------------------------------------------------------


class IdCardConnectionError(IdCardError):
    """The serial port or socket could not be opened, or was lost."""

    key = "reader_unavailable"


class IdCardTimeoutError(IdCardError):
    """The reader did not send a complete reply within the command's time limit."""

    key = "reader_timeout"
    retryable = True


class IdCardProtocolError(IdCardError):
    """Bytes that are not a well-formed SAM frame or reply."""

    key = "reader_protocol_error"
    retryable = True


class FrameChecksumError(IdCardProtocolError):
    """A frame whose XOR check byte does not match its contents."""


class FrameFormatError(IdCardProtocolError):
    """A frame with an impossible length or a body too short for its kind."""


# --- the card's data ---------------------------------------------------------------------------


class IdentityDataError(IdCardError):
    """The card answered, but its 256-byte text is not a valid identity (field named in the message)."""

    key = "id_card_data_invalid"


class UnsupportedCardTypeError(IdentityDataError):
    """A card with another text layout (e.g. the foreigner's permanent residence card)."""

    key = "id_card_type_unsupported"


class IdCardExpiredError(IdCardError):
    """The card's validity period has ended (or not yet begun) on the day of the check."""

    key = "id_card_expired"


class PhotoDecoderUnavailableError(IdCardError):
    """No WLT photo decoder is installed: the vendor's library must be plugged in to see the photo."""

    key = "photo_decoder_unavailable"


# --- the reading flow ---------------------------------------------------------------------------


class CardRemovedError(IdCardError):
    """The card left the reader while it was being read."""

    key = "id_card_removed"


# --- SW3 status codes (section 1.4 of the hardware protocols) ----------------------------------


class SamStatusError(IdCardError):
    """The reader answered with a SW3 status other than success."""

    key = "id_card_reader_status"
    sw3: int = 0

    def __init__(self, message: str, *, sw3: int | None = None) -> None:
        super().__init__(message)
        if sw3 is not None:
            self.sw3 = sw3


class NoSuchItemError(SamStatusError):
    """SW3 0x91: the card has no such item."""

    sw3 = 0x91


class TerminalChecksumError(SamStatusError):
    """SW3 0x10: the reader saw a bad checksum in our frame (line noise); resending helps."""

    sw3 = 0x10
    retryable = True


class TerminalLengthError(SamStatusError):
    """SW3 0x11: the reader saw a bad length in our frame (line noise); resending helps."""

    sw3 = 0x11
    retryable = True


class BadCommandError(SamStatusError):
    """SW3 0x21: the reader does not know this command or parameter."""

    sw3 = 0x21


class UnauthorisedOperationError(SamStatusError):
    """SW3 0x23: the operation is not allowed in the reader's state."""

    sw3 = 0x23


class UnrecognisedReaderError(SamStatusError):
    """SW3 0x24: the reader reports an error it does not classify."""

    sw3 = 0x24


class CardAuthenticatesSamError(SamStatusError):
    """SW3 0x31: the card failed to authenticate the SAM (often a card moved during reading)."""

    key = "id_card_unreadable"
    sw3 = 0x31
    retryable = True


class SamAuthenticatesCardError(SamStatusError):
    """SW3 0x32: the SAM failed to authenticate the card (a damaged or counterfeit card)."""

    key = "id_card_unreadable"
    sw3 = 0x32
    retryable = True


class InformationVerificationError(SamStatusError):
    """SW3 0x33: the card's information failed verification."""

    key = "id_card_unreadable"
    sw3 = 0x33
    retryable = True


class FingerprintVerificationError(SamStatusError):
    """SW3 0x37: fingerprint verification error."""

    sw3 = 0x37


class InformationLengthError(SamStatusError):
    """SW3 0x3F: the card's information has a wrong length."""

    key = "id_card_unreadable"
    sw3 = 0x3F


class UnrecognisedCardTypeError(SamStatusError):
    """SW3 0x40: the card on the reader is not a resident ID card."""

    key = "id_card_type_unsupported"
    sw3 = 0x40


class ReadCardFailedError(SamStatusError):
    """SW3 0x41: reading the card failed (most often: the card moved or left the field)."""

    key = "id_card_unreadable"
    sw3 = 0x41
    retryable = True


class GetRandomFailedError(SamStatusError):
    """SW3 0x47: the SAM could not get a random challenge from the card."""

    key = "id_card_unreadable"
    sw3 = 0x47
    retryable = True


class SamSelfTestError(SamStatusError):
    """SW3 0x60: the SAM failed its self-test and accepts no commands; the reader needs service."""

    key = "reader_fault"
    sw3 = 0x60


class SamNotAuthorisedError(SamStatusError):
    """SW3 0x66: the SAM is not authorised; the reader needs service."""

    key = "reader_fault"
    sw3 = 0x66


class NoCardError(SamStatusError):
    """SW3 0x80, or no card within the time allowed: nothing is on the reader."""

    key = "no_id_card"
    sw3 = 0x80


class SelectCardFailedError(SamStatusError):
    """SW3 0x81: a card was found but could not be selected."""

    key = "id_card_unreadable"
    sw3 = 0x81
    retryable = True


SW3_ERRORS: dict[int, type[SamStatusError]] = {
    cls.sw3: cls
    for cls in (
        NoSuchItemError,
        TerminalChecksumError,
        TerminalLengthError,
        BadCommandError,
        UnauthorisedOperationError,
        UnrecognisedReaderError,
        CardAuthenticatesSamError,
        SamAuthenticatesCardError,
        InformationVerificationError,
        FingerprintVerificationError,
        InformationLengthError,
        UnrecognisedCardTypeError,
        ReadCardFailedError,
        GetRandomFailedError,
        SamSelfTestError,
        SamNotAuthorisedError,
        NoCardError,
        SelectCardFailedError,
    )
}
