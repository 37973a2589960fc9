"""Errors of the ID card reader: one root, one error for every SAM status (carrying the Sw3 code), one per link failure.

Every error carries a stable `key` the kiosk UI translates (user-facing failures are data), and
a bilingual message for logs and the technician's diagnostics. No message ever holds an ID number
in clear.
"""

from __future__ import annotations

import enum
from typing import Final


class IdCardError(Exception):
    """Root of every error raised by id_card_reader."""

    key: str = "id_card_error"
    #: True when trying the same step again may succeed (a link glitch, a card moved a little).
    retryable: bool = False


# --- the link and the frames -------------------------------------------------------------------


class IdCardConnectionError(IdCardError):
    """The serial port or socket could not be opened, or was lost."""

    key = "reader_unavailable"


class IdCardTimeoutError(IdCardError):
    """The reader did not send a complete reply within the command's time limit."""

    key = "reader_timeout"
    retryable = True


class IdCardProtocolError(IdCardError):
    """Bytes that are not a well-formed SAM frame or reply."""

    key = "reader_protocol_error"
    retryable = True


class FrameChecksumError(IdCardProtocolError):
    """A frame whose XOR check byte does not match its contents."""


class FrameFormatError(IdCardProtocolError):
    """A frame with an impossible length or a body too short for its kind."""


# --- the card's data ---------------------------------------------------------------------------


class IdentityDataError(IdCardError):
    """The card answered, but its 256-byte text is not a valid identity (field named in the message)."""

    key = "id_card_data_invalid"


class UnsupportedCardTypeError(IdentityDataError):
    """A card with another text layout (e.g. the foreigner's permanent residence card)."""

    key = "id_card_type_unsupported"


class IdCardExpiredError(IdCardError):
    """The card's validity period has ended (or not yet begun) on the day of the check."""

    key = "id_card_expired"


class PhotoDecoderUnavailableError(IdCardError):
    """No WLT photo decoder is installed: the vendor's library must be plugged in to see the photo."""

    key = "photo_decoder_unavailable"


# --- the reading flow ---------------------------------------------------------------------------


class CardRemovedError(IdCardError):
    """The card left the reader while it was being read."""

    key = "id_card_removed"


# --- SW3 status codes (section 1.4 of the hardware protocols) ----------------------------------


class Sw3(enum.IntEnum):
    """SW3 codes the SAM returns: success, card found, and the failures a SamStatusError carries."""

    SUCCESS = 0x90
    CARD_FOUND = 0x9F
    NO_SUCH_ITEM = 0x91
    TERMINAL_CHECKSUM = 0x10
    TERMINAL_LENGTH = 0x11
    BAD_COMMAND = 0x21
    UNAUTHORISED = 0x23
    UNRECOGNISED = 0x24
    CARD_AUTH_SAM_FAILED = 0x31
    SAM_AUTH_CARD_FAILED = 0x32
    INFO_VERIFY_FAILED = 0x33
    FINGERPRINT_FAILED = 0x37
    INFO_LENGTH = 0x3F
    UNKNOWN_CARD_TYPE = 0x40
    READ_FAILED = 0x41
    GET_RANDOM_FAILED = 0x47
    SAM_SELF_TEST_FAILED = 0x60
    SAM_NOT_AUTHORISED = 0x66
    FIND_FAILED = 0x80
    SELECT_FAILED = 0x81


SW3_TEXT: Final[dict[int, str]] = {
    0x90: "成功 / success",
    0x9F: "找到身份证 / card found",
    0x91: "无此项内容 / no such item on the card",
    0x10: "接收业务终端数据的校验和错 / checksum error in the terminal's frame",
    0x11: "接收业务终端数据的长度错 / length error in the terminal's frame",
    0x21: "接收业务终端的命令错误 / bad command",
    0x23: "越权操作 / unauthorised operation",
    0x24: "无法识别的错误 / unrecognised error",
    0x31: "卡认证机具失败 / card failed to authenticate the SAM",
    0x32: "机具认证卡失败 / SAM failed to authenticate the card",
    0x33: "信息验证错误 / information verification failed",
    0x37: "指纹信息验证错误 / fingerprint verification error",
    0x3F: "信息长度错误 / information length error",
    0x40: "无法识别的卡类型 / unrecognised card type",
    0x41: "读卡操作失败 / read-card operation failed",
    0x47: "取随机数失败 / get-random failed",
    0x60: "SAM_A自检失败 / SAM self-test failed",
    0x66: "SAM_A没经过授权 / SAM not authorised",
    0x80: "找卡不成功 / no card found",
    0x81: "选卡不成功 / select card failed",
}

#: The user-facing key of each failed status (the kiosk translates it); the rest are reader_status.
_STATUS_KEYS: Final[dict[int, str]] = {
    Sw3.CARD_AUTH_SAM_FAILED: "id_card_unreadable",
    Sw3.SAM_AUTH_CARD_FAILED: "id_card_unreadable",
    Sw3.INFO_VERIFY_FAILED: "id_card_unreadable",
    Sw3.INFO_LENGTH: "id_card_unreadable",
    Sw3.READ_FAILED: "id_card_unreadable",
    Sw3.GET_RANDOM_FAILED: "id_card_unreadable",
    Sw3.SELECT_FAILED: "id_card_unreadable",
    Sw3.UNKNOWN_CARD_TYPE: "id_card_type_unsupported",
    Sw3.SAM_SELF_TEST_FAILED: "reader_fault",
    Sw3.SAM_NOT_AUTHORISED: "reader_fault",
    Sw3.FIND_FAILED: "no_id_card",
}

#: Statuses where sending the command again may succeed: line noise in our frame (0x10, 0x11) or a
#: card that moved a little during the read.
RETRYABLE_STATUSES: Final = frozenset(
    {
        Sw3.TERMINAL_CHECKSUM,
        Sw3.TERMINAL_LENGTH,
        Sw3.CARD_AUTH_SAM_FAILED,
        Sw3.SAM_AUTH_CARD_FAILED,
        Sw3.INFO_VERIFY_FAILED,
        Sw3.READ_FAILED,
        Sw3.GET_RANDOM_FAILED,
        Sw3.SELECT_FAILED,
    }
)


class SamStatusError(IdCardError):
    """The reader answered with a SW3 status other than success; ``status`` says which (an Sw3, or the raw int).

    One class for every status: its ``key`` and ``retryable`` follow from the status (tables above),
    so a caller matches ``err.status`` rather than a class per code.
    """

    key = "id_card_reader_status"

    def __init__(self, message: str, *, sw3: int) -> None:
        super().__init__(message)
        self.status: Sw3 | int = Sw3(sw3) if sw3 in Sw3._value2member_map_ else sw3
        self.key = _STATUS_KEYS.get(self.status, type(self).key)
        self.retryable = self.status in RETRYABLE_STATUSES

    @property
    def sw3(self) -> int:
        """The status byte."""
        return int(self.status)

    @classmethod
    def from_status(cls, sw3: int, message: str) -> SamStatusError:
        """The error for a failed status: NoCardError for 0x80, SamSelfTestError for 0x60, else this class."""
        if sw3 == Sw3.FIND_FAILED:
            return NoCardError(message)
        if sw3 == Sw3.SAM_SELF_TEST_FAILED:
            return SamSelfTestError(message)
        return cls(message, sw3=sw3)


class SamSelfTestError(SamStatusError):
    """SW3 0x60: the SAM failed its self-test and accepts no commands; the reader needs service.

    Kept as its own class because the kiosk reports it as a device fault, not an unreadable card.
    """

    def __init__(self, message: str, *, sw3: int = Sw3.SAM_SELF_TEST_FAILED) -> None:
        super().__init__(message, sw3=sw3)


class NoCardError(SamStatusError):
    """SW3 0x80, or no card within the time allowed: nothing is on the reader.

    Kept as its own class because it is not a failure: the kiosk keeps waiting.
    """

    def __init__(self, message: str, *, sw3: int = Sw3.FIND_FAILED) -> None:
        super().__init__(message, sw3=sw3)
