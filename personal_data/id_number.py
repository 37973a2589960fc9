"""Chinese resident ID numbers (GB 11643-1999): check digit, birth date and masking."""

from __future__ import annotations

import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]$")


class InvalidIdNumberError(ValueError):
    """An ID number that is not 18 characters, has a bad birth date or a wrong check digit."""


def check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalise(id_number: str) -> str:
    """Strip spaces and upper-case a trailing x, as experts and spreadsheets type it."""
    return id_number.strip().replace(" ", "").upper()


def validate(id_number: str) -> str:
    """Return the normalised ID number, or raise InvalidIdNumberError saying what is wrong."""
    value = normalise(id_number)
    if not _SHAPE.match(value):
        raise InvalidIdNumberError("身份证号应为18位（前17位数字，末位数字或X） / ID number must be 18 characters")
    try:
        dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError as err:
        raise InvalidIdNumberError("身份证号中的出生日期无效 / the birth date in the ID number is not a date") from err
    expected = check_digit(value[:17])
    if value[17] != expected:
        raise InvalidIdNumberError("身份证号校验位错误 / the ID number's check digit is wrong")
    return value


def is_valid(id_number: str) -> bool:
    """True when validate() would accept the ID number."""
    try:
        validate(id_number)
    except InvalidIdNumberError:
        return False
    return True


def mask(id_number: str) -> str:
    """Show the first 4 and last 4 characters only: 1101**********1234."""
    value = normalise(id_number)
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]
