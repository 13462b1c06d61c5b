"""Tells a camera which parts of its picture changed, so the detector runs only where it may find something new."""

from __future__ import annotations

import cv2
import numpy as np

GRID = (48, 27)  # cells across and down: a cell of a 1080p frame is 40 px, about a face at classroom distance


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame as a small grey grid of cell averages (sensor grain and compression noise average out)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(grey, GRID, interpolation=cv2.INTER_AREA).astype(np.float32)


class RegionGate:
    """Says which detection regions of a frame (recognition/detection.py: the full pass, native tiles) need
    the detector: those whose picture changed by more than `threshold` grey levels in some cell since they
    last ran; when none changed, the one longest unrun once it is `max_skip_s` old (a still class refreshes
    one region per frame, not all at once). threshold 0: every region, every frame.

    The full pass covers every cell, so it runs whenever anything moved; a tile runs only when its own
    part of the picture moved: one student standing up re-detects the tiles around them, not the room.
    """

    def __init__(self, threshold: float, max_skip_s: float):
        self.threshold, self.max_skip_s = threshold, max_skip_s
        self._regions: list | None = None
        self._refs: list[np.ndarray | None] = []
        self._last: list[float] = []
        self._cells: list[tuple[slice, slice]] = []

    def _plan(self, regions: list, width: int, height: int) -> None:
        gw, gh = GRID
        self._regions = regions
        self._refs = [None] * len(regions)
        self._last = [float("-inf")] * len(regions)
        self._cells = [(slice(int(r.y * gh / height), max(int(r.y * gh / height) + 1, -(-(r.y + r.h) * gh // height))),
                        slice(int(r.x * gw / width), max(int(r.x * gw / width) + 1, -(-(r.x + r.w) * gw // width))))
                       for r in regions]

    def due(self, frame: np.ndarray, regions: list, now: float) -> list[int]:
        """Indexes of the regions to run on this frame; they count as run from `now`."""
        if regions is not self._regions:
            self._plan(regions, frame.shape[1], frame.shape[0])
        small = thumbnail(frame)
        due = []
        for i, ref in enumerate(self._refs):
            if self.threshold <= 0 or ref is None:
                due.append(i)
                continue
            # the largest cell difference in the region, after removing the change shared by the whole
            # frame (the lights, the camera's exposure)
            diff = small - ref
            if float(np.abs(diff[self._cells[i]] - float(np.median(diff))).max()) > self.threshold:
                due.append(i)
        if not due:
            oldest = int(np.argmin(self._last))
            if now - self._last[oldest] >= self.max_skip_s:
                due = [oldest]
        for i in due:
            self._refs[i], self._last[i] = small, now
        return due
