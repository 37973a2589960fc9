"""Public ids of check-ins and needs-staff cases: random, and never mistaken for a personal number.

Sixteen random hex characters hold a run of twelve or more digits in about one id of a hundred, and
the masking of logs and audit details (log_masking) stars such a run as a possible bank card number:
the id would then be lost from its own audit row and log lines. The hex is written in groups of four
(`ci_1a2b_3c4d_5e6f_7a8b`), so no run of digits is longer than four.
"""

from __future__ import annotations

import secrets

RANDOM_BYTES = 8  # 64 bits: unguessable, and unique in practice (the column is unique besides)


def format_public_id(prefix: str, raw: bytes) -> str:
    """`prefix` and `raw` as hex in groups of four characters joined by '_'."""
    text = raw.hex()
    return prefix + "_".join(text[i : i + 4] for i in range(0, len(text), 4))


def new_public_id(prefix: str) -> str:
    """A fresh random public id with `prefix` ("ci_", "case_")."""
    return format_public_id(prefix, secrets.token_bytes(RANDOM_BYTES))
