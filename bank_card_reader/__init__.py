"""Bank card reading for the evaluation fee: EMV/PBOC chip and contactless over PC/SC, swipe and typed fallbacks.

The kiosk codes against `BankCardReader(reader).read_card(timeout)`, `parse_swipe(text)` and
`parse_typed(text)`, all returning a Luhn-checked `BankCardData` whose `masked` form is the only
one ever shown or logged.
"""

from __future__ import annotations

from bank_card_reader.driver import BankCardReader, read_emv_card
from bank_card_reader.errors import (
    BankCardError,
    CardDataError,
    CardRemovedError,
    CardUnreadableError,
    InvalidCardNumberError,
    NoCardPresentError,
    NoSupportedApplicationError,
    ReaderUnavailableError,
    TlvError,
)
from bank_card_reader.models import BankCardData, CardSource
from bank_card_reader.protocol import parse_swipe, parse_typed

__all__ = [
    "BankCardData",
    "BankCardError",
    "BankCardReader",
    "CardDataError",
    "CardRemovedError",
    "CardSource",
    "CardUnreadableError",
    "InvalidCardNumberError",
    "NoCardPresentError",
    "NoSupportedApplicationError",
    "ReaderUnavailableError",
    "TlvError",
    "parse_swipe",
    "parse_typed",
    "read_emv_card",
]
