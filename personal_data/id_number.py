"""Chinese resident ID numbers (GB 11643-1999): check digit, birth date and masking."""

from __future__ import annotations

import datetime as dt
import operator
import re

LENGTH = 18
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]$")
_ASCII_ID = re.compile(r"[0-9]{17}[0-9X]\Z")
_ASCII_IDS = re.compile(r"(?:[0-9]{17}[0-9X])*")  # many ID numbers written one after the other
# The check sum over the ASCII codes of the 17 digits, minus what the '0' offset (48) adds to it.
_ID_OFFSET = 48 * sum(_WEIGHTS)
# Check digits of a whole column at once: position k's digit d becomes the byte (w_k * d) mod 11, so
# the 17 positions of one ID number add up to at most 170 and a big integer adds one byte per row
# for all rows together without carries; the sum mod 11 then names the check character.
_WEIGHTED_DIGIT = tuple(bytes.maketrans(b"0123456789", bytes(w * d % 11 for d in range(10))) for w in _WEIGHTS)
_SUM_TO_CHECK = bytes(ord(_CHECK_CHARS[total % 11]) for total in range(256))
_MASK_MIDDLE = "*" * 10


class InvalidIdNumberError(ValueError):
    """An ID number that is not 18 characters, has a bad birth date or a wrong check digit."""


def check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalise(id_number: str) -> str:
    """Strip spaces and upper-case a trailing x, as experts and spreadsheets type it."""
    return id_number.strip().replace(" ", "").upper()


class BirthDates:
    """Memo of YYYYMMDD strings that are real dates (100 000 experts share a few thousand birthdays)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        """True when `text` (YYYYMMDD) is a real date."""
        known = self._known.get(text)
        if known is None:
            try:
                dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
                known = True
            except ValueError:
                known = False
            self._known[text] = known
        return known


_SHARED_BIRTH_DATES = BirthDates()


def is_valid_normalised(value: str, birth_ok: BirthDates = _SHARED_BIRTH_DATES) -> bool:
    """True when an already-normalised ASCII ID number passes the rule (the fast path of validate())."""
    if not _ASCII_ID.match(value):
        return False
    total = sum(map(operator.mul, value.encode("ascii")[:17], _WEIGHTS)) - _ID_OFFSET
    return value[17] == _CHECK_CHARS[total % 11] and birth_ok(value[6:14])


def all_valid_normalised(joined: str, count: int, birth_ok: BirthDates) -> bool:
    """True when `joined` is `count` normalised ASCII ID numbers back to back and every one is valid.

    The whole-column path of an import: shape by one regex over the whole string, birth dates once
    per distinct date, check digits for all rows at once (see _WEIGHTED_DIGIT): a few milliseconds
    for 100 000 ID numbers. False says only "not all": validate() each one to learn which and why.
    """
    if len(joined) != LENGTH * count or not joined.isascii() or _ASCII_IDS.fullmatch(joined) is None:
        return False
    if not all(map(birth_ok, {joined[i : i + 8] for i in range(6, len(joined), LENGTH)})):
        return False
    data = joined.encode("ascii")
    total = 0
    for position, table in enumerate(_WEIGHTED_DIGIT):
        total += int.from_bytes(data[position::LENGTH].translate(table), "big")
    return total.to_bytes(count, "big").translate(_SUM_TO_CHECK) == data[17::LENGTH]


def validate(id_number: str) -> str:
    """Return the normalised ID number, or raise InvalidIdNumberError saying what is wrong."""
    if is_valid_normalised(id_number):
        return id_number
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


def mask_normalised(value: str) -> str:
    """mask() for an already-normalised 18-character ID number (the whole-column path of an import)."""
    return value[:4] + _MASK_MIDDLE + value[-4:]
