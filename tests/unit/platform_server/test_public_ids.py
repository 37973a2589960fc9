"""Public ids never look like an ID or card number to the masking of logs and audit details."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from platform_server.log_masking import mask_sensitive
from platform_server.services.public_ids import RANDOM_BYTES, format_public_id, new_public_id


@given(st.binary(min_size=RANDOM_BYTES, max_size=RANDOM_BYTES), st.sampled_from(["ci_", "case_"]))
def test_no_id_is_masked_whatever_its_random_bytes(raw: bytes, prefix: str) -> None:
    public_id = format_public_id(prefix, raw)
    assert mask_sensitive(public_id) == public_id
    assert mask_sensitive(f'{{"case": "{public_id}", "reason": "x"}}') == f'{{"case": "{public_id}", "reason": "x"}}'


def test_all_digit_bytes_would_be_masked_as_plain_hex_but_not_in_groups() -> None:
    raw = bytes.fromhex("1234567890123456")
    assert mask_sensitive("case_" + raw.hex()) != "case_" + raw.hex()  # what happened ~1 % of the time
    assert mask_sensitive(format_public_id("case_", raw)) == "case_1234_5678_9012_3456"


def test_fresh_ids_fit_the_column_and_the_check_in_id_field() -> None:
    shape = re.compile(r"[A-Za-z0-9_]{1,32}")  # grpc_api.limits: check_in_id
    ids = {new_public_id("ci_") for _ in range(200)}
    assert len(ids) == 200
    assert all(shape.fullmatch(i) and i.startswith("ci_") for i in ids)
    assert len(new_public_id("case_")) <= 32  # the public_id columns are String(32)
