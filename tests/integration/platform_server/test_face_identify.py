"""Photo import and identify with the real dlib verifier on the shared face images.

`platform-server photos import` runs as a real process (a folder, then zips); identify goes over gRPC
to a server built from configuration, so the verifier, its threshold and its image limits are the
ones `[face]` gives in production.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc
from PIL import Image

from personal_data import id_number
from platform_server.bootstrap import build
from platform_server.config import DatabaseSection, FaceSection, PlatformConfig, SecuritySection, load_config
from platform_server.db.models import ReferencePhoto
from platform_server.errors import ConfigError
from platform_server.face import dlib_verifier
from platform_server.server import create_server
from platform_server.services import batches, kiosks, roster
from tests.integration.platform_server.rpc_helpers import identify_request
from tests.unit.platform_server.support import Clock, Seeded, seed

if TYPE_CHECKING:
    from collections.abc import Iterator

    from platform_server.bootstrap import Platform

# Meant to keep the dlib models and the imports on one worker. pytest-xdist 3.8 does not apply groups
# under pytest 9 (it renames item._nodeid, which pytest 9 no longer reads), so each worker may build
# the session fixture once; correctness does not depend on the grouping.
pytestmark = pytest.mark.xdist_group("dlib")

# support.TEST_KEY is DataKey.from_text of this text; the CLI process gets it through PLATFORM_DATA_KEY.
DATA_KEY_TEXT = "test-only data key, never used in production"
ID_ONLY_BATCH = "B2ID"
Identify = kiosk_pb2.IdentifyExpertResponse
PLATFORM_SERVER = Path(sys.executable).with_name("platform-server")


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """Run the organiser CLI as a real process, with only this test's PLATFORM_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env["PLATFORM_DATA_KEY"] = DATA_KEY_TEXT
    return subprocess.run(
        [str(PLATFORM_SERVER), "--db", db, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def phone_photo(source: Path) -> bytes:
    """The source photo blown up to about 12 megapixels, as a phone would take a reference photo."""
    image = Image.open(source).convert("RGB")
    scale = (12_000_000 / (image.width * image.height)) ** 0.5
    big = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def jpeg_of_pixels(width: int, height: int) -> bytes:
    """A plain JPEG with many pixels and few bytes (what a decompression bomb looks like)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


@dataclass
class FacePlatform:
    """Seeded database with imported photos, served over gRPC with the dlib verifier from config."""

    seeded: Seeded
    platform: Platform
    server: grpc.Server
    stub: kiosk_pb2_grpc.KioskServiceStub
    channel: grpc.Channel
    imports: list[subprocess.CompletedProcess[str]]

    def identify(self, id_number: str, faces: list[bytes], batch: str | None = None) -> Identify:
        # A kiosk acts for its own batch only: the ID-only batch has its own kiosk.
        kiosk = "K2ID" if batch == ID_ONLY_BATCH else "K1"
        request = identify_request(kiosk, batch or self.seeded.batch_code, id_number, faces)
        answer: Identify = self.stub.IdentifyExpert(request, timeout=30)
        return answer


# Session scope: xdist may run other modules' tests between these on one worker, and a module fixture
# would then be built again each time (dlib models, three CLI processes).
@pytest.fixture(scope="session")
def face_platform(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[FacePlatform]:
    tmp = tmp_path_factory.mktemp("face-identify")
    url = f"sqlite:///{tmp / 'platform.db'}"
    seeded = seed(url, experts=5, allow_id_only=False, clock=Clock(dt.datetime.now(dt.UTC)), kiosk_ids=["K1"])
    ids = seeded.ids
    # A second batch that takes the ID card alone, to which the expert without a photo is also invited.
    now = seeded.ctx.clock()
    batches.create_batch(
        seeded.new_uow(),
        seeded.ctx,
        batches.BatchSpec(
            code=ID_ONLY_BATCH,
            name="仅凭身份证批次",
            evaluation_start=now + dt.timedelta(hours=2),
            evaluation_end=now + dt.timedelta(hours=10),
            check_in_opens=now - dt.timedelta(hours=1),
            allow_id_only=True,
        ),
    )
    uow = seeded.new_uow()
    with uow:
        row = roster.InvitationRow(ids[4], "专家4", "13800000004", "某设计院", "给排水")
        roster.write_invitations(uow, seeded.ctx, ID_ONLY_BATCH, roster.prepare(seeded.ctx.data_key, [row]))
        uow.commit()
    kiosks.register_kiosk(seeded.new_uow(), seeded.ctx, "K2ID", batch_code=ID_ONLY_BATCH)

    folder = tmp / "photos"
    folder.mkdir()
    (folder / f"{ids[0]}.jpg").write_bytes((faces_dir / "obama_1.jpg").read_bytes())
    (folder / f"{ids[1]}.jpg").write_bytes(phone_photo(faces_dir / "biden_1.jpg"))
    outputs = [cli("photos", "import", str(folder), "--batch", seeded.batch_code, db=url)]
    bad_zip, good_zip = tmp / "bad.zip", tmp / "good.zip"
    with zipfile.ZipFile(bad_zip, "w") as archive:
        archive.write(faces_dir / "kit_harington_1.jpg", f"photos/{ids[2]}.jpg")
        archive.write(faces_dir / "multi" / "two_people.jpg", f"photos/{ids[3]}.jpg")
    outputs.append(cli("photos", "import", str(bad_zip), "--batch", seeded.batch_code, db=url))
    with zipfile.ZipFile(good_zip, "w") as archive:
        archive.write(faces_dir / "kit_harington_1.jpg", f"photos/{ids[2]}.jpg")
        archive.write(faces_dir / "alex_lacamoire_3.png", f"photos/{ids[3]}.png")
    outputs.append(cli("photos", "import", str(good_zip), "--batch", seeded.batch_code, db=url))
    seeded.uow._session_factory.kw["bind"].dispose()

    config = PlatformConfig(
        database=DatabaseSection(url=url),
        security=SecuritySection(
            data_key=DATA_KEY_TEXT, organiser_token="organiser-face-test-0123456789", insecure_kiosks=True
        ),
    )
    # These tests are about verification: the platform's liveness check is off here (the kiosk's flag
    # is trusted) and is tested over gRPC in test_liveness_identify.py.
    platform = build(config, start_uwb_worker=False, liveness_checker=None)
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield FacePlatform(
        seeded,
        platform,
        server,
        kiosk_pb2_grpc.KioskServiceStub(channel),
        channel,
        outputs,
    )
    channel.close()
    platform.stopping.set()
    server.stop(None).wait()
    platform.close()


def photos_on_file(face: FacePlatform) -> int:
    with face.platform.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(ReferencePhoto)).scalar_one())


def test_config_face_defaults_are_the_verifiers_own() -> None:
    section = FaceSection()
    assert section.threshold == dlib_verifier.DEFAULT_THRESHOLD
    assert section.max_image_bytes == dlib_verifier.DEFAULT_MAX_IMAGE_BYTES
    assert section.max_pixels == dlib_verifier.DEFAULT_MAX_PIXELS


def test_config_refuses_a_message_limit_below_the_image_limit(tmp_path: Path) -> None:
    config = tmp_path / "platform.toml"
    config.write_text("[server]\nmax_message_bytes = 1048576\n[face]\nmax_image_bytes = 2097152\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'max_message_bytes' in section 'server' must be at least"):
        load_config(config, environ={})
    assert load_config(None, environ={}).server.max_message_bytes > FaceSection().max_image_bytes


def test_photo_imports_folder_and_zip_all_or_none(face_platform: FacePlatform) -> None:
    folder, bad_zip, good_zip = face_platform.imports
    assert folder.returncode == 0, folder.stderr
    assert "imported 2 photos" in folder.stdout  # one of them a 12-megapixel phone picture
    # A zip with a group photo is refused as a whole, naming the row; nothing of it is stored.
    assert bad_zip.returncode == 3, bad_zip.stdout
    assert "1 bad photos" in bad_zip.stderr
    group_photo_line = next(line for line in bad_zip.stderr.splitlines() if "faces in the image" in line)
    assert id_number.mask(face_platform.seeded.ids[3]) in group_photo_line
    assert face_platform.seeded.ids[3] not in bad_zip.stderr  # masked, never in clear
    for run in (folder, bad_zip, good_zip):
        assert "Traceback" not in run.stderr
        assert "Warning" not in run.stderr, run.stderr  # organisers see results, not library noise
    assert good_zip.returncode == 0, good_zip.stderr
    assert "imported 2 photos" in good_zip.stdout
    assert photos_on_file(face_platform) == 4


def test_matching_capture_is_verified_with_the_configured_threshold(
    face_platform: FacePlatform, faces_dir: Path
) -> None:
    ids = face_platform.seeded.ids
    answer = face_platform.identify(ids[0], [(faces_dir / "obama_2.jpg").read_bytes()])
    assert answer.outcome == Identify.OUTCOME_VERIFIED, answer.refusal
    assert answer.face.matched
    assert answer.face.threshold == pytest.approx(dlib_verifier.DEFAULT_THRESHOLD)
    assert answer.face.distance <= answer.face.threshold
    assert answer.expert_name == "专家0"
    # The 12-megapixel reference works like any other.
    biden = face_platform.identify(ids[1], [(faces_dir / "biden_2.jpg").read_bytes()])
    assert biden.outcome == Identify.OUTCOME_VERIFIED, biden.refusal


def test_another_person_uses_up_the_attempts_then_staff_are_needed(
    face_platform: FacePlatform, faces_dir: Path
) -> None:
    kit = face_platform.seeded.ids[2]
    stranger = (faces_dir / "obama_3.jpg").read_bytes()
    left = []
    for _ in range(2):
        answer = face_platform.identify(kit, [stranger])
        assert answer.refusal.reason == common_pb2.REFUSAL_REASON_FACE_MISMATCH
        assert not answer.face.matched
        assert answer.face.distance > answer.face.threshold
        assert not answer.expert_name  # a refused person learns nothing of the expert on file
        left.append(answer.face_attempts_left)
    assert left == [2, 1]
    third = face_platform.identify(kit, [stranger])
    assert third.refusal.reason == common_pb2.REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED
    assert third.face_attempts_left == 0
    # Even the right face no longer helps: staff must confirm the person.
    right = face_platform.identify(kit, [(faces_dir / "kit_harington_2.jpg").read_bytes()])
    assert right.refusal.reason == common_pb2.REFUSAL_REASON_FACE_ATTEMPTS_EXHAUSTED


def test_unusable_images_are_refused_without_using_up_an_attempt(face_platform: FacePlatform, faces_dir: Path) -> None:
    alex = face_platform.seeded.ids[3]
    two_faces = face_platform.identify(alex, [(faces_dir / "multi" / "two_people.jpg").read_bytes()])
    assert two_faces.refusal.reason == common_pb2.REFUSAL_REASON_FACE_NOT_USABLE
    limit = dlib_verifier.DEFAULT_MAX_IMAGE_BYTES
    oversized = (faces_dir / "alex_lacamoire_1.jpg").read_bytes()
    oversized += b"\0" * (limit + 1 - len(oversized))  # a real JPEG, padded past the byte limit
    too_big = face_platform.identify(alex, [oversized])
    assert too_big.refusal.reason == common_pb2.REFUSAL_REASON_IMAGE_TOO_LARGE
    assert too_big.refusal.params["max_bytes"] == str(limit)
    bomb = face_platform.identify(alex, [jpeg_of_pixels(8000, 6000)])  # 48 MP in a few hundred KB
    assert bomb.refusal.reason == common_pb2.REFUSAL_REASON_IMAGE_TOO_LARGE
    garbage = face_platform.identify(alex, [b"\xff\xd8\xff\xe0 not really a JPEG " * 64])
    assert garbage.refusal.reason == common_pb2.REFUSAL_REASON_IMAGE_UNDECODABLE
    for answer in (two_faces, too_big, bomb, garbage):
        assert answer.face_attempts_left == 3
    verified = face_platform.identify(alex, [(faces_dir / "alex_lacamoire_1.jpg").read_bytes()])
    assert verified.outcome == Identify.OUTCOME_VERIFIED, verified.refusal


def test_expert_without_photo_needs_staff_unless_the_batch_takes_the_id_card_alone(
    face_platform: FacePlatform, faces_dir: Path
) -> None:
    no_photo = face_platform.seeded.ids[4]
    capture = (faces_dir / "lennon_1.jpg").read_bytes()
    refused = face_platform.identify(no_photo, [capture])
    assert refused.refusal.reason == common_pb2.REFUSAL_REASON_NO_REFERENCE_PHOTO
    id_only = face_platform.identify(no_photo, [capture], batch=ID_ONLY_BATCH)
    assert id_only.outcome == Identify.OUTCOME_VERIFIED, id_only.refusal
    assert not id_only.HasField("face")  # nothing to compare with: no face verdict is claimed
