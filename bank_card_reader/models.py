"""What the bank card reader returns: the card number and what came with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from personal_data import bank_card as pan_rules

CardSource: TypeAlias = Literal["chip", "contactless", "swipe", "typed"]


@dataclass(frozen=True, slots=True)
class BankCardData:
    """A bank card's number (Luhn-checked), expiry YYMM and holder name when known, and how it was read."""

    pan: str
    expiry_yymm: str | None
    holder_name: str | None
    source: CardSource
    aid: str | None = None

    def __repr__(self) -> str:
        # The PAN never reaches a log line or a traceback in clear.
        return f"BankCardData(pan={self.masked!r}, source={self.source!r}, aid={self.aid!r})"

    __str__ = __repr__

    @property
    def masked(self) -> str:
        """The number as it may be shown: first 6 and last 4 digits (621234******1232)."""
        return pan_rules.mask(self.pan)

    @property
    def last4(self) -> str:
        """The last four digits."""
        return self.pan[-4:]
