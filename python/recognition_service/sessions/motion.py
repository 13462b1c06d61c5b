"""Tells a camera which parts of its picture changed, so the detector runs only where it may find something new."""

from __future__ import annotations

import cv2
import numpy as np

GRID = (48, 27)  # cells across and down: a cell of a 1080p frame is 40 px, about a face at classroom distance
REFRESH_FRAMES = 3  # a still picture's safety-net detection comes at most once in this many frames


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame as a small grey grid of cell averages (sensor grain and compression noise average out)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(grey, GRID, interpolation=cv2.INTER_AREA).astype(np.float32)


class RegionGate:
    """Says which detection regions of a frame (recognition/detection.py: the full pass, native tiles) need
    the detector: those whose picture changed by more than `threshold` grey levels in some cell since they
    last ran; when none changed and no region has run for `max_skip_s` and `REFRESH_FRAMES` frames, the one
    longest unrun (a safety net for what the gate cannot see, such as a small face turning in a cell that
    hardly changes). So a still picture is searched again in full every `max_skip_s` x regions (15 s for a
    1080p frame's five), one region at a time: a still class costs one detector run every `max_skip_s`,
    and on a worker over capacity, whose frames come further apart, one every `REFRESH_FRAMES` frames, so a
    late frame costs no more than a timely one. threshold 0: every region, every frame.

    The full pass covers every cell, so it runs whenever anything moved; a tile runs only when its own
    part of the picture moved: one student standing up re-detects the tiles around them, not the room.
    """

    def __init__(self, threshold: float, max_skip_s: float):
        self.threshold, self.max_skip_s = threshold, max_skip_s
        self._regions: list | None = None
        self._refs: list[np.ndarray | None] = []
        self._last: list[float] = []
        self._cells: list[tuple[slice, slice]] = []
        self._frames_since_run = 0

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
        self._frames_since_run += 1
        if not due and now - max(self._last) >= self.max_skip_s and self._frames_since_run >= REFRESH_FRAMES:
            due = [int(np.argmin(self._last))]
        if due:
            self._frames_since_run = 0
        for i in due:
            self._refs[i], self._last[i] = small, now
        return due
