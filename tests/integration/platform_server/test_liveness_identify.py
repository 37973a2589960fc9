"""The platform's own liveness check over real gRPC: a still photo is refused NOT_LIVE whatever the flag says.

The server is built from configuration (dlib verifier and liveness checker, as in production); the
expert's reference photo is stored as photo import stores it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import grpc
import pytest
import sqlalchemy as sa
from expertcheckin.v1 import common_pb2, kiosk_pb2, kiosk_pb2_grpc

from camera.simulator import make_clip
from checkin.face.face_analysis import FaceAnalyser
from checkin.face.models import LivenessChallenge
from checkin.flow.models import IdCardFields, Identified, IdentifyRequest
from checkin.platform_client import PlatformClient
from platform_server.bootstrap import build
from platform_server.config import DatabaseSection, FaceSection, PlatformConfig, SecuritySection
from platform_server.face.dlib_verifier import DlibFaceVerifier
from platform_server.server import create_server
from platform_server.services import roster
from tests.integration.face.test_camera_capture import run_check
from tests.integration.kiosk.fake_platform import settings_for
from tests.integration.platform_server.rpc_helpers import identify_request
from tests.unit.platform_server.support import Clock, seed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from checkin.face.models import CaptureResult


pytestmark = pytest.mark.xdist_group("dlib")
DATA_KEY_TEXT = "test-only data key, never used in production"  # support.TEST_KEY's text
Identify = kiosk_pb2.IdentifyExpertResponse


@pytest.fixture(scope="module")
def analyser() -> FaceAnalyser:
    return FaceAnalyser()


Served = tuple[kiosk_pb2_grpc.KioskServiceStub, str, str, sa.Engine, int]


def serve(tmp: Path, faces_dir: Path, face: FaceSection) -> Iterator[Served]:
    """A platform over real gRPC built from configuration, with expert 0's reference photo stored."""
    url = f"sqlite:///{tmp / 'platform.db'}"
    seeded = seed(url, experts=2, allow_id_only=False, clock=Clock(dt.datetime.now(dt.UTC)), kiosk_ids=["K1"])
    photo = (faces_dir / "obama_1.jpg").read_bytes()
    verifier = DlibFaceVerifier()
    uow = seeded.new_uow()
    with uow:
        expert_id = roster.expert_ids_by_hash(uow, roster.hashes_of(seeded.ctx.data_key, [seeded.ids[0]]))
        roster.write_reference_photo(
            uow, seeded.ctx, next(iter(expert_id.values())), photo, verifier.encode_reference(photo)
        )
        uow.commit()
    seeded.uow._session_factory.kw["bind"].dispose()
    config = PlatformConfig(
        database=DatabaseSection(url=url),
        security=SecuritySection(data_key=DATA_KEY_TEXT, insecure_kiosks=True),
        face=face,
    )
    platform = build(config, start_uwb_worker=False)  # verifier and liveness checker from [face]
    server, port = create_server(config, platform, listen="127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield kiosk_pb2_grpc.KioskServiceStub(channel), seeded.batch_code, seeded.ids[0], platform.engine, port
    channel.close()
    platform.stopping.set()
    server.stop(None).wait()
    platform.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("liveness-identify"), faces_dir, FaceSection())


@pytest.fixture(scope="module")
def served_trusting_the_kiosk(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("liveness-kiosk"), faces_dir, FaceSection(liveness="kiosk"))


def last_audits(engine: sa.Engine, count: int) -> list[tuple[str, dict[str, object]]]:
    """The last `count` identify audit rows, newest first: (outcome, detail)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT outcome, detail FROM audit_log WHERE action = 'identify' ORDER BY id DESC LIMIT :n"),
            {"n": count},
        ).all()
    return [(str(outcome), json.loads(detail)) for outcome, detail in rows]


def last_audit(engine: sa.Engine) -> tuple[str, dict[str, object]]:
    (newest,) = last_audits(engine, 1)
    return newest


def with_evidence(
    request: kiosk_pb2.IdentifyExpertRequest, challenge: str, frames: list[tuple[bytes, int]]
) -> kiosk_pb2.IdentifyExpertRequest:
    request.liveness.CopyFrom(
        kiosk_pb2.LivenessEvidence(
            challenge=challenge,
            challenge_id="c-1",
            frames=[kiosk_pb2.ChallengeFrame(image=image, captured_at_ms=ms) for image, ms in frames],
        )
    )
    return request


def live_blink(tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser) -> CaptureResult:
    """The kiosk's own check of a live clip (a blink) of the expert: its captures and challenge frames."""
    clip = make_clip(faces_dir / "obama_2.jpg", tmp_path / "live", blink=True, frames=45, finder=analyser)
    _statuses, result = run_check(clip, analyser, challenge=LivenessChallenge.BLINK)
    assert result is not None
    assert result.passed
    return result


def test_a_still_photo_flagged_live_is_refused_not_live(
    served: Served,
    tmp_path: Path,
    faces_dir: Path,
    analyser: FaceAnalyser,
) -> None:
    stub, batch, expert, engine, _port = served
    still = make_clip(faces_dir / "obama_2.jpg", tmp_path / "still", blink=False, frames=12, finder=analyser)
    frames = [p.read_bytes() for p in sorted(still.iterdir())]
    # The expert's own face, flagged live, but no challenge frames at all.
    bare = stub.IdentifyExpert(identify_request("K1", batch, expert, frames[:1]), timeout=60)
    assert bare.outcome == Identify.OUTCOME_REFUSED
    assert bare.refusal.reason == common_pb2.REFUSAL_REASON_NOT_LIVE
    assert bare.refusal.message_zh.startswith("未检测到真人")
    assert bare.face_attempts_left == 3  # not a mismatch: no try used up
    outcome, detail = last_audit(engine)
    assert outcome == "not_live"
    assert detail["liveness_check"] == "no_evidence"
    # Frames of the photo held still (with a camera's noise and shake) sent as a blink and as turns.
    for challenge in ("LIVENESS_CHALLENGE_BLINK", "LIVENESS_CHALLENGE_TURN_LEFT", "LIVENESS_CHALLENGE_TURN_RIGHT"):
        request = with_evidence(
            identify_request("K1", batch, expert, frames[11:12]), challenge, [(frames[i], 70 * i) for i in (0, 4, 8)]
        )
        answer = stub.IdentifyExpert(request, timeout=60)
        assert answer.refusal.reason == common_pb2.REFUSAL_REASON_NOT_LIVE, challenge
        outcome, detail = last_audit(engine)
        assert outcome == "not_live"
        assert detail["liveness"] is True  # what the kiosk claimed
        assert detail["liveness_check"] in {"no_blink", "no_turn"}
        assert detail["challenge_id"] == "c-1"


def test_the_kiosks_live_challenge_passes_and_the_expert_is_verified(
    served: Served,
    tmp_path: Path,
    faces_dir: Path,
    analyser: FaceAnalyser,
) -> None:
    stub, batch, expert, engine, _port = served
    result = live_blink(tmp_path, faces_dir, analyser)
    request = with_evidence(
        identify_request("K1", batch, expert, list(result.jpeg_frames)),
        "LIVENESS_CHALLENGE_BLINK",
        [(f.jpeg, f.at_ms) for f in result.challenge_frames],
    )
    answer = stub.IdentifyExpert(request, timeout=60)
    assert answer.outcome == Identify.OUTCOME_VERIFIED, answer.refusal
    outcome, detail = last_audit(engine)
    assert outcome == "verified"
    assert detail["liveness_check"] == "passed"
    assert detail["challenge"] == "blink"


def test_with_liveness_left_to_the_kiosk_its_flag_is_trusted_and_the_audit_says_so(
    served_trusting_the_kiosk: Served, tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser
) -> None:
    stub, batch, expert, engine, _port = served_trusting_the_kiosk
    still = make_clip(faces_dir / "obama_2.jpg", tmp_path / "still", blink=False, frames=2, finder=analyser)
    frames = [p.read_bytes() for p in sorted(still.iterdir())]
    # The same bare capture the platform's own check refuses NOT_LIVE: compared on the kiosk's word.
    answer = stub.IdentifyExpert(identify_request("K1", batch, expert, frames[:1]), timeout=60)
    assert answer.outcome == Identify.OUTCOME_VERIFIED, answer.refusal
    outcome, detail = last_audit(engine)
    assert outcome == "verified"
    assert detail["liveness"] is True
    assert detail["liveness_check"] == "kiosk"
    # Not flagged live by the kiosk: still no comparison, whatever the face.
    unflagged = identify_request("K1", batch, expert, frames[:1])
    unflagged.liveness_passed = False
    refused = stub.IdentifyExpert(unflagged, timeout=60)
    assert refused.refusal.reason == common_pb2.REFUSAL_REASON_FACE_NOT_USABLE


def test_the_context_tells_the_kiosk_whether_the_challenges_frames_are_checked(
    served: Served, served_trusting_the_kiosk: Served
) -> None:
    context = kiosk_pb2.GetKioskContextRequest(kiosk_id="K1")
    assert served[0].GetKioskContext(context, timeout=60).liveness_frames_unchecked is False
    assert served_trusting_the_kiosk[0].GetKioskContext(context, timeout=60).liveness_frames_unchecked is True


def test_a_kiosk_that_left_the_frames_out_sends_them_again_when_the_platform_checks_them(
    served: Served, tmp_path: Path, faces_dir: Path, analyser: FaceAnalyser
) -> None:
    _stub, batch, expert, engine, port = served
    result = live_blink(tmp_path, faces_dir, analyser)
    client = PlatformClient(settings_for(port), "K1")
    try:
        # As a kiosk that heard "frames unchecked" before this platform was set to check them.
        client._frames_unchecked = True
        answer = client.identify(
            IdentifyRequest(
                request_id="rid-live",
                batch_code=batch,
                id_card=IdCardFields(id_number=expert, name="专家", valid_to="长期"),
                faces=tuple(result.jpeg_frames),
                face_quality=0.9,
                liveness_passed=True,
                face_attempt=1,
                challenge="blink",
                challenge_id="c-2",
                challenge_frames=tuple((f.jpeg, f.at_ms) for f in result.challenge_frames),
            )
        )
    finally:
        client.close()
    assert isinstance(answer, Identified), answer
    assert answer.face_attempts_left == 3  # the answer without the frames used up no try
    (last_outcome, last_detail), (first_outcome, first_detail) = last_audits(engine, 2)
    assert (first_outcome, first_detail["liveness_check"]) == ("not_live", "no_evidence")
    assert (last_outcome, last_detail["liveness_check"]) == ("verified", "passed")
