"""Face references in scenario files, resolved to image files, and the camera clips made from them.

A reference is one of (alternatives separated by `|`, the first that resolves wins):
- `faces:<file>`: a photo in the development faces folder (../shared/data/faces beside the
  repository, or $CHECKIN_FACES_DIR); absent outside this build environment;
- `astronaut`: the public-domain NASA portrait scikit-image ships (skimage.data.astronaut());
- a path relative to the scenario file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
FACES_ENV: Final = "CHECKIN_FACES_DIR"


def faces_dir() -> Path | None:
    """The development faces folder, when there is one."""
    configured = os.environ.get(FACES_ENV)
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "faces"
    return path if path.is_dir() else None


@dataclass(frozen=True, slots=True)
class ResolvedFace:
    """A face reference resolved to an image file, or the reason it could not be."""

    reference: str
    path: Path | None
    reason: str = ""


def _astronaut(work: Path) -> Path:
    out = work / "astronaut.png"
    if not out.exists():
        from skimage import data  # noqa: PLC0415 - a dependency only for this public-domain image

        rgb = np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
        work.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {out}")
    return out


def resolve_face(reference: str, *, base: Path, work: Path) -> ResolvedFace:
    """Resolve a reference (see the module docstring); never raises for a missing photo, says why instead."""
    reasons: list[str] = []
    for option in (o.strip() for o in reference.split("|")):
        if option == "astronaut":
            return ResolvedFace(reference, _astronaut(work))
        if option.startswith("faces:"):
            folder = faces_dir()
            name = option.removeprefix("faces:")
            if folder is None:
                reasons.append(f"{option}: no faces folder (../shared/data/faces or ${FACES_ENV})")
                continue
            candidate = folder / name
            if candidate.is_file():
                return ResolvedFace(reference, candidate)
            reasons.append(f"{option}: {candidate} does not exist")
            continue
        candidate = (base / option).resolve()
        if candidate.is_file():
            return ResolvedFace(reference, candidate)
        reasons.append(f"{option}: {candidate} does not exist")
    return ResolvedFace(reference, None, "; ".join(reasons) or f"empty face reference {reference!r}")
