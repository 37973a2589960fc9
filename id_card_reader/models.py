"""What the ID card reader returns: the identity on the card, the reader's status, the photo decoder."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from id_card_reader.errors import PhotoDecoderUnavailableError
from personal_data import id_number as id_rules

if TYPE_CHECKING:
    import datetime as dt

SEX_NAMES: Final[dict[str, str]] = {
    "0": "未知 / unknown",
    "1": "男 / male",
    "2": "女 / female",
    "9": "未说明 / unspecified",
}

# GB/T 3304 nation codes as printed on the card (01..56, 97 other, 98 foreign-born naturalised).
NATION_NAMES: Final[dict[str, str]] = {
    f"{i:02d}": name
    for i, name in enumerate(
        (  # noqa: SIM905 - the table reads best as words
            "汉 蒙古 回 藏 维吾尔 苗 彝 壮 布依 朝鲜 满 侗 瑶 白 "
            "土家 哈尼 哈萨克 傣 黎 傈僳 佤 畲 高山 拉祜 水 东乡 纳西 景颇 "
            "柯尔克孜 土 达斡尔 仫佬 羌 布朗 撒拉 毛南 仡佬 锡伯 阿昌 普米 塔吉克 怒 "
            "乌孜别克 俄罗斯 鄂温克 德昂 保安 裕固 京 塔塔尔 独龙 鄂伦春 赫哲 门巴 珞巴 基诺"
        ).split(),
        start=1,
    )
} | {"97": "其他", "98": "外国血统中国籍人士"}


@dataclass(frozen=True, slots=True)
class IdentityCard:
    """The identity read from a resident ID card's chip; valid_to None means 长期 (no end)."""

    name: str
    sex_code: str
    nation_code: str
    birth_date: dt.date
    address: str
    id_number: str
    issuing_authority: str
    valid_from: dt.date
    valid_to: dt.date | None
    photo_wlt: bytes = field(repr=False)

    def __repr__(self) -> str:
        # Never let a log line or a traceback carry the ID number or the address in clear.
        return (
            f"IdentityCard(id_number={self.masked_id_number!r}, valid_from={self.valid_from}, "
            f"valid_to={self.valid_to or '长期'})"
        )

    __str__ = __repr__

    @property
    def masked_id_number(self) -> str:
        """The ID number as it may be shown: 1101**********1234."""
        return id_rules.mask(self.id_number)

    @property
    def sex_name(self) -> str:
        """The sex as words."""
        return SEX_NAMES.get(self.sex_code, self.sex_code)

    @property
    def nation_name(self) -> str:
        """The nation (民族) as words."""
        return NATION_NAMES.get(self.nation_code, self.nation_code)

    def is_expired(self, today: dt.date) -> bool:
        """True when the card is no longer valid on `today` (the last day printed is still valid)."""
        return self.valid_to is not None and today > self.valid_to

    def is_valid_on(self, today: dt.date) -> bool:
        """True when `today` lies inside the validity period."""
        return self.valid_from <= today and not self.is_expired(today)


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """The SAM's answer to a status query."""

    sw3: int
    description: str

    @property
    def ok(self) -> bool:
        """True when the SAM passed its self-test."""
        return self.sw3 == 0x90


class PhotoDecoder(Protocol):
    """Turns the card's 1024-byte WLT blob into a BMP; the vendor's decoder library plugs in here."""

    def decode(self, wlt: bytes) -> bytes:
        """Return a 102x126 24-bit BMP, or raise IdCardError."""
        ...


class PlaceholderPhotoDecoder:
    """A stand-in decoder that returns a plain grey 102x126 BMP (tests and demos; no WLT decoding)."""

    WIDTH: Final = 102
    HEIGHT: Final = 126

    def decode(self, wlt: bytes) -> bytes:
        """A grey BMP of the size the real decoders produce (38 556 pixel bytes)."""
        _ = wlt
        row = (self.WIDTH * 3 + 3) & ~3  # rows are padded to 4 bytes: 306 -> 308
        pixels = bytes([0x80]) * (row * self.HEIGHT)
        header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
        info = struct.pack("<IiiHHIIiiII", 40, self.WIDTH, self.HEIGHT, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
        return header + info + pixels


class UnavailablePhotoDecoder:
    """The default decoder: none is shipped, so asking for the photo says how to plug one in."""

    def decode(self, wlt: bytes) -> bytes:
        """Always raise PhotoDecoderUnavailableError."""
        _ = wlt
        raise PhotoDecoderUnavailableError(
            "未安装身份证照片解码库 / no WLT photo decoder installed (plug the vendor's library in via PhotoDecoder)"
        )
