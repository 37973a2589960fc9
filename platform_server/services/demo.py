"""Demo data for `make demo`: a batch open now, rooms, wristbands, kiosks and invited experts.

The data is described in docs/organiser-guide.md (section "Demo data"); the ID numbers are made up
but valid under GB 11643, so the kiosk's simulated ID card reader can present them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from personal_data import id_number
from platform_server.services import batches, kiosks, roster
from platform_server.services.imports import PHOTO_SUFFIXES

if TYPE_CHECKING:
    from pathlib import Path

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

DEMO_ROOMS = [f"{floor}{n:02d}" for floor in (12, 13) for n in range(1, 11)]
DEMO_BANDS = 30
DEMO_KIOSKS = ("K1", "K2")


def _id(first17: str) -> str:
    return first17 + id_number.check_digit(first17)


# (name, ID number, phone, organisation, specialty)
DEMO_EXPERTS = [
    ("张伟", _id("11010519580312001"), "13800000001", "北京市建筑设计研究院", "建筑工程"),
    ("王芳", _id("31010419620721002"), "13800000002", "上海市政工程设计院", "市政给排水"),
    ("李强", _id("44010619650105003"), "13800000003", "广东省交通规划设计院", "公路桥梁"),
    ("刘洋", _id("51010719700918004"), "13800000004", "四川省水利水电勘测设计院", "水利水电"),
    ("陈静", _id("32010219681130005"), "13800000005", "江苏省信息中心", "信息化工程"),
    ("杨磊", _id("42010619550427006"), "13800000006", "湖北省造价管理站", "工程造价"),
]


def band(n: int) -> tuple[str, str]:
    """Demo wristband n: RFID UID 04A1B2C3D4E5F0 + n, UWB tag 0001 + n."""
    return f"{0x04A1B2C3D4E5F0 + n:014X}", f"{n + 1:04X}"


def seed_demo(uow: UnitOfWork, ctx: ServiceContext, *, batch_code: str = "DEMO", faces_dir: Path | None = None) -> str:
    """Create the demo data; with a faces folder, give each expert in turn one of its photos."""
    now = ctx.clock()
    batches.create_batch(
        uow,
        ctx,
        batches.BatchSpec(
            code=batch_code,
            name="演示批次：2025年市政工程评标 / Demo evaluation",
            venue="公共资源交易中心三楼第2评标室",
            hotel_code="GJFD",
            hotel_name="国际饭店",
            hotel_address="长安街1号",
            evaluation_start=now + dt.timedelta(hours=3),
            evaluation_end=now + dt.timedelta(hours=11),
            check_in_opens=now - dt.timedelta(minutes=5),
            allow_id_only=faces_dir is None,
        ),
        actor="demo",
    )
    rows = [roster.InvitationRow(i, n, p, o, s) for n, i, p, o, s in DEMO_EXPERTS]
    with uow:
        roster.write_rooms(uow, ctx, batch_code, DEMO_ROOMS, actor="demo")
        roster.write_bands(uow, ctx, [band(n) for n in range(DEMO_BANDS)], actor="demo")
        roster.write_invitations(uow, ctx, batch_code, roster.prepare(ctx.data_key, rows), actor="demo")
        uow.commit()
    for kiosk_id in DEMO_KIOSKS:
        kiosks.register_kiosk(uow, ctx, kiosk_id, name=f"演示终端{kiosk_id}", location="大堂", batch_code=batch_code)
    photos = 0
    if faces_dir is not None and ctx.face_verifier is not None:
        images = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        with uow:
            ids = roster.expert_ids_by_hash(uow, roster.hashes_of(ctx.data_key, [r.id_number for r in rows]))
            for row, image in zip(rows, images, strict=False):
                data = image.read_bytes()
                try:
                    encoding = ctx.face_verifier.encode_reference(data)
                except ValueError:
                    continue  # not every sample photo has exactly one usable face
                roster.write_reference_photo(
                    uow, ctx, ids[roster.hashes_of(ctx.data_key, [row.id_number])[0]], data, encoding, actor="demo"
                )
                photos += 1
            uow.commit()
    return (
        f"演示数据已创建 / demo data created: batch {batch_code}, {len(rows)} experts, {len(DEMO_ROOMS)} rooms, "
        f"{DEMO_BANDS} bands, kiosks {', '.join(DEMO_KIOSKS)}, {photos} reference photos"
    )
