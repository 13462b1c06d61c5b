"""A camera's faces, frame after frame: native-resolution detection run only where the picture changed.

recognition/detection.py plans a frame's regions (the full pass at DET_SIZE and native tiles) and runs
them; motion.RegionGate says which of them changed since they last ran. The finder runs those, keeps
each region's last detections, and merges them all: a still class costs one region per frame at most,
a student who stands up costs the tiles around them, a class that moves at once costs every region.
The camera worker only asks it for this frame's faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recognition_service import metrics
from recognition_service.recognition.detection import (
    DetectionSettings,
    merge,
    plan_regions,
    run_padded,
    run_region,
    wanted,
)
from recognition_service.sessions.motion import RegionGate


@dataclass
class Found:
    """This frame's faces in frame coordinates (N x 5 boxes with scores, N x 5 x 2 landmarks)."""

    boxes: np.ndarray
    kps: np.ndarray
    regions_run: int    # detector runs spent on this frame
    tiles_run: int      # of which native-resolution tiles


PADDED = -1  # the key of the padded pass's faces among the regions' (they never overlap: it runs only
             # when the regions found nothing)


class FaceFinder:
    def __init__(self, detection: DetectionSettings, gate: RegionGate):
        self.detection, self.gate = detection, gate
        self._size: tuple[int, int] | None = None
        self._regions: list = []
        self._found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def find(self, model, frame: np.ndarray, now: float, turn) -> Found | None:
        """The faces of this frame, or None when no region changed (the caller may skip the frame). `turn()`:
        a context manager holding this camera's turn on the model (sessions/scheduler.py)."""
        height, width = frame.shape[:2]
        if self._size != (width, height):  # the first frame, or the camera changed its resolution
            self._size, self._found = (width, height), {}
            self._regions = plan_regions(width, height, self.detection)
        due = self.gate.due(frame, self._regions, now)
        if not due:
            return None
        self._found.pop(PADDED, None)
        for i in due:
            region = self._regions[i]
            with turn():  # one region per turn: other cameras get the model between two regions
                self._found[i] = run_region(model, frame, region, self.detection.det_size)
            metrics.CAMERA_DETECTOR_PASSES.labels("tile" if region.native else "full").inc()
        boxes, kps = merge(list(self._found.values()))
        runs = len(due)
        if not len(boxes):
            # Nothing anywhere: a face filling the frame (a step from a door camera) is too large for the
            # detector's anchors; the padded pass finds it, as for an uploaded portrait (engine.detect_faces).
            # It stands, like a region's faces, until a region runs again.
            with turn():
                self._found[PADDED] = boxes, kps = run_padded(model, frame, self.detection.det_size)
            metrics.CAMERA_DETECTOR_PASSES.labels("padded").inc()
            runs += 1
        boxes, kps = wanted(boxes, kps, width, height, self.detection)
        tiles = sum(1 for i in due if self._regions[i].native)
        return Found(boxes, kps, runs, tiles)
