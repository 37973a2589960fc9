"""The 签到凭证 layout, shared by the kiosk (prints it at check-in) and the console's desk (reprints it).

Pure: facts in, a Receipt out; the words are here (SLIP_TEXTS, Chinese then English; the kiosk's
checkin/texts.py includes them), so the desk needs no kiosk code to print the same slip.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from receipt_printer import protocol
from receipt_printer.models import Align, Feed, QrCode, Raster, Receipt, TextLine

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

SLIP_TEXTS: Mapping[str, tuple[str, str]] = {
    "slip.title": ("签到凭证", "Check-in slip"),
    "slip.batch": ("批次", "Batch"),
    "slip.project": ("项目", "Project"),
    "slip.expert": ("专家", "Expert"),
    "slip.id_number": ("证件号", "ID No."),
    "slip.kiosk": ("终端/流水号", "Kiosk/No."),
    "slip.time": ("签到时间", "Checked in"),
    "slip.hotel": ("酒店", "Hotel"),
    "slip.room": ("房间", "Room"),
    "slip.venue": ("评标地点", "Venue"),
    "slip.start": ("评标时间", "Starts"),
    "slip.band": ("手环编号", "Band"),
    "slip.card": ("劳务费收款卡", "Fee card"),
    "slip.code": ("验证码", "Code"),
    "slip.footer": (
        "请妥善保管本凭证，服务台扫码可查验",
        "Keep this slip: the desk can scan its QR code",
    ),
    "slip.test_title": ("打印测试", "Test print"),
    "slip.reprint": ("补打", "Reprint"),
}

#: Debian's fonts-noto-cjk (scripts/bootstrap.sh); the logo is left out if it is missing.
LOGO_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
_LOGO_FONT_INDEX = 2  # Noto Sans CJK SC
RULE = "-" * 48  # 48 half-width characters fill the 576-dot line


@dataclass(frozen=True, slots=True)
class SlipContent:
    """What a slip prints, already masked (no full ID or card number ever reaches it); times as printed."""

    batch_code: str
    batch_name: str
    expert_name: str
    id_number_masked: str
    kiosk_id: str
    slip_serial: int
    checked_in_at: str
    hotel_name: str
    room_number: str
    evaluation_venue: str
    evaluation_start: str
    band_tag_id: str
    card_masked: str
    slip_code: str


def label(key: str) -> str:
    """A slip label in both languages, Chinese first."""
    zh, en = SLIP_TEXTS[key]
    return f"{zh} {en}"


def build_slip(facts: SlipContent, *, reprint: bool = False) -> Receipt:
    """The 签到凭证 for one check-in: masked ID and card, the room, the venue, and the code's QR."""
    serial = f"{facts.kiosk_id}-{facts.slip_serial:06d}" if facts.slip_serial else facts.kiosk_id
    code = f"{facts.slip_code[:4]}-{facts.slip_code[4:]}" if len(facts.slip_code) == 8 else facts.slip_code
    fields = [
        ("slip.batch", facts.batch_code),
        ("slip.project", facts.batch_name),
        ("slip.expert", facts.expert_name),
        ("slip.id_number", facts.id_number_masked),
        ("slip.kiosk", serial),
        ("slip.time", facts.checked_in_at),
        ("slip.hotel", facts.hotel_name),
    ]
    after_room = [
        ("slip.venue", facts.evaluation_venue),
        ("slip.start", facts.evaluation_start),
        ("slip.band", facts.band_tag_id),
        ("slip.card", facts.card_masked),
    ]
    items: list[TextLine | QrCode | Raster | Feed] = []
    logo = slip_logo()
    if logo is not None:
        items.append(logo)
    items += [
        TextLine(SLIP_TEXTS["slip.title"][0], Align.CENTER, bold=True, double=True),
        TextLine(SLIP_TEXTS["slip.title"][1], Align.CENTER),
    ]
    if reprint:
        items.append(TextLine(f"({label('slip.reprint')})", Align.CENTER))
    items.append(TextLine(RULE))
    items += [TextLine(f"{label(key)}: {value}") for key, value in fields if value]
    items.append(TextLine(f"{label('slip.room')}: {facts.room_number}", bold=True, double=True))
    items += [TextLine(f"{label(key)}: {value}") for key, value in after_room if value]
    items.append(TextLine(RULE))
    if facts.slip_code:
        items += [QrCode(facts.slip_code, module_dots=8), TextLine(f"{label('slip.code')}: {code}", Align.CENTER)]
    items += [
        TextLine(SLIP_TEXTS["slip.footer"][0], Align.CENTER),
        TextLine(SLIP_TEXTS["slip.footer"][1], Align.CENTER),
        Feed(1),
    ]
    return Receipt(tuple(items))


@functools.cache
def slip_logo() -> Raster | None:
    """A small printed mark: 评标专家签到 in a rounded frame (a raster image, GS v 0)."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415  (Pillow only when a slip is printed)

    try:
        font = ImageFont.truetype(str(LOGO_FONT), 40, index=_LOGO_FONT_INDEX)
    except OSError:
        log.warning("logo font %s missing: slips print without the logo", LOGO_FONT)
        return None
    image = Image.new("L", (336, 72), 255)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((2, 2, 333, 69), radius=14, outline=0, width=4)
    draw.text((168, 36), "评标专家签到", font=font, fill=0, anchor="mm")
    return protocol.raster_from_image(image)
