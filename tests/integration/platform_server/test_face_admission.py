"""An identify with a face takes the face workers' places before it reads the expert's reference.

Under load most identifies with a face are answered busy and sent again; one refused must not have
read the reference photo's encoding or written anything (on a cluster the database is what every
replica shares). The places are the pool's (face/pool.py); here a checker stands in for the pool so
the database side is seen alone, on a real SQLite database.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from platform_server.db.engine import write_gate
from platform_server.db.models import AuditEntry
from platform_server.errors import OverloadedError
from platform_server.face.api import ChallengeFrame, FaceVerdict, LivenessChallenge, LivenessEvidence, LivenessVerdict
from platform_server.services import identify, roster
from tests.unit.platform_server.support import FakeFaceVerifier, Seeded, face_image, identify_command, seed

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from platform_server.face.api import FaceImageError


class PlacesChecker:
    """A liveness checker with the pool's shape: places taken by `admission`, then `check_and_verify`.

    `free` is how many identifies may be admitted; each call records whether it ran admitted.
    """

    def __init__(self, verifier: FakeFaceVerifier, free: int) -> None:
        self.verifier = verifier
        self.free = free
        self.sent_again_asked: list[bool] = []
        self.admissions = 0
        self.inside = False
        self.calls_inside: list[bool] = []

    @contextlib.contextmanager
    def admission(self, *, sent_again: bool = False) -> Iterator[None]:
        self.sent_again_asked.append(sent_again)
        self.admissions += 1
        if self.free < 1:
            raise OverloadedError("人脸比对繁忙 / face verification is busy", 0.5)
        self.free -= 1
        self.inside = True
        try:
            yield
        finally:
            self.inside = False
            self.free += 1

    def check(self, evidence: LivenessEvidence, captures: Sequence[bytes]) -> LivenessVerdict:
        return LivenessVerdict(passed=bool(evidence.frames), reason="passed", measures={})

    def check_and_verify(
        self, evidence: LivenessEvidence, captures: Sequence[bytes], reference_encoding: bytes
    ) -> tuple[LivenessVerdict, FaceVerdict | FaceImageError]:
        self.calls_inside.append(self.inside)
        return self.check(evidence, captures), self.verifier.verify(reference_encoding, captures)


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    verifier = FakeFaceVerifier()
    s = seed(f"sqlite:///{tmp_path / 'platform.db'}", experts=3, allow_id_only=False, verifier=verifier)
    with s.uow as uow:
        ids = roster.expert_ids_by_hash(uow, roster.hashes_of(s.ctx.data_key, [s.ids[0]]))
        photo = face_image("alice")
        roster.write_reference_photo(uow, s.ctx, next(iter(ids.values())), photo, verifier.encode_reference(photo))
        uow.commit()
    return s


def command(s: Seeded, n: int, faces: tuple[bytes, ...]) -> identify.IdentifyCommand:
    evidence = LivenessEvidence(LivenessChallenge.BLINK, "c1", (ChallengeFrame(b"frame", 0),)) if faces else None
    return identify_command(s, n, faces, liveness=evidence)


def traced(engine: sa.Engine) -> list[str]:
    """Every statement the engine's connections run from now on, as SQLite runs it (the driver-level paths too)."""
    statements: list[str] = []
    sa.event.listen(engine, "connect", lambda connection, _record: connection.set_trace_callback(statements.append))
    engine.dispose()  # the connections opened before are closed; the next ones are traced
    return statements


def audit_rows(s: Seeded) -> int:
    with s.new_uow() as uow:
        return int(uow.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one())


def test_a_refused_identify_has_not_read_the_reference_or_written_anything(seeded: Seeded) -> None:
    s = seeded
    checker = PlacesChecker(FakeFaceVerifier(), free=0)
    ctx = dataclasses.replace(s.ctx, liveness_checker=checker)
    statements = traced(s.uow.engine)
    before = audit_rows(s)
    alice = command(s, 0, (face_image("alice"),))
    with pytest.raises(OverloadedError):
        identify.identify(s.new_uow(), ctx, alice)
    assert checker.admissions == 1
    assert checker.calls_inside == []  # no face work started
    assert not [sql for sql in statements if "encoding_encrypted" in sql]
    assert audit_rows(s) == before  # nothing recorded: the kiosk sends the same request again

    checker.free = 1  # a place frees: the same request goes through, its face work inside the admission
    result = identify.identify(s.new_uow(), ctx, alice)
    assert result.identification_token, result.refusal
    assert checker.calls_inside == [True]
    assert [sql for sql in statements if "encoding_encrypted" in sql]
    assert checker.free == 1  # given back


def test_an_identify_with_a_face_reads_the_reference_with_its_first_read_and_writes_once(seeded: Seeded) -> None:
    s = seeded
    checker = PlacesChecker(FakeFaceVerifier(), free=1)
    ctx = dataclasses.replace(s.ctx, liveness_checker=checker)
    gate = write_gate(s.uow.engine)
    assert gate is not None
    statements = traced(s.uow.engine)
    before = gate.figures().transactions
    result = identify.identify(s.new_uow(), ctx, command(s, 0, (face_image("alice"),)))
    assert result.identification_token, result.refusal
    assert checker.calls_inside == [True]
    # Two transactions: the expert's row with the reference, and the answer (a request answered in
    # between is seen by the answer's own read and replayed). Not a third one to read the reference.
    assert gate.figures().transactions - before == 2
    assert len([sql for sql in statements if "encoding_encrypted" in sql]) == 1
    assert len([sql for sql in statements if sql.startswith("BEGIN")]) == 2


def test_an_identify_without_face_work_takes_no_place(seeded: Seeded) -> None:
    s = seeded
    checker = PlacesChecker(FakeFaceVerifier(), free=0)
    ctx = dataclasses.replace(s.ctx, liveness_checker=checker)
    # Not invited (another batch's ID), and an expert without a reference photo: answered, not busy.
    stranger = dataclasses.replace(command(s, 0, (face_image("bob"),)), id_number="11010519491231002X")
    assert identify.identify(s.new_uow(), ctx, stranger).refusal is not None
    no_photo = identify.identify(s.new_uow(), ctx, command(s, 1, (face_image("carol"),)))
    assert no_photo.refusal is not None
    assert checker.admissions == 0


class PlacesVerifier(FakeFaceVerifier):
    """A verifier with the pool's shape for `[face] liveness = kiosk`: one place by `admission`, then `verify`."""

    def __init__(self, free: int) -> None:
        super().__init__()
        self.free = free
        self.places_asked: list[int] = []
        self.sent_again_asked: list[bool] = []
        self.inside = False
        self.calls_inside: list[bool] = []

    @contextlib.contextmanager
    def admission(self, places: int = 2, *, sent_again: bool = False) -> Iterator[None]:
        self.places_asked.append(places)
        self.sent_again_asked.append(sent_again)
        if self.free < places:
            raise OverloadedError("人脸比对繁忙 / face verification is busy", 0.5)
        self.free -= places
        self.inside = True
        try:
            yield
        finally:
            self.inside = False
            self.free += places

    def verify(self, reference_encoding: bytes, captures: Sequence[bytes]) -> FaceVerdict:
        self.calls_inside.append(self.inside)
        return super().verify(reference_encoding, captures)


def test_without_the_platforms_liveness_check_an_identify_takes_the_comparisons_one_place_first(
    seeded: Seeded,
) -> None:
    s = seeded
    verifier = PlacesVerifier(free=0)
    ctx = dataclasses.replace(s.ctx, face_verifier=verifier, liveness_checker=None)  # [face] liveness = kiosk
    statements = traced(s.uow.engine)
    before = audit_rows(s)
    alice = identify_command(s, 0, (face_image("alice"),))  # flagged live by the kiosk, no frames
    with pytest.raises(OverloadedError):
        identify.identify(s.new_uow(), ctx, alice)
    assert verifier.places_asked == [1]
    assert verifier.calls_inside == []
    assert not [sql for sql in statements if "encoding_encrypted" in sql]
    assert audit_rows(s) == before

    verifier.free = 1
    result = identify.identify(s.new_uow(), ctx, alice)
    assert result.identification_token, result.refusal
    assert verifier.calls_inside == [True]
    assert verifier.free == 1
    with s.new_uow() as uow:
        detail = uow.execute(
            sa.select(AuditEntry.detail).where(AuditEntry.action == "identify").order_by(AuditEntry.id.desc()).limit(1)
        ).scalar_one_or_none()
    assert detail is not None
    assert '"liveness_check": "kiosk"' in detail  # the audit says whose word the face was compared on


class RoomChecker(PlacesChecker):
    """PlacesChecker that also answers the pool's `check_room` (a hint asked before the database)."""

    def __init__(self, verifier: FakeFaceVerifier, free: int) -> None:
        super().__init__(verifier, free)
        self.room_asked = 0

    def check_room(self, *, sent_again: bool = False) -> None:
        self.sent_again_asked.append(sent_again)
        self.room_asked += 1
        if self.free < 1:
            raise OverloadedError("人脸比对繁忙 / face verification is busy", 0.5)


def test_with_the_face_workers_full_an_identify_with_a_face_is_answered_busy_before_any_statement(
    seeded: Seeded,
) -> None:
    s = seeded
    checker = RoomChecker(FakeFaceVerifier(), free=0)
    ctx = dataclasses.replace(s.ctx, liveness_checker=checker)
    statements = traced(s.uow.engine)
    alice = command(s, 0, (face_image("alice"),))
    # Not invited: it would need no face work, but while the workers are full it is not looked up either.
    stranger = dataclasses.replace(command(s, 0, (face_image("bob"),)), id_number="11010519491231002X")
    for cmd in (alice, stranger):
        with pytest.raises(OverloadedError):
            identify.identify(s.new_uow(), ctx, cmd)
    assert statements == []
    assert checker.admissions == 0
    # ID only (no face): never asks the face workers.
    assert identify.identify(s.new_uow(), ctx, command(s, 1, ())).refusal is not None
    assert checker.room_asked == 2

    checker.free = 1
    assert identify.identify(s.new_uow(), ctx, stranger).refusal is not None
    result = identify.identify(s.new_uow(), ctx, alice)
    assert result.identification_token, result.refusal
    assert checker.calls_inside == [True]


def test_an_identify_sent_again_after_a_busy_answer_asks_for_the_places_kept_for_that(seeded: Seeded) -> None:
    s = seeded
    checker = RoomChecker(FakeFaceVerifier(), free=1)
    ctx = dataclasses.replace(s.ctx, liveness_checker=checker)
    first = command(s, 0, (face_image("alice"),))
    assert identify.identify(s.new_uow(), ctx, first).identification_token
    # The same identify sent again after 2.5 s of busy waits (another request id: a fresh answer).
    again = dataclasses.replace(command(s, 0, (face_image("alice"),)), request_id="again", busy_waited_s=2.5)
    assert identify.identify(s.new_uow(), ctx, again).identification_token
    # Both the hint before the database and the admission were asked, each time saying which send it was.
    assert checker.sent_again_asked == [False, False, True, True]
