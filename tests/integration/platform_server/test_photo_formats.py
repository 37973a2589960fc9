"""Reference photos as organisers have them: WebP and HEIC (made here from a shared face) import; bad ones say why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from typing import TYPE_CHECKING

import pillow_heif
import pytest
import sqlalchemy as sa
from PIL import Image

from personal_data.crypto import decrypt
from platform_server.db.models import ReferencePhoto
from platform_server.errors import ImportRefusedError
from platform_server.face.dlib_verifier import DlibFaceVerifier
from platform_server.face.reference_photos import ReferencePhotoError, normalise_reference, sniff_format
from platform_server.services import imports
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.xdist_group("dlib")
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def encoded(source: Path, fmt: str) -> bytes:
    image = Image.open(source).convert("RGB")
    buffer = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(image).save(buffer, quality=90)
    else:
        image.save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    url = f"sqlite:///{tmp_path_factory.mktemp('photo-formats') / 'platform.db'}"
    base = seed(url, experts=5, allow_id_only=False, clock=Clock(dt.datetime.now(dt.UTC)))
    return dataclasses.replace(base, ctx=dataclasses.replace(base.ctx, face_verifier=DlibFaceVerifier()))


def test_formats_are_told_by_content_not_by_name(faces_dir: Path) -> None:
    photo = faces_dir / "obama_1.jpg"
    assert sniff_format(encoded(photo, "WEBP")) == "WEBP"
    assert sniff_format(encoded(photo, "HEIF")) == "HEIF"
    assert sniff_format(encoded(photo, "PNG")) == "PNG"
    assert sniff_format(b"GIF89a....") == "GIF"
    assert sniff_format(b"hello, not an image") is None
    jpeg = photo.read_bytes()
    assert normalise_reference(jpeg, **LIMITS) == jpeg  # JPEG and PNG are kept as they are
    converted = normalise_reference(encoded(photo, "HEIF"), **LIMITS)
    assert converted.startswith(b"\xff\xd8\xff")  # converted once, to JPEG


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"just some text, not a photo at all", "not an image"),
        (b"GIF89a" + b"\0" * 64, "unsupported format GIF"),
    ],
)
def test_bad_files_say_why(data: bytes, words: str) -> None:
    with pytest.raises(ReferencePhotoError, match=words):
        normalise_reference(data, **LIMITS)


def test_webp_and_heic_photos_import_and_a_truncated_one_is_refused_with_its_reason(
    seeded: Seeded, faces_dir: Path, tmp_path: Path
) -> None:
    ids = seeded.ids
    good = tmp_path / "good"
    good.mkdir()
    (good / f"{ids[0]}.webp").write_bytes(encoded(faces_dir / "obama_1.jpg", "WEBP"))
    (good / f"{ids[1]}.heic").write_bytes(encoded(faces_dir / "biden_1.jpg", "HEIF"))
    # A WebP under a .jpg name, as the held-out set had: told by content.
    (good / f"{ids[2]}.jpg").write_bytes(encoded(faces_dir / "clapton_1.jpg", "WEBP"))
    report = imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, good)
    assert report.rows == 3
    uow = seeded.new_uow()
    with uow:
        stored = uow.execute(sa.select(ReferencePhoto.image_encrypted)).scalars().all()
    assert len(stored) == 3
    for blob in stored:  # stored encrypted, as JPEG
        assert decrypt(seeded.ctx.data_key, blob, associated=b"reference-photo").startswith(b"\xff\xd8\xff")

    bad = tmp_path / "bad"
    bad.mkdir()
    heic = encoded(faces_dir / "lennon_1.jpg", "HEIF")
    (bad / f"{ids[3]}.heic").write_bytes(heic[: len(heic) // 2])
    (bad / f"{ids[4]}.webp").write_bytes(encoded(faces_dir / "multi" / "two_people.jpg", "WEBP"))
    with pytest.raises(ImportRefusedError) as refused:
        imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, bad)
    lines = [problem.message for problem in refused.value.problems]
    assert any("truncated" in line and "文件不完整" in line for line in lines), lines
    assert any("several faces" in line for line in lines), lines
    with uow:
        assert len(uow.execute(sa.select(ReferencePhoto.id)).all()) == 3  # nothing of the bad import stored
