"""Issuing bank from the card's BIN (first six digits), for the masked card shown on the kiosk.

A short table of the commonest debit-card BINs of the large Chinese banks; unknown BINs show no name.
"""

from __future__ import annotations

_BINS = {
    "622848": "中国农业银行",
    "622845": "中国农业银行",
    "621700": "中国建设银行",
    "436742": "中国建设银行",
    "622202": "中国工商银行",
    "621226": "中国工商银行",
    "621661": "中国银行",
    "621785": "中国银行",
    "622588": "招商银行",
    "621483": "招商银行",
    "622262": "交通银行",
    "621799": "中国邮政储蓄银行",
}


def bank_name_for(pan: str) -> str:
    """The issuing bank's name, or an empty string if the BIN is not in the table."""
    return _BINS.get(pan[:6], "")
