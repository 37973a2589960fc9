"""APCER/BPCER of the platform's liveness check (platform_server/face/liveness_check.py) on a built set.

From each photo (one per person of a labelled folder, or each photo of a flat folder):

- bona fide: a synthetic live clip (camera.simulator: blinks with a feathered eyelid patch,
  head turns as a 2-D warp that slides the nose toward one jaw end, sensor noise and shake) is run
  through the kiosk's own FaceCheck for each challenge (blink, turn left, turn right); the frames the
  kiosk would send go to the platform's check. A clip on which the kiosk itself never completes the
  challenge is counted apart (not a platform decision).
- attack "print held still": three frames of the photo held up to the camera (noise and shake only),
  sent as the answer to each challenge with plausible times.
- attack "still with motion": the same frames moved by a random small affine (rotation up to 4
  degrees, scale 0.96-1.04, shift up to 12 px), as a photo waved in front of the camera.
- attack "replayed recording": each bona fide recording sent as the answer to the two other
  challenges (a recorded blink replayed when a turn is asked, and so on).

APCER per attack type = attacks accepted / attacks presented; BPCER = bona fide refused / presented.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from camera.driver import OpenCvCamera
from camera.errors import CameraStreamEndedError, SyntheticClipError
from camera.simulator import make_clip
from checkin.face.capture_session import FaceCheck
from checkin.face.face_analysis import FaceAnalyser
from checkin.face.models import CaptureResult, LivenessChallenge
from platform_server.face import api
from platform_server.face.liveness_check import DlibLivenessChecker

if TYPE_CHECKING:
    from camera.models import BgrImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
STILL_FRAMES = (0, 7, 14)  # 15 fps: 0, 467 and 933 ms
FRAME_MS = 1000 / 15


def photos(root: Path, limit: int) -> list[Path]:
    """One photo per person (first in name order) of a labelled folder, or the photos of a flat folder."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if folders:
        found = [
            next(iter(sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)), None) for d in folders
        ]
        chosen = [p for p in found if p is not None]
    else:
        chosen = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return chosen[:limit]


def kiosk_capture(clip: Path, analyser: FaceAnalyser, challenge: LivenessChallenge) -> CaptureResult | None:
    """The kiosk's FaceCheck over a clip, unpaced, for one challenge: what it would send, or None."""
    camera = OpenCvCamera(str(clip), paced=False)
    camera.open()
    check = FaceCheck(analyser, challenges=(challenge,))
    try:
        while True:
            try:
                frame = camera.read()
            except CameraStreamEndedError:
                return None
            if check.process(frame).done:
                return check.result
    finally:
        camera.close()


def _read(path: Path) -> BgrImage:
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path} as an image")
    return np.asarray(image, dtype=np.uint8)


def _jpeg(image: BgrImage) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buffer)


def _jitter(image: BgrImage, rng: np.random.Generator) -> BgrImage:
    height, width = image.shape[:2]
    centre = (width / 2, height / 2)
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, rng.uniform(-4, 4), rng.uniform(0.96, 1.04)), dtype=np.float64)
    matrix[:, 2] += rng.uniform(-12, 12, size=2)
    return np.asarray(cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT), dtype=np.uint8)


def _evidence(challenge: LivenessChallenge, frames: list[tuple[bytes, int]]) -> api.LivenessEvidence:
    return api.LivenessEvidence(
        challenge=api.LivenessChallenge(challenge.value),
        challenge_id="bench",
        frames=tuple(api.ChallengeFrame(image, ms) for image, ms in frames),
    )


def report(root: Path, limit: int) -> None:  # noqa: C901, PLR0912, PLR0915
    """Build the set from the photos under root, run the platform's check on it, print APCER/BPCER."""
    analyser = FaceAnalyser()
    checker = DlibLivenessChecker()
    rng = np.random.default_rng(7)
    presented: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    kiosk_incomplete: list[str] = []
    skipped: list[str] = []
    started = time.perf_counter()

    wrong: list[str] = []
    margins: dict[tuple[str, str], list[float]] = {}

    def judge(kind: str, evidence: api.LivenessEvidence, captures: list[bytes], what: str = "") -> None:
        verdict = checker.check(evidence, captures)
        for measure in ("closed", "turn", "to_capture"):
            if measure in verdict.measures:
                margins.setdefault((kind, measure), []).append(verdict.measures[measure])
        presented[kind] += 1
        accepted[kind] += verdict.passed
        if verdict.passed != (kind == "bona fide"):  # the presentations the check got wrong, by name
            verdict_words = "attack accepted" if verdict.passed else "bona fide refused"
            wrong.append(f"{verdict_words}: {kind}: {what} {verdict.measures}")
        reasons.setdefault(kind, Counter())[verdict.reason] += 1

    chosen = photos(root, limit)
    with tempfile.TemporaryDirectory(prefix="liveness-bench-") as work_dir:
        work = Path(work_dir)
        for index, photo in enumerate(chosen):
            label = f"{photo.parent.name}/{photo.name}"
            try:
                live = make_clip(photo, work / f"{index}-live", blink=True, frames=60, finder=analyser)
                still = make_clip(photo, work / f"{index}-still", blink=False, frames=21, finder=analyser)
            except SyntheticClipError as err:
                skipped.append(f"{label}: {err}")
                continue
            recordings: dict[LivenessChallenge, CaptureResult] = {}
            for challenge in LivenessChallenge:
                result = kiosk_capture(live, analyser, challenge)
                if result is None or not result.passed:
                    kiosk_incomplete.append(f"{label} {challenge.value}")
                    continue
                recordings[challenge] = result
                frames = [(f.jpeg, f.at_ms) for f in result.challenge_frames]
                judge("bona fide", _evidence(challenge, frames), list(result.jpeg_frames), f"{label} {challenge.value}")
            still_images = [_read(p) for p in sorted(still.iterdir())]
            capture = [_jpeg(still_images[20])]
            for challenge in LivenessChallenge:
                held = [(_jpeg(still_images[i]), round(i * FRAME_MS)) for i in STILL_FRAMES]
                judge("print held still", _evidence(challenge, held), capture, f"{label} {challenge.value}")
                waved = [(_jpeg(_jitter(still_images[i], rng)), round(i * FRAME_MS)) for i in STILL_FRAMES]
                judge("still with motion", _evidence(challenge, waved), capture, f"{label} {challenge.value}")
            for recorded, result in recordings.items():
                frames = [(f.jpeg, f.at_ms) for f in result.challenge_frames]
                for asked in LivenessChallenge:
                    if asked is not recorded:
                        judge(
                            "replayed recording",
                            _evidence(asked, frames),
                            list(result.jpeg_frames),
                            f"{label} {recorded.value} sent as {asked.value}",
                        )
    print(
        f"liveness set from {root}: {len(chosen)} photos, {len(skipped)} skipped; {time.perf_counter() - started:.1f} s"
    )
    for line in skipped:
        print(f"  skipped: {line}")
    for line in kiosk_incomplete:
        print(f"  kiosk did not complete the challenge on the synthetic clip: {line}")
    for (kind, measure), values in sorted(margins.items()):
        ordered = sorted(values)
        print(f"  {kind:<19} {measure:<6} n={len(ordered)} lowest {ordered[:3]} highest {ordered[-3:]}")
    for line in wrong:
        print(f"  {line}")
    for kind in ("bona fide", "print held still", "still with motion", "replayed recording"):
        n, ok = presented[kind], accepted[kind]
        if kind == "bona fide":
            rate = f"BPCER {(n - ok) / n:.4f} ({n - ok}/{n} refused)" if n else "BPCER n/a"
        else:
            rate = f"APCER {ok / n:.4f} ({ok}/{n} accepted)" if n else "APCER n/a"
        why = ", ".join(f"{r} {c}" for r, c in reasons.get(kind, Counter()).most_common())
        print(f"  {kind:<19} {rate}   [{why}]")
    attacks = sum(presented[k] for k in presented if k != "bona fide")
    passed = sum(accepted[k] for k in accepted if k != "bona fide")
    bona = presented["bona fide"]
    print(
        f"liveness: APCER={passed / max(attacks, 1):.4f} ({passed}/{attacks}) "
        f"BPCER={(bona - accepted['bona fide']) / max(bona, 1):.4f} ({bona - accepted['bona fide']}/{bona})"
    )
