"""Errors of the bank card reader: one root, leaves the kiosk shows as different screens."""

from __future__ import annotations

from typing import ClassVar


class BankCardError(Exception):
    """Root of every error raised by bank_card_reader."""

    key: ClassVar[str] = "bank_card_error"


class ReaderUnavailableError(BankCardError):
    """The PC/SC service or the named reader is not there."""

    key = "card_reader_unavailable"


class NoCardPresentError(BankCardError):
    """No card was inserted or tapped within the time allowed."""

    key = "no_bank_card"


class CardUnreadableError(BankCardError):
    """A card is there but its number could not be read (dead chip, removed, unknown application)."""

    key = "card_unreadable"


class NoSupportedApplicationError(CardUnreadableError):
    """The card holds none of the payment applications we accept (UnionPay or international)."""


class CardRemovedError(CardUnreadableError):
    """The card left the reader during the read."""


class CardDataError(CardUnreadableError):
    """The card answered with data that is not valid BER-TLV or lacks the fields we need."""


class TlvError(CardDataError):
    """Bytes that are not valid BER-TLV (the message says at which offset)."""


class InvalidCardNumberError(BankCardError):
    """A card number that fails its length or Luhn check, or a swipe/typed entry that holds none."""

    key = "card_number_invalid"
