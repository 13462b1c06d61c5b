"""Evidence images of session recognitions: a face crop and a downscaled frame, as JPEG under DATA_DIR."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

_JPEG = [int(cv2.IMWRITE_JPEG_QUALITY), 85]


def _crop(frame: np.ndarray, bbox, margin: float = 0.25) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    return frame[top:bottom, left:right]


def _downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)


def _write(path: Path, data: bytes) -> None:
    """Write through a temporary name so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        # Faces of children: readable by the service's own user only.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_evidence(root: Path, frame: np.ndarray, bbox, *, frame_max_side: int) -> tuple[str, str, str] | None:
    """Store the crop and frame; return (evidence_id, face_path, frame_path) relative to root, or None.

    A full or read-only disk skips the evidence with a warning: the recognition matters more.
    """
    evidence_id = str(uuid.uuid4())
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    face_rel, frame_rel = f"{day}/{evidence_id}_face.jpg", f"{day}/{evidence_id}_frame.jpg"
    try:
        ok1, face = cv2.imencode(".jpg", _crop(frame, bbox), _JPEG)
        ok2, small = cv2.imencode(".jpg", _downscale(frame, frame_max_side), _JPEG)
        if not (ok1 and ok2):
            raise ValueError("JPEG encoding failed")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / day).mkdir(mode=0o700, exist_ok=True)
        _write(root / face_rel, face.tobytes())
        _write(root / frame_rel, small.tobytes())
    except (OSError, ValueError) as exc:
        remove_files(root, [(face_rel, frame_rel)])
        log.warning("evidence not saved (%s); the recognition is recorded without it", exc)
        return None
    return evidence_id, face_rel, frame_rel


def resolve(root: Path, relative: str) -> Path | None:
    """The file for a stored relative path, refusing anything outside root."""
    path = (root / relative).resolve()
    if root.resolve() not in path.parents or not path.is_file():
        return None
    return path


def remove_files(root: Path, pairs) -> int:
    """Delete evidence files (missing ones are fine); return how many were removed."""
    removed = 0
    for pair in pairs:
        for rel in pair:
            try:
                (root / rel).unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove evidence file %s: %s", rel, exc)
    return removed
