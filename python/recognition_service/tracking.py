"""Frame-to-frame face tracking by box overlap, so a recognised face is not embedded on every frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_IOU = 0.45
_MAX_MISSED = 2  # frames a track survives without a matching detection


@dataclass
class Track:
    bbox: np.ndarray
    student_id: str | None = None
    embedded_at: float = float("-inf")
    missed: int = 0


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N x 4) with every box in b (M x 4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class FaceTracker:
    """Keeps one track per face; says which detections need an embedding this frame.

    A face needs one when it is new, not yet recognised, or its last embedding is older than
    `reembed_s` (so a track that drifted onto someone else is corrected).
    """

    def __init__(self, reembed_s: float):
        self.reembed_s = reembed_s
        self.tracks: list[Track] = []

    def update(self, boxes: np.ndarray, now: float) -> tuple[list[Track], list[int]]:
        """Match this frame's boxes (N x 4) to tracks; return the track of each box and the boxes to embed."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        assigned: list[Track | None] = [None] * len(boxes)
        if self.tracks and len(boxes):
            overlap = iou(boxes, np.stack([t.bbox for t in self.tracks]))
            taken: set[int] = set()
            for flat in np.argsort(-overlap, axis=None):
                i, j = divmod(int(flat), overlap.shape[1])
                if overlap[i, j] < _MIN_IOU:
                    break
                if assigned[i] is None and j not in taken:
                    assigned[i] = self.tracks[j]
                    taken.add(j)
        matched = {id(t) for t in assigned if t is not None}
        survivors = []
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1
            if track.missed <= _MAX_MISSED:
                survivors.append(track)
        out: list[Track] = []
        to_embed: list[int] = []
        for i, box in enumerate(boxes):
            track = assigned[i]
            if track is None:
                track = Track(bbox=box)
                survivors.append(track)
            track.bbox, track.missed = box, 0
            out.append(track)
            if track.student_id is None or now - track.embedded_at >= self.reembed_s:
                to_embed.append(i)
        self.tracks = survivors
        return out, to_embed
