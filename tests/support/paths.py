"""Where the repository and the shared test data are."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
