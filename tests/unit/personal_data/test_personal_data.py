import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personal_data import bank_card, crypto, id_number


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("11010519491231002X", True),
        ("11010519491231002x", True),
        ("110105194912310021", False),  # wrong check digit
        ("11010519491331002X", False),  # month 13
        ("1101051949123100", False),  # too short
    ],
)
def test_id_number_validation(value: str, ok: bool) -> None:
    assert id_number.is_valid(value) is ok


def test_id_number_mask_keeps_first_and_last_four() -> None:
    assert id_number.mask("11010519491231002X") == "1101**********002X"


@given(st.text(max_size=30))
def test_id_validate_never_raises_anything_but_its_error(text: str) -> None:
    with contextlib.suppress(id_number.InvalidIdNumberError):
        id_number.validate(text)


def test_luhn_and_mask() -> None:
    assert bank_card.luhn_ok("6212345678901232")
    assert not bank_card.luhn_ok("6212345678901233")
    assert bank_card.mask("6212 3456 7890 1232") == "621234******1232"
    with pytest.raises(bank_card.InvalidCardNumberError):
        bank_card.validate("6212345678901233")


def test_sm4_gcm_round_trip_and_tamper_detection() -> None:
    key = crypto.DataKey.from_text(crypto.DataKey.generate_text())
    blob = crypto.encrypt_text(key, "11010519491231002X", "expert")
    assert b"11010519491231002X" not in blob
    assert crypto.decrypt_text(key, blob, "expert") == "11010519491231002X"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_text(key, blob[:-1] + bytes([blob[-1] ^ 1]), "expert")
    other = crypto.DataKey.from_text(crypto.DataKey.generate_text())
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_text(other, blob, "expert")


def test_lookup_hash_is_keyed() -> None:
    a = crypto.DataKey.from_text(crypto.DataKey.generate_text())
    b = crypto.DataKey.from_text(crypto.DataKey.generate_text())
    assert crypto.lookup_hash(a, "x") == crypto.lookup_hash(a, "x")
    assert crypto.lookup_hash(a, "x") != crypto.lookup_hash(b, "x")


@given(st.text(max_size=40))
def test_precomputed_lookup_hasher_matches_hmac_sm3(value: str) -> None:
    key = crypto.DataKey.from_text("test-only data key, never used in production")
    hasher = crypto.LookupHasher(key.lookup_key)
    expected = crypto.lookup_hash_reference(key, value)
    assert hasher(value) == expected
    assert hasher.many([value, value]) == [expected, expected]
    assert crypto.lookup_hash(key, value) == expected


def test_lookup_hasher_follows_rfc2104_for_keys_longer_than_a_block() -> None:
    import hmac  # noqa: PLC0415

    long_key = bytes(range(100))
    assert crypto.LookupHasher(long_key)("x") == hmac.new(long_key, b"x", "sm3").hexdigest()


def test_sealed_records_round_trip_and_refuse_tampering_or_another_label() -> None:
    key = crypto.DataKey.from_text(crypto.DataKey.generate_text())
    records = [b"11010519491231002X\x1f13900000000", b"", b"x"]
    blob = crypto.seal_records(key, records, b"page")
    assert b"11010519491231002X" not in blob
    assert crypto.open_records(key, blob, b"page") == records
    with pytest.raises(crypto.DecryptionError):
        crypto.open_records(key, blob, b"other")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_records(key, blob[:20] + bytes([blob[20] ^ 1]) + blob[21:], b"page")
    with pytest.raises(ValueError, match="separator"):
        crypto.seal_records(key, [b"a\x1eb"], b"page")


def _slow_rule(value: str) -> bool:
    """GB 11643 written out plainly: the reference the fast paths are checked against."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    try:
        dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return value[17] == id_number.check_digit(value[:17])


def _with_check_digit(region: int, birth: dt.date, sequence: int) -> str:
    first17 = f"{region:06d}{birth:%Y%m%d}{sequence:03d}"
    return first17 + id_number.check_digit(first17)


_VALID_IDS = st.builds(
    _with_check_digit,
    st.integers(100000, 999999),
    st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31)),
    st.integers(0, 999),
)


@settings(max_examples=500)
@given(st.text(alphabet="0123456789X", min_size=18, max_size=18) | _VALID_IDS)
def test_the_fast_id_check_agrees_with_the_plain_rule(value: str) -> None:
    assert id_number.is_valid_normalised(value) == _slow_rule(value)
    assert id_number.is_valid(value) == _slow_rule(value)
    if _slow_rule(value):
        assert id_number.validate(value) == value
        assert id_number.mask_normalised(value) == id_number.mask(value) == value[:4] + "*" * 10 + value[-4:]
