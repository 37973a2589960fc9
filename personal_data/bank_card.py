"""Bank card numbers (PAN): Luhn check and PCI DSS masking (first 6 / last 4)."""

from __future__ import annotations

MIN_PAN_LENGTH = 12
MAX_PAN_LENGTH = 19


class InvalidCardNumberError(ValueError):
    """A card number with non-digits, a wrong length or a failing Luhn check."""


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalise(pan: str) -> str:
    """Drop the spaces and dashes people type between digit groups."""
    return pan.replace(" ", "").replace("-", "").strip()


def validate(pan: str) -> str:
    """Return the normalised PAN, or raise InvalidCardNumberError saying what is wrong."""
    value = normalise(pan)
    if not value.isdigit():
        raise InvalidCardNumberError("卡号只能包含数字 / the card number may contain digits only")
    if not MIN_PAN_LENGTH <= len(value) <= MAX_PAN_LENGTH:
        raise InvalidCardNumberError(
            f"卡号应为{MIN_PAN_LENGTH}到{MAX_PAN_LENGTH}位 / the card number must have "
            f"{MIN_PAN_LENGTH} to {MAX_PAN_LENGTH} digits"
        )
    if not luhn_ok(value):
        raise InvalidCardNumberError("卡号有误，请核对 / the card number fails its check digit")
    return value


def mask(pan: str) -> str:
    """Show the first 6 and last 4 digits only: 621234******1232."""
    value = normalise(pan)
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]
