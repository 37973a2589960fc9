"""Spreadsheet cells that must stay text: one rule for every export (check-ins, fees, the audit)."""

from __future__ import annotations

from typing import Any

# Cells a spreadsheet program would read as a formula (OWASP "CSV injection"): a name or organisation
# such as =HYPERLINK("http://x","y") must come out as that text, never as a formula or a link.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: Any) -> Any:
    """A text cell that starts like a formula, prefixed with ' (CSV); numbers, dates and flags unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
