"""Test support for the platform: a fake face verifier, seeded databases, valid ID and card numbers."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from personal_data import id_number
from personal_data.crypto import DataKey
from platform_server.config import RulesSection
from platform_server.db.engine import make_engine, make_session_factory, upgrade
from platform_server.db.unit_of_work import UnitOfWork
from platform_server.face.api import FaceImageError, FaceImageProblem, FaceVerdict, LivenessEvidence
from platform_server.services import batches, check_in, identify, keyring, kiosks, roster
from platform_server.services.context import ServiceContext

if TYPE_CHECKING:
    from collections.abc import Sequence

TEST_KEY = DataKey.from_text("test-only data key, never used in production")


#: What the fake verifier reports as its face-finding time per capture and its descriptor time.
FAKE_CHECKS_S = 0.001
FAKE_DESCRIPTORS_S = 0.002


class FakeFaceVerifier:
    """A verifier whose 'encoding' is the image's first bytes: same prefix = same person.

    Images starting with b"BAD" are undecodable, with b"BIG" too large; everything else is a face.
    Counts calls, so tests can check the cheap path never touches it.
    """

    def __init__(self, threshold: float = 0.6) -> None:
        self._threshold = threshold
        self.calls = 0
        self.max_image_bytes = 1000

    @property
    def threshold(self) -> float:
        return self._threshold

    def encode_reference(self, image: bytes) -> bytes:
        self._check(image)
        return image[:8]

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        self.calls += 1
        for image in captures:
            self._check(image)
        distance = min(0.2 if c[:8] == reference_encoding else 0.9 for c in captures)
        return FaceVerdict(
            distance=distance,
            threshold=self._threshold,
            matched=distance <= self._threshold,
            checks_s=FAKE_CHECKS_S * len(captures),
            descriptors_s=FAKE_DESCRIPTORS_S,
        )

    @staticmethod
    def _check(image: bytes) -> None:
        if image.startswith(b"BAD"):
            raise FaceImageError(FaceImageProblem.UNDECODABLE, "not an image")
        if image.startswith(b"BIG"):
            raise FaceImageError(FaceImageProblem.TOO_LARGE, "too large")
        if image.startswith(b"NOFACE"):
            raise FaceImageError(FaceImageProblem.NO_FACE, "no face")


def make_id(n: int, birth: str = "19650315", region: str = "110105") -> str:
    """A valid GB 11643 ID number, distinct for each n < 1000 per birth date."""
    first17 = f"{region}{birth}{n % 1000:03d}"
    return first17 + id_number.check_digit(first17)


def many_ids(count: int, seed: int = 7) -> list[str]:
    """`count` distinct valid ID numbers."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    start = dt.date(1950, 1, 1)
    while len(out) < count:
        birth = (start + dt.timedelta(days=rng.randrange(20000))).strftime("%Y%m%d")
        value = make_id(rng.randrange(1000), birth, f"{rng.randrange(110000, 659999):06d}")
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def luhn_pan(prefix: str = "622848", length: int = 19, n: int = 0) -> str:
    """A Luhn-valid card number."""
    body = (prefix + f"{n:012d}")[: length - 1]
    for check in "0123456789":
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def signature_png() -> bytes:
    """A small PNG with a stroke on it (a blank one is refused)."""
    image = Image.new("L", (200, 80), 255)
    ImageDraw.Draw(image).line((10, 60, 190, 20), fill=0, width=4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def blank_png() -> bytes:
    """A PNG with nothing drawn on it."""
    buffer = io.BytesIO()
    Image.new("L", (200, 80), 255).save(buffer, format="PNG")
    return buffer.getvalue()


class Clock:
    """A settable clock for the services."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime(2025, 6, 1, 0, 30, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Seeded:
    """A migrated database with one open batch, rooms, bands, kiosks and invited experts."""

    url: str
    uow: UnitOfWork
    ctx: ServiceContext
    batch_code: str
    ids: list[str]
    bands: list[tuple[str, str]]
    rooms: list[str]
    kiosk_ids: list[str] = field(default_factory=list)

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.uow._session_factory)


def band(n: int) -> tuple[str, str]:
    """Wristband n: RFID UID like 04A1B2C3D4E5F0 + n, UWB tag 0001 + n."""
    return f"{0x04A1B2C3D4E5F0 + n:014X}", f"{n + 1:04X}"


def seed(
    url: str,
    *,
    experts: int = 5,
    rooms: int = 5,
    bands: int = 10,
    kiosk_ids: Sequence[str] = ("K1", "K2"),
    allow_id_only: bool = True,
    verifier: FakeFaceVerifier | None = None,
    clock: Clock | None = None,
    rules: RulesSection | None = None,
    batch_code: str = "B2025",
    pool_size: int = 10,
) -> Seeded:
    """Migrate the database at `url` and fill it with a ready-to-check-in batch."""
    engine = make_engine(url, pool_size=pool_size)
    upgrade(engine)
    keyring.open_keys(engine, TEST_KEY)
    uow = UnitOfWork(make_session_factory(engine))
    clock = clock or Clock()
    ctx = ServiceContext(data_key=TEST_KEY, rules=rules or RulesSection(), face_verifier=verifier, clock=clock)
    now = clock()
    batches.create_batch(
        uow,
        ctx,
        batches.BatchSpec(
            code=batch_code,
            name="2025年第一批评标",
            venue="三楼第2评标室",
            hotel_code="HTL1",
            hotel_name="国际饭店",
            hotel_address="长安街1号",
            evaluation_start=now + dt.timedelta(hours=2),
            evaluation_end=now + dt.timedelta(hours=10),
            check_in_opens=now - dt.timedelta(hours=1),
            allow_id_only=allow_id_only,
        ),
    )
    ids = many_ids(experts)
    room_numbers = [f"{1201 + i}" for i in range(rooms)]
    band_list = [band(i) for i in range(bands)]
    with uow:
        roster.write_rooms(uow, ctx, batch_code, room_numbers)
        roster.write_bands(uow, ctx, band_list)
        rows = [roster.InvitationRow(v, f"专家{i}", f"1380000{i:04d}", "某设计院", "给排水") for i, v in enumerate(ids)]
        roster.write_invitations(uow, ctx, batch_code, roster.prepare(ctx.data_key, rows))
        uow.commit()
    for kiosk_id in kiosk_ids:
        kiosks.register_kiosk(uow, ctx, kiosk_id, name=f"终端{kiosk_id}", location="大堂", batch_code=batch_code)
    return Seeded(url, uow, ctx, batch_code, ids, band_list, room_numbers, list(kiosk_ids))


def identify_command(
    s: Seeded, n: int, faces: tuple[bytes, ...] = (), *, kiosk: str = "K1", liveness: LivenessEvidence | None = None
) -> identify.IdentifyCommand:
    """Expert n's identify at `kiosk`, a fresh request id; with faces, as after the kiosk's liveness check."""
    return identify.IdentifyCommand(
        request_id=uuid.uuid4().hex,
        kiosk_id=kiosk,
        batch_code=s.batch_code,
        id_number=s.ids[n],
        faces=faces,
        liveness_passed=bool(faces),
        liveness=liveness,
    )


def check_in_expert(s: Seeded, n: int, *, band: int | None = None, kiosk: str = "K1") -> check_in.CompleteResult:
    """Expert n identified (ID only) and checked in at `kiosk` with band `band` (default n) and a new card."""
    found = identify.identify(s.new_uow(), s.ctx, identify_command(s, n, kiosk=kiosk))
    assert found.identification_token, found.refusal
    return check_in.complete_check_in(
        s.new_uow(),
        s.ctx,
        check_in.CompleteCommand(
            request_id=uuid.uuid4().hex,
            kiosk_id=kiosk,
            identification_token=found.identification_token,
            use_card_on_file=False,
            new_card_pan=luhn_pan(n=n),
            card_source="CHIP",
            signature_png=signature_png(),
            band_uid=s.bands[n if band is None else band][0],
        ),
    )


def face_image(person: str) -> bytes:
    """A fake capture for FakeFaceVerifier: 8-byte person prefix plus noise."""
    return hashlib.sha256(person.encode()).digest()[:8] + random.randbytes(32)
