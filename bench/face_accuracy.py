"""Verification accuracy of the platform's own face code on a CSV of image pairs.

    .venv/bin/python bench/face_accuracy.py --pairs bench/data/face_pairs.csv [--threshold T]

The CSV has the header image_a,image_b,same (paths relative to the CSV; same is 1 or 0). For every
pair the first image is encoded as a reference photo (once per image, as at import) and the second
is verified against it with DlibFaceVerifier.verify, exactly as at identify. A capture the verifier
refuses (no face, several faces...) counts as a rejection. It prints TAR (same-person pairs
accepted) and FAR (different-person pairs accepted) at several thresholds, the distance margins, a
comparison of combining two captures by mean, by minimum or sequentially (the first capture alone
when it is clear of the threshold, the mean otherwise, as verify does), and last:

    configured threshold=<t> TAR=<x> FAR=<y> pairs=<n>

With --kiosk-frames it also checks the sequential decision on kiosk-like captures: every capture
image becomes a camera clip (camera.simulator: framed at 640x480, sensor noise, shake), three
of its frames are sent for each pair as the kiosk sends them, and the decision on the first frame
(when clear) is compared with the mean of all three, pair by pair:

    kiosk frames: sequential decisions differ from mean-of-3 in <k> of <n> pairs; ...
"""

from __future__ import annotations

import csv
import itertools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from bench import face_references, liveness_attacks
from platform_server.face.api import FaceImageError
from platform_server.face.dlib_verifier import (
    DEFAULT_AMBIGUITY_BAND,
    DEFAULT_THRESHOLD,
    DlibFaceVerifier,
    encoding_from_bytes,
    sequential_distance,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

SWEEP = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
STRESS_THRESHOLDS = (0.70, 0.75)


class PairsFileError(ValueError):
    """A pairs CSV that does not have the expected header, values or files."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One row of the pairs file: reference image, capture image, whether they show the same person."""

    reference: Path
    capture: Path
    same: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verifier's answer for a pair: its distance, or the refusal (distance None)."""

    pair: Pair
    distance: float | None
    refusal: str | None


def read_pairs(path: Path) -> list[Pair]:
    """Parse and check the pairs CSV; raise PairsFileError naming the row that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PairsFileError(f"cannot read the pairs file {path}: {err.strerror}") from err
    rows = list(csv.reader(text.splitlines()))
    if not rows or [cell.strip() for cell in rows[0]] != ["image_a", "image_b", "same"]:
        raise PairsFileError(f"{path}: the first line must be the header image_a,image_b,same")
    pairs: list[Pair] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 3:
            raise PairsFileError(f"{path} line {number}: expected 3 columns, got {len(row)}")
        image_a, image_b, same = (cell.strip() for cell in row)
        if same not in ("0", "1"):
            raise PairsFileError(f"{path} line {number}: 'same' must be 1 or 0, got {same!r}")
        reference, capture = path.parent / image_a, path.parent / image_b
        for image in (reference, capture):
            if not image.is_file():
                raise PairsFileError(f"{path} line {number}: image {image} does not exist")
        pairs.append(Pair(reference=reference, capture=capture, same=same == "1"))
    if not pairs:
        raise PairsFileError(f"{path}: no pairs after the header")
    return pairs


def rates(outcomes: list[Outcome], threshold: float) -> tuple[float, float]:
    """TAR and FAR at a threshold; a refused capture is a rejection."""
    same = [o for o in outcomes if o.pair.same]
    different = [o for o in outcomes if not o.pair.same]

    def accepted(group: list[Outcome]) -> int:
        return sum(1 for o in group if o.distance is not None and o.distance <= threshold)

    tar = accepted(same) / len(same) if same else float("nan")
    far = accepted(different) / len(different) if different else float("nan")
    return tar, far


def _sequential(pair: tuple[float, float], threshold: float) -> float:
    return sequential_distance(pair, threshold, DEFAULT_AMBIGUITY_BAND)[0]


#: Ways to combine two captures into one distance, given the threshold in use (the sequential rule's
#: ambiguity band sits around it).
COMBINATIONS: dict[str, Callable[[tuple[float, float], float], float]] = {
    "mean": lambda pair, _t: statistics.fmean(pair),
    "min": lambda pair, _t: min(pair),
    "seq": _sequential,
}


def print_combination_study(outcomes: list[Outcome], threshold: float) -> None:
    """Compare mean, minimum and the sequential rule as ways to combine two captures against a reference."""
    by_reference: dict[Path, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.distance is not None:
            by_reference[outcome.pair.reference].append(outcome)
    genuine_pairs: list[tuple[float, float]] = []
    impostor_pairs: list[tuple[float, float]] = []
    for group in by_reference.values():
        # Two captures of the same person (same label relative to the reference) form one attempt.
        for first, second in itertools.combinations(group, 2):
            if first.pair.same != second.pair.same:
                continue
            if not first.pair.same and identity(first.pair.capture) != identity(second.pair.capture):
                continue
            assert first.distance is not None
            assert second.distance is not None
            (genuine_pairs if first.pair.same else impostor_pairs).append((first.distance, second.distance))
    if not genuine_pairs or not impostor_pairs:
        print("combining two captures: not enough identities with two images to compare")
        return
    print(
        f"combining two captures of one person ({len(genuine_pairs)} genuine, {len(impostor_pairs)} impostor"
        f" attempts; seq = the first alone when farther than {DEFAULT_AMBIGUITY_BAND} from the threshold):"
    )
    for name, combine in COMBINATIONS.items():
        genuine = [combine(pair, threshold) for pair in genuine_pairs]
        impostor = [combine(pair, threshold) for pair in impostor_pairs]
        print(
            f"  {name:<4} largest genuine {max(genuine):.3f}  smallest impostor {min(impostor):.3f}"
            f"  margin {min(impostor) - max(genuine):+.3f}"
        )
        # The configured threshold, then looser ones where impostors start to pass: the tail shows
        # how each rule trades false accepts for true accepts when the set is not this easy.
        for value in (threshold, *STRESS_THRESHOLDS):
            tar = sum(combine(pair, value) <= value for pair in genuine_pairs) / len(genuine_pairs)
            far = sum(combine(pair, value) <= value for pair in impostor_pairs) / len(impostor_pairs)
            print(f"       at {value:.2f}: TAR={tar:.4f} FAR={far:.4f}")


def identity(path: Path) -> str:
    """Identity label of a shared image (SOURCES.md: the name without its last _suffix; obama_* is obama)."""
    stem = path.stem
    return "obama" if stem.startswith("obama") else stem.rsplit("_", 1)[0]


KIOSK_FRAMES = (3, 8, 13)  # three frames of a 15-frame clip, a third of a second apart, as a capture sends


def kiosk_frame_study(verifier: DlibFaceVerifier, rows: list[Pair], work: Path) -> None:
    """Sequential decision vs mean of three frames on kiosk-like captures of every pair's capture image."""
    from camera.simulator import make_clip  # noqa: PLC0415 - the kiosk's clip maker, only for this study

    encodings: dict[Path, list[npt.NDArray[np.float64]] | None] = {}
    for capture in sorted({pair.capture for pair in rows}):
        clip = make_clip(capture, work / capture.stem, blink=False, frames=15)
        frames = sorted(clip.iterdir())
        try:
            encodings[capture] = [verifier.encode(frames[i].read_bytes()) for i in KIOSK_FRAMES]
        except FaceImageError:
            encodings[capture] = None
    references: dict[Path, npt.NDArray[np.float64]] = {}
    spreads: list[float] = []
    differ = compared = seq_errors = mean_errors = single_frames = 0
    threshold, band = verifier.threshold, verifier.ambiguity_band
    for pair in rows:
        frames_enc = encodings[pair.capture]
        if frames_enc is None:
            continue
        if pair.reference not in references:
            references[pair.reference] = encoding_from_bytes(verifier.encode_reference(pair.reference.read_bytes()))
        reference = references[pair.reference]
        distances = [float(np.linalg.norm(e - reference)) for e in frames_enc]
        mean = statistics.fmean(distances)
        sequential, used = sequential_distance(distances, threshold, band)
        spreads.append(abs(distances[0] - mean))
        single_frames += used == 1
        compared += 1
        differ += (sequential <= threshold) != (mean <= threshold)
        seq_errors += (sequential <= threshold) != pair.same
        mean_errors += (mean <= threshold) != pair.same
    if not compared:
        print("kiosk frames: no pair could be compared")
        return
    spreads.sort()
    print(
        f"kiosk frames (band ±{band:.2f} around {threshold:.2f}):"
        f" |first - mean of 3| median {statistics.median(spreads):.4f}"
        f" p95 {spreads[int(0.95 * (len(spreads) - 1))]:.4f} max {spreads[-1]:.4f}; first frame alone in"
        f" {single_frames} of {compared}"
    )
    print(
        f"kiosk frames: sequential decisions differ from mean-of-3 in {differ} of {compared} pairs;"
        f" wrong decisions: sequential {seq_errors}, mean-of-3 {mean_errors}"
    )


def run_pairs(verifier: DlibFaceVerifier, rows: list[Pair]) -> list[Outcome]:
    """Verify every pair: the first image encoded once as a reference, the second verified against it."""
    references: dict[Path, bytes | FaceImageError] = {}
    outcomes: list[Outcome] = []
    for pair in rows:
        if pair.reference not in references:
            try:
                references[pair.reference] = verifier.encode_reference(pair.reference.read_bytes())
            except FaceImageError as err:
                references[pair.reference] = err
        reference = references[pair.reference]
        if isinstance(reference, FaceImageError):
            outcomes.append(Outcome(pair, None, f"reference {reference.problem}"))
            continue
        try:
            verdict = verifier.verify(reference, [pair.capture.read_bytes()])
        except FaceImageError as err:
            outcomes.append(Outcome(pair, None, f"capture {err.problem}"))
            continue
        outcomes.append(Outcome(pair, verdict.distance, None))
    return outcomes


def main(  # noqa: C901, PLR0917  (typer options)
    pairs: Annotated[Path | None, typer.Option(help="CSV with header image_a,image_b,same")] = None,
    folder: Annotated[
        Path | None, typer.Option(help="labelled folder (one sub-folder per person): k-reference protocol")
    ] = None,
    liveness: Annotated[
        Path | None,
        typer.Option(help="folder of face photos (or labelled folder): liveness APCER/BPCER on the attack set"),
    ] = None,
    liveness_people: Annotated[int, typer.Option(help="at most this many photos for the liveness set")] = 12,
    threshold: Annotated[
        float, typer.Option(help="threshold to report last (default: the platform's)")
    ] = DEFAULT_THRESHOLD,
    kiosk_frames: Annotated[
        bool, typer.Option("--kiosk-frames", help="also compare sequential and mean-of-3 on kiosk-like frames")
    ] = False,
) -> None:
    """Print TAR/FAR over thresholds, margins, the combination study, and the configured-threshold line."""
    if pairs is None and folder is None and liveness is None:
        print("error: give --pairs, --folder and/or --liveness", file=sys.stderr)
        raise typer.Exit(2)
    try:
        verifier = DlibFaceVerifier(threshold=threshold)
        if folder is not None:
            face_references.report(verifier, folder)
        if liveness is not None:
            liveness_attacks.report(liveness, liveness_people)
        if pairs is None:
            return
        rows = read_pairs(pairs)
    except (PairsFileError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(2) from err
    started = time.perf_counter()
    outcomes = run_pairs(verifier, rows)
    elapsed = time.perf_counter() - started

    same = [o for o in outcomes if o.pair.same]
    different = [o for o in outcomes if not o.pair.same]
    print(f"pairs: {len(outcomes)} ({len(same)} same person, {len(different)} different); {elapsed:.1f} s")
    for outcome in outcomes:
        if outcome.refusal:
            print(f"  refused: {outcome.pair.reference.name} vs {outcome.pair.capture.name}: {outcome.refusal}")
    same_d = [o.distance for o in same if o.distance is not None]
    diff_d = [o.distance for o in different if o.distance is not None]
    if same_d and diff_d:
        print(
            f"distances: same person median {statistics.median(same_d):.3f} max {max(same_d):.3f}; "
            f"different median {statistics.median(diff_d):.3f} min {min(diff_d):.3f}"
        )
    print("threshold   TAR      FAR")
    for value in sorted({*SWEEP, threshold}):
        tar, far = rates(outcomes, value)
        marker = "  <- configured" if value == threshold else ""
        print(f"  {value:.2f}    {tar:.4f}   {far:.4f}{marker}")
    print_combination_study(outcomes, threshold)
    if kiosk_frames:
        with tempfile.TemporaryDirectory(prefix="face-kiosk-frames-") as work:
            kiosk_frame_study(verifier, rows, Path(work))
    tar, far = rates(outcomes, threshold)
    print(f"configured threshold={threshold} TAR={tar:.4f} FAR={far:.4f} pairs={len(outcomes)}")


if __name__ == "__main__":
    typer.run(main)
