"""The protocol "k references of a person against one capture" on a labelled folder (one folder per person).

For every person and every image of theirs taken as the capture, the k reference photos are the next
k other images of that person (in name order, wrapping): a genuine trial. Every reference set is also
tried against every image of every other person: the impostor trials. Each image is encoded once
(the platform's own pipeline: content-sniffed decode, HOG, landmarks, descriptor) and cached for the
run. An image the verifier refuses counts as a rejection when it is the capture, and is left out of
reference sets (import would have refused it and the organiser sent another).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from platform_server.face.api import FaceImageError
from platform_server.face.dlib_verifier import REFERENCE_RULES, reference_distance
from platform_server.face.reference_photos import ReferencePhotoError, normalise_reference

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

    from platform_server.face.dlib_verifier import DlibFaceVerifier

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
TARGET_FAR = 0.001


@dataclass(frozen=True, slots=True)
class Person:
    """One labelled person: name and image paths in name order."""

    name: str
    images: tuple[Path, ...]


def read_folder(root: Path) -> list[Person]:
    """One Person per sub-folder holding images."""
    people = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if images:
            people.append(Person(folder.name, images))
    if not people:
        raise ValueError(f"{root} has no sub-folders with images (one folder per person)")
    return people


def encode_all(
    verifier: DlibFaceVerifier, people: list[Person]
) -> tuple[dict[Path, npt.NDArray[np.float64]], dict[Path, str]]:
    """Each image's descriptor (once), and why the others were refused."""
    encodings: dict[Path, npt.NDArray[np.float64]] = {}
    refused: dict[Path, str] = {}
    for person in people:
        for path in person.images:
            try:
                data = normalise_reference(path.read_bytes(), max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
                encodings[path] = verifier.encode(data)
            except (FaceImageError, ReferencePhotoError) as err:
                refused[path] = getattr(err, "problem", None) or str(err)
    return encodings, refused


@dataclass(frozen=True, slots=True)
class Trials:
    """Distances of the genuine and impostor trials of one k and rule (inf: the capture was refused)."""

    genuine: npt.NDArray[np.float64]
    impostor: npt.NDArray[np.float64]


def reference_sets(person: Person, usable: set[Path], k: int) -> list[tuple[Path, tuple[Path, ...]]]:
    """(capture, k references) for each image of the person, references the next usable others."""
    refs_pool = [p for p in person.images if p in usable]
    out = []
    for capture in person.images:
        others = [p for p in refs_pool if p != capture]
        if len(others) < k:
            continue
        start = refs_pool.index(capture) + 1 if capture in refs_pool else 0
        ordered = [others[(start + i) % len(others)] for i in range(len(others))]
        out.append((capture, tuple(ordered[:k])))
    return out


def run_trials(people: list[Person], encodings: dict[Path, npt.NDArray[np.float64]], k: int, rule: str) -> Trials:
    """Every genuine and impostor trial of the protocol for k references under a decision rule."""
    usable = set(encodings)
    everyone = [(person.name, path) for person in people for path in person.images]
    genuine: list[float] = []
    impostor: list[float] = []
    for person in people:
        for capture, refs in reference_sets(person, usable, k):
            stack = np.stack([encodings[r] for r in refs])
            genuine.append(reference_distance(stack, encodings[capture], rule) if capture in usable else np.inf)
            for name, other in everyone:
                if name == person.name:
                    continue
                impostor.append(reference_distance(stack, encodings[other], rule) if other in usable else np.inf)
    return Trials(np.array(genuine), np.array(impostor))


def tar_at_far(trials: Trials, target_far: float = TARGET_FAR) -> tuple[float, float, float]:
    """(TAR, FAR, threshold): the largest threshold whose FAR is at most target_far, and its TAR."""
    finite = np.sort(trials.impostor[np.isfinite(trials.impostor)])
    allowed = int(np.floor(target_far * len(trials.impostor)))
    # Accept at distance <= t: FAR <= target while fewer than allowed+1 impostors are at or below t.
    threshold = float(np.nextafter(finite[allowed], -np.inf)) if allowed < len(finite) else 1.5
    return (*rates(trials, threshold), threshold)


def rates(trials: Trials, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) at a threshold."""
    tar = float(np.mean(trials.genuine <= threshold)) if len(trials.genuine) else 0.0
    far = float(np.mean(trials.impostor <= threshold)) if len(trials.impostor) else 0.0
    return tar, far


def report(verifier: DlibFaceVerifier, root: Path, ks: tuple[int, ...] = (1, 2, 3)) -> None:
    """Print the k-reference protocol per rule: TAR at FAR <= 0.1%, its threshold, and the configured one's rates."""
    people = read_folder(root)
    started = time.perf_counter()
    encodings, refused = encode_all(verifier, people)
    images = sum(len(p.images) for p in people)
    print(
        f"k-reference protocol on {root}: {len(people)} people, {images} images, encoded in "
        f"{time.perf_counter() - started:.1f} s; refused {len(refused)}"
    )
    for path, why in sorted(refused.items()):
        print(f"  refused: {path.parent.name}/{path.name}: {why}")
    print("  k  rule       genuine  impostor  TAR@FAR<=0.1%  FAR     threshold  | at configured: TAR    FAR")
    # The same captures for every k: only people with enough usable photos for the largest k.
    enough = [p for p in people if sum(i in encodings for i in p.images) > max(ks)]
    for label, group in (("all people", people), (f"people with {max(ks) + 1}+ usable photos", enough)):
        print(f"  -- {label}: {len(group)}")
        _print_rows(verifier, group, encodings, ks)


def _print_rows(
    verifier: DlibFaceVerifier,
    people: list[Person],
    encodings: dict[Path, npt.NDArray[np.float64]],
    ks: tuple[int, ...],
) -> None:
    for k in ks:
        for rule in REFERENCE_RULES if k > 1 else REFERENCE_RULES[:1]:
            trials = run_trials(people, encodings, k, rule)
            tar, far, threshold = tar_at_far(trials)
            ctar, cfar = rates(trials, verifier.threshold)
            print(
                f"  {k}  {rule:<9}  {len(trials.genuine):7d}  {len(trials.impostor):8d}  {tar:13.4f}  {far:.4f}  "
                f"{threshold:9.4f}  |  {ctar:.4f}  {cfar:.4f}"
            )
