"""The one place tests find ../shared (photos and models), overridable with SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """../shared beside the repo root, or $SHARED_DIR; fails loudly when missing."""
    path = Path(os.environ.get("SHARED_DIR") or REPO_ROOT.parent / "shared").resolve()
    if not (path / "faces").is_dir() or not (path / "models").is_dir():
        raise RuntimeError(f"test assets not found at {path}: put the shared folder (faces/, models/) "
                           "beside the repository or set SHARED_DIR")
    return path


SHARED = shared_dir()
FACES = SHARED / "faces"
SAMPLES = FACES / "samples"
IDENTITIES = FACES / "identities"
MODEL_PACK = SHARED / "models" / "buffalo_s_int8"


def identities(min_photos: int = 1) -> list[Path]:
    """The people of faces/identities (a folder each) with at least `min_photos` photos, by name."""
    return [p for p in sorted(IDENTITIES.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= min_photos]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor"): figures are reported beside it."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
