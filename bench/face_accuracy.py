"""Verification accuracy of the platform's own face code on a CSV of image pairs.

    .venv/bin/python bench/face_accuracy.py --pairs bench/data/face_pairs.csv [--threshold T]

The CSV has the header image_a,image_b,same (paths relative to the CSV; same is 1 or 0). For every
pair the first image is encoded as a reference photo (once per image, as at import) and the second
is verified against it with DlibFaceVerifier.verify, exactly as at identify. A capture the verifier
refuses (no face, several faces...) counts as a rejection. It prints TAR (same-person pairs
accepted) and FAR (different-person pairs accepted) at several thresholds, the distance margins, a
comparison of combining two captures by mean or by minimum, and last:

    configured threshold=<t> TAR=<x> FAR=<y> pairs=<n>
"""

from __future__ import annotations

import csv
import itertools
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path  # noqa: TC003 (Typer reads the annotations at run time)
from typing import Annotated

import typer

from platform_server.face.api import FaceImageError
from platform_server.face.dlib_verifier import DEFAULT_THRESHOLD, DlibFaceVerifier

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


def print_combination_study(outcomes: list[Outcome], threshold: float) -> None:
    """Compare mean and minimum as ways to combine two captures of one person against a reference."""
    by_reference: dict[Path, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.distance is not None:
            by_reference[outcome.pair.reference].append(outcome)
    same_mean: list[float] = []
    same_min: list[float] = []
    diff_mean: list[float] = []
    diff_min: list[float] = []
    for group in by_reference.values():
        # Two captures of the same person (same label relative to the reference) form one attempt.
        for first, second in itertools.combinations(group, 2):
            if first.pair.same != second.pair.same:
                continue
            if not first.pair.same and identity(first.pair.capture) != identity(second.pair.capture):
                continue
            assert first.distance is not None
            assert second.distance is not None
            pair_distances = (first.distance, second.distance)
            (same_mean if first.pair.same else diff_mean).append(statistics.fmean(pair_distances))
            (same_min if first.pair.same else diff_min).append(min(pair_distances))
    if not same_mean or not diff_mean:
        print("combining two captures: not enough identities with two images to compare")
        return
    print(f"combining two captures of one person ({len(same_mean)} genuine, {len(diff_mean)} impostor attempts):")
    for name, genuine, impostor in (("mean", same_mean, diff_mean), ("min", same_min, diff_min)):
        print(
            f"  {name:<4} largest genuine {max(genuine):.3f}  smallest impostor {min(impostor):.3f}"
            f"  margin {min(impostor) - max(genuine):+.3f}"
        )
        # The configured threshold, then looser ones where impostors start to pass: the tail shows
        # how each rule trades false accepts for true accepts when the set is not this easy.
        for value in (threshold, *STRESS_THRESHOLDS):
            tar = sum(d <= value for d in genuine) / len(genuine)
            far = sum(d <= value for d in impostor) / len(impostor)
            print(f"       at {value:.2f}: TAR={tar:.4f} FAR={far:.4f}")


def identity(path: Path) -> str:
    """Identity label of a shared image (SOURCES.md: the name without its last _suffix; obama_* is obama)."""
    stem = path.stem
    return "obama" if stem.startswith("obama") else stem.rsplit("_", 1)[0]


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


def main(
    pairs: Annotated[Path, typer.Option(help="CSV with header image_a,image_b,same")],
    threshold: Annotated[
        float, typer.Option(help="threshold to report last (default: the platform's)")
    ] = DEFAULT_THRESHOLD,
) -> None:
    """Print TAR/FAR over thresholds, margins, the combination study, and the configured-threshold line."""
    try:
        rows = read_pairs(pairs)
        verifier = DlibFaceVerifier(threshold=threshold)
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
    tar, far = rates(outcomes, threshold)
    print(f"configured threshold={threshold} TAR={tar:.4f} FAR={far:.4f} pairs={len(outcomes)}")


if __name__ == "__main__":
    typer.run(main)
