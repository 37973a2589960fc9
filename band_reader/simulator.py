"""A virtual MIFARE wristband as a contactless reader presents it over PC/SC (for vpcd)."""

from __future__ import annotations

from typing import Final

#: The ATR a PC/SC contactless reader synthesises for MIFARE Classic 1K (PC/SC part 3).
MIFARE_CLASSIC_1K_ATR: Final = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


class MifareBand:
    """A wristband with a given UID: answers GET DATA (FF CA 00 00 Le) as the reader does."""

    def __init__(self, uid: str, *, fail_reads: int = 0, unsupported: bool = False) -> None:
        raw = bytes.fromhex(uid)
        if len(raw) not in (4, 7, 10):
            raise ValueError(f"a MIFARE UID has 4, 7 or 10 bytes, got {len(raw)}")
        self.uid = raw.hex().upper()
        self._raw = raw
        #: The next `fail_reads` GET DATA commands answer 63 00 (the reader lost the card).
        self.fail_reads = fail_reads
        #: Answer 6A 81 (function not supported), like a reader without GET DATA.
        self.unsupported = unsupported

    def __repr__(self) -> str:
        return f"MifareBand(uid={self.uid!r})"

    @property
    def atr(self) -> bytes:
        """MIFARE Classic 1K ATR."""
        return MIFARE_CLASSIC_1K_ATR

    def reset(self) -> None:
        """Nothing to forget."""

    def transmit(self, apdu: bytes) -> bytes:
        """FF CA 00 00 Le → UID 90 00; a short Le → 6C len; other pseudo-APDUs → 6A 81 / 6D 00."""
        if len(apdu) < 4 or apdu[0] != 0xFF:
            return b"\x6e\x00"
        if apdu[1] != 0xCA:
            return b"\x6d\x00"
        if self.unsupported or apdu[2] != 0x00:
            return b"\x6a\x81"
        if self.fail_reads > 0:
            self.fail_reads -= 1
            return b"\x63\x00"
        le = apdu[4] if len(apdu) >= 5 else 0
        if le and le < len(self._raw):
            return bytes([0x6C, len(self._raw)])
        return self._raw + b"\x90\x00"
