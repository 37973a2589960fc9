"""What the wristband reader returns: the band's UID as upper-case hex (e.g. "04A22B1A5C3F80")."""

from __future__ import annotations

from typing import TypeAlias

#: A band UID: 8, 14 or 20 upper-case hex digits (4, 7 or 10 bytes), in the order the reader gives them.
BandUid: TypeAlias = str
