"""Identify's face work in two face workers: the split check (this version) against the old side-by-side call.

Both layouts run in the same pool of two workers, on the e2e scenario's evidence (a blink clip made
from faces:obama_1.jpg, or the astronaut portrait without ../shared, through the kiosk's FaceCheck):

- old: the whole liveness check (`DlibLivenessChecker.check`) in one worker, the comparison in the
  other, as `check_liveness_and_verify` did before the split (the check now describes the capture
  as the comparison does; the call took the same time as the previous code's within noise);
- new: `check_liveness_and_verify` as it is now (motion part in one worker, the comparison plus the
  last frame in the other, the capture described once).

Calls alternate old/new so machine noise falls on both; prints each side's median and the ratio.

    .venv/bin/python bench/identify_face_split.py --calls 12
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.liveness_attacks import _evidence, kiosk_capture  # noqa: E402
from camera.simulator import make_clip  # noqa: E402
from checkin.face.face_analysis import FaceAnalyser  # noqa: E402
from checkin.face.models import LivenessChallenge  # noqa: E402
from platform_server.bootstrap import face_verifier_from  # noqa: E402
from platform_server.config import FaceSection, LoggingSection, PlatformConfig  # noqa: E402
from platform_server.face import pool as face_pool  # noqa: E402
from sim_world.faces import resolve_face  # noqa: E402


def main() -> None:
    """Build the evidence, start two workers, time both layouts alternately, print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12, help="timed calls per layout (after 2 warm-up calls each)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="face-split-"))
    photo = resolve_face("faces:obama_1.jpg|astronaut", base=work, work=work).path
    assert photo is not None
    analyser = FaceAnalyser()
    clip = make_clip(photo, work / "live", blink=True, frames=60, finder=analyser)
    result = kiosk_capture(clip, analyser, LivenessChallenge.BLINK)
    assert result is not None, "the kiosk did not complete the blink on the synthetic clip"
    evidence = _evidence(LivenessChallenge.BLINK, [(f.jpeg, f.at_ms) for f in result.challenge_frames])
    captures = tuple(result.jpeg_frames)
    sizes = [len(f.image) // 1024 for f in evidence.frames]
    print(f"evidence: {photo.name}, {len(evidence.frames)} frames ({sizes} KB), {len(captures)} captures")

    config = PlatformConfig(face=FaceSection(processes=2, queue=4), logging=LoggingSection(level="WARNING"))
    pool = face_verifier_from(config, worker_processes=True)
    assert isinstance(pool, face_pool.ProcessFaceVerifier)
    try:
        reference = pool.encode_reference(photo.read_bytes())

        def old() -> tuple[Any, Any]:
            # The old layout, on the same workers: the whole check in one, the comparison in the other.
            live, compared = pool._run(  # noqa: SLF001
                [
                    (face_pool._call, ("check", (evidence, captures), "liveness")),  # noqa: SLF001
                    (face_pool._call, ("verify", (reference, captures), "verifier")),  # noqa: SLF001
                ]
            )
            return live[1], compared[1]

        def new() -> tuple[Any, Any]:
            return pool.check_liveness_and_verify(evidence, captures, reference)

        timings: dict[str, list[float]] = {"old": [], "new": []}
        verdicts: dict[str, tuple[Any, Any]] = {}
        for index in range(args.calls + 2):
            for name, call in (("old", old), ("new", new)) if index % 2 == 0 else (("new", new), ("old", old)):
                started = time.perf_counter()
                verdicts[name] = call()
                if index >= 2:
                    timings[name].append(time.perf_counter() - started)
    finally:
        pool.close()
    for name, (verdict, compared) in verdicts.items():
        print(f"  {name}: liveness {verdict.reason} {verdict.measures}; comparison distance {compared.distance:.4f}")
    old_s, new_s = statistics.median(timings["old"]), statistics.median(timings["new"])
    for name, values in timings.items():
        print(
            f"{name:>3}: median {statistics.median(values) * 1000:.0f} ms, "
            f"min {min(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms ({len(values)} calls)"
        )
    print(f"new / old = {new_s / old_s:.2f} (old side-by-side call measured in the same run)")


if __name__ == "__main__":
    main()
