"""Logging set-up with a filter that masks ID-number-like and card-number-like tokens.

Defence in depth: code never formats an ID or card number into a log message in the first place;
this filter catches the one that slips through (an exception text, a third-party message).
"""

from __future__ import annotations

import logging
import re

# 18-character ID numbers (17 digits and a digit or X), and 12-19 digit runs that could be card numbers.
# Digit runs inside longer digit runs are not split: the lookarounds keep the match whole.
_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_CARD_LIKE = re.compile(r"(?<!\d)(\d{6})\d{2,9}(\d{4})(?!\d)")


def mask_sensitive(text: str) -> str:
    """Replace ID-like tokens by 1101**********1234 and card-like runs by first6****last4."""
    text = _ID_LIKE.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(2), text)
    return _CARD_LIKE.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 10) + m.group(2), text)


class SensitiveDataFilter(logging.Filter):
    """Masks personal numbers in the formatted message of every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message (and exception text) with masked numbers; never drop it."""
        message = record.getMessage()
        masked = mask_sensitive(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_sensitive(record.exc_text)
        return True


def configure_logging(level: str = "INFO", log_file: str | None = None) -> None:
    """Root logging to stderr (and optionally a file), every handler behind the masking filter."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.addFilter(SensitiveDataFilter())
        handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter at every start-up
