"""Frame-to-frame face tracking by box overlap and appearance, so a face is embedded only when needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

_MIN_IOU = 0.45
_MAX_MISSED = 2  # detector runs a track survives without a matching detection
# Normalised correlation of two faces' 16x16 grey thumbnails (aligned crops). Measured on 80 photos of 40
# people: the same face in a "next frame" (recompressed, landmarks jittered 1.5 px, brightness +-5%) >= 0.96;
# two different people <= 0.84 (99th percentile 0.76). Below this, the face in the box is someone else.
SAME_FACE_MIN = 0.9
# An unnamed track is embedded on every detector run until it holds this many embeddings; after that
# (a stranger, or a face turned away) only on the re-embed timer or when its face changes.
SETTLE_AFTER = 8
# A camera that is behind (over capacity) settles an unnamed track sooner: after this many embeddings (the
# views a small face needs before it may be named), so a class full of not-yet-named faces does not cost
# an embedding per face on every slow frame.
SETTLE_AFTER_BEHIND = 3


@dataclass
class View:
    """One embedded sighting of a track's face: what a recognition's similarity and evidence come from."""

    embedding: np.ndarray
    weight: float
    frame: np.ndarray
    bbox: np.ndarray


@dataclass
class Track:
    bbox: np.ndarray
    student_id: str | None = None
    embedded_at: float = float("-inf")
    missed: int = 0
    signature: np.ndarray | None = None  # of the face as it was when last embedded
    total: np.ndarray | None = None      # weighted sum of this face's embeddings since it last changed
    weight: float = 0.0
    count: int = 0
    views: list[View] = field(default_factory=list)  # best few views while unnamed (frames for evidence)
    born: float = 0.0            # when the current face was first seen in this track
    largest: float = 0.0         # the largest side of this face's embedded views, px (small faces wait longer)
    filed: bool = False          # filed for review already (unnamed for a while)

    def forget(self, now: float) -> None:
        """The face in this track is someone else since `now`: drop its name and everything seen of it."""
        self.student_id, self.total, self.weight, self.count, self.views = None, None, 0.0, 0, []
        self.filed, self.born, self.largest = False, now, 0.0

    def copy_unnamed(self) -> "Track":
        """What was seen of this unnamed face, kept apart before the track starts on another face."""
        return Track(bbox=self.bbox, total=self.total, weight=self.weight, count=self.count, views=self.views,
                     born=self.born, filed=self.filed, largest=self.largest)

    def aggregate(self) -> np.ndarray:
        """The L2-normalised weighted mean of the track's embeddings."""
        return self.total / max(float(np.linalg.norm(self.total)), 1e-9)

    @property
    def settled(self) -> bool:
        return self.student_id is None and self.count >= SETTLE_AFTER


def face_signature(aligned_crop: np.ndarray) -> np.ndarray:
    """A cheap appearance signature of an aligned face: its 16x16 grey thumbnail, zero-mean, unit-norm."""
    grey = cv2.cvtColor(aligned_crop, cv2.COLOR_BGR2GRAY) if aligned_crop.ndim == 3 else aligned_crop
    thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    return thumb / max(float(np.linalg.norm(thumb)), 1e-6)


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

    A face needs one when it is new, not yet named (until it settles), no longer looks like the face last
    embedded in its track (someone else stepped into the same spot, two people swapped places, a face
    passed in front of another: the track then forgets everything about the previous face at once), or
    its last embedding is older than `reembed_s`.
    """

    def __init__(self, reembed_s: float):
        self.reembed_s = reembed_s
        self.tracks: list[Track] = []
        self.ended: list[Track] = []  # tracks lost since the last take_ended()

    def take_ended(self) -> list[Track]:
        ended, self.ended = self.ended, []
        return ended

    def update(self, boxes: np.ndarray, now: float, signatures: list[np.ndarray] | None = None, *,
               refresh: bool = True) -> tuple[list[Track], list[int]]:
        """Match this frame's boxes (N x 4) to tracks; return the track of each box and the boxes to embed.

        `signatures` (face_signature of each box's aligned face) let a track notice a change of face.
        `refresh` False is a camera that cannot keep up dropping optional work: no re-embed timer (it only
        refreshes a best similarity, and on the timer a slow camera would re-embed every face on every
        frame, slowing it further), and unnamed faces settle after SETTLE_AFTER_BEHIND embeddings. The
        caller sets `embedded_at` and `signature` of the tracks it embedded (see track_decision).
        """
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
            else:
                self.ended.append(track)
        out: list[Track] = []
        to_embed: list[int] = []
        for i, box in enumerate(boxes):
            track = assigned[i]
            if track is None:
                track = Track(bbox=box, born=now)
                survivors.append(track)
            track.bbox, track.missed = box, 0
            out.append(track)
            changed = (signatures is not None and track.signature is not None
                       and float(signatures[i] @ track.signature) < SAME_FACE_MIN)
            if changed:
                if track.student_id is None and track.count:
                    self.ended.append(track.copy_unnamed())  # the previous face's track ends here
                track.forget(now)  # never carry a name, or embeddings, over to another face
            unnamed = track.student_id is None and not track.settled and (
                refresh or track.count < SETTLE_AFTER_BEHIND)
            if changed or unnamed or (refresh and now - track.embedded_at >= self.reembed_s):
                to_embed.append(i)
        self.tracks = survivors
        return out, to_embed
