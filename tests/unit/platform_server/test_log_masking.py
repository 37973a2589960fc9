from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from platform_server.log_masking import SensitiveDataFilter, mask_sensitive
from tests.unit.platform_server.support import luhn_pan, make_id


def test_masks_ids_and_cards_in_text() -> None:
    id_value = make_id(7)
    pan = luhn_pan()
    text = mask_sensitive(f"id={id_value} card {pan} room 1208 at 2025-06-01")
    assert id_value not in text
    assert pan not in text
    assert id_value[:4] + "*" * 10 + id_value[-4:] in text
    assert pan[:6] in text
    assert "room 1208" in text


@given(st.text(alphabet="0123456789", min_size=12, max_size=19), st.text(max_size=20), st.text(max_size=20))
def test_no_long_digit_run_survives(digits: str, before: str, after: str) -> None:
    masked = mask_sensitive(f"{before} {digits} {after}")
    assert f" {digits} " not in masked


def test_filter_masks_args_and_exceptions(caplog: object) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %s", (luhn_pan(),), None)
    SensitiveDataFilter().filter(record)
    assert luhn_pan() not in record.getMessage()
