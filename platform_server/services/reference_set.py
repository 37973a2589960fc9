"""An expert's set of reference photos: ID_1.jpg, ID_2.jpg, ... at import; all their encodings at identify.

The first photo stays in reference_photos (roster.write_reference_photo, as before); the others are
extra_reference_photos, encrypted the same way. The verifier takes the encodings concatenated and
compares each capture with the set (platform_server/face/dlib_verifier.py, docs/face.md).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from personal_data.crypto import encrypt
from platform_server.db.models import ExtraReferencePhoto, ReferencePhoto
from platform_server.services import audit, roster

if TYPE_CHECKING:
    from collections.abc import Sequence

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

MAX_PHOTOS_PER_EXPERT: Final = 5
_NUMBERED = re.compile(r"^(?P<id>.+?)_(?P<n>[0-9]{1,2})$")


def parse_photo_name(stem: str) -> tuple[str, int]:
    """(ID number text, position) of a photo's file name without suffix: `ID` is 1, `ID_n` is n.

    Raises:
        ValueError: a position outside 1..MAX_PHOTOS_PER_EXPERT.

    """
    match = _NUMBERED.match(stem)
    if match is None:
        return stem, 1
    position = int(match["n"])
    if not 1 <= position <= MAX_PHOTOS_PER_EXPERT:
        raise ValueError(
            f"照片序号应为 1 到 {MAX_PHOTOS_PER_EXPERT} / the photo number must be 1 to {MAX_PHOTOS_PER_EXPERT}"
        )
    return match["id"], position


def write_reference_set(
    uow: UnitOfWork, ctx: ServiceContext, expert_id: int, photos: Sequence[tuple[bytes, bytes]], actor: str = "cli"
) -> None:
    """Store an expert's photos (image, encoding), first first, replacing the whole earlier set."""
    if not 1 <= len(photos) <= MAX_PHOTOS_PER_EXPERT:
        raise ValueError(f"an expert has 1 to {MAX_PHOTOS_PER_EXPERT} reference photos, got {len(photos)}")
    first_image, first_encoding = photos[0]
    roster.write_reference_photo(uow, ctx, expert_id, first_image, first_encoding, actor)
    uow.execute(sa.delete(ExtraReferencePhoto).where(ExtraReferencePhoto.expert_id == expert_id))
    now = ctx.clock()
    for position, (image, encoding) in enumerate(photos[1:], start=2):
        uow.execute(
            sa.insert(ExtraReferencePhoto).values(
                expert_id=expert_id,
                position=position,
                image_encrypted=encrypt(ctx.data_key, image, associated=b"reference-photo"),
                encoding_encrypted=encrypt(ctx.data_key, encoding, associated=b"face-encoding"),
                image_sha256=hashlib.sha256(image).hexdigest(),
                updated_at=now,
            )
        )
    if len(photos) > 1:
        audit.record(
            uow,
            at=now,
            actor=actor,
            action="reference_photo",
            outcome="set",
            detail={"expert": expert_id, "photos": len(photos)},
        )


def photo_count(uow: UnitOfWork, expert_id: int) -> int:
    """How many reference photos the expert has (0 if none)."""
    first = uow.execute(sa.select(sa.func.count()).where(ReferencePhoto.expert_id == expert_id)).scalar_one()
    extra = uow.execute(sa.select(sa.func.count()).where(ExtraReferencePhoto.expert_id == expert_id)).scalar_one()
    return int(first) + int(extra)
