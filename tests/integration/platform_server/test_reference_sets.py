"""Several reference photos per expert: ID_1.jpg, ID_2.jpg, ... imported as a set; identify uses them all."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest
import sqlalchemy as sa

from platform_server.db.models import ExtraReferencePhoto, ReferencePhoto
from platform_server.errors import ImportRefusedError
from platform_server.face.dlib_verifier import (
    DlibFaceVerifier,
    ReferenceEncodingError,
    encodings_from_bytes,
    encodings_to_bytes,
    reference_distance,
)
from platform_server.services import identify, imports, reference_set
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.xdist_group("dlib")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    url = f"sqlite:///{tmp_path_factory.mktemp('reference-sets') / 'platform.db'}"
    base = seed(url, experts=3, allow_id_only=False, clock=Clock(dt.datetime.now(dt.UTC)))
    return dataclasses.replace(base, ctx=dataclasses.replace(base.ctx, face_verifier=DlibFaceVerifier()))


def counts(seeded: Seeded) -> tuple[int, int]:
    uow = seeded.new_uow()
    with uow:
        first = uow.execute(sa.select(sa.func.count()).select_from(ReferencePhoto)).scalar_one()
        extra = uow.execute(sa.select(sa.func.count()).select_from(ExtraReferencePhoto)).scalar_one()
    return int(first), int(extra)


def test_photo_names_give_the_id_and_the_place_in_the_set() -> None:
    assert reference_set.parse_photo_name("11010519491231002X") == ("11010519491231002X", 1)
    assert reference_set.parse_photo_name("11010519491231002X_3") == ("11010519491231002X", 3)
    with pytest.raises(ValueError, match="1 to 5"):
        reference_set.parse_photo_name("11010519491231002X_9")


def test_encodings_concatenate_and_the_rules_differ() -> None:
    rng = np.random.default_rng(1)
    refs = [rng.normal(size=128).astype("<f8").tobytes() for _ in range(3)]
    stack = encodings_from_bytes(encodings_to_bytes(refs))
    assert stack.shape == (3, 128)
    with pytest.raises(ReferenceEncodingError):
        encodings_from_bytes(b"\0" * 1000)
    with pytest.raises(ReferenceEncodingError):
        encodings_to_bytes(refs * 2)  # six: more than an expert may have
    capture = stack[0] + 0.01
    assert reference_distance(stack, capture, "min") < reference_distance(stack, capture, "mean")
    with pytest.raises(ValueError, match="reference rule"):
        reference_distance(stack, capture, "max")


def test_several_photos_import_as_a_set_and_identify_compares_with_all(
    seeded: Seeded, faces_dir: Path, tmp_path: Path
) -> None:
    ids = seeded.ids
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, name in enumerate(("obama_1.jpg", "obama_3.jpg", "obama_4.jpg"), start=1):
        shutil.copy(faces_dir / name, folder / f"{ids[0]}_{n}.jpg")
    shutil.copy(faces_dir / "biden_1.jpg", folder / f"{ids[1]}.jpg")
    assert imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, folder).rows == 4
    assert counts(seeded) == (2, 2)
    answer = identify.identify(
        seeded.new_uow(),
        seeded.ctx,
        identify.IdentifyCommand(
            request_id=str(uuid.uuid4()),
            kiosk_id="K1",
            batch_code=seeded.batch_code,
            id_number=ids[0],
            faces=((faces_dir / "obama_2.jpg").read_bytes(),),
            liveness_passed=True,
        ),
    )
    assert answer.verified, answer.refusal
    # Importing one photo again replaces the whole set.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(faces_dir / "obama_1.jpg", again / f"{ids[0]}.jpg")
    imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, again)
    assert counts(seeded) == (2, 0)


def test_the_same_photo_number_twice_is_refused(seeded: Seeded, faces_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "twice"
    folder.mkdir()
    shutil.copy(faces_dir / "lennon_1.jpg", folder / f"{seeded.ids[2]}.jpg")
    shutil.copy(faces_dir / "lennon_2.jpg", folder / f"{seeded.ids[2]}_1.jpg")
    with pytest.raises(ImportRefusedError) as refused:
        imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, folder)
    assert any("the same photo number twice" in p.message for p in refused.value.problems)
