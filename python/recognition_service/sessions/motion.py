"""Tells a camera when its picture has not changed, so the detector need not run on that frame."""

from __future__ import annotations

import cv2
import numpy as np

GRID = (48, 27)  # cells across and down: a cell of a 1080p frame is 40 px, about a face at classroom distance


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame as a small grey grid of cell averages (sensor grain and compression noise average out)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(grey, GRID, interpolation=cv2.INTER_AREA).astype(np.float32)


def change(a: np.ndarray, b: np.ndarray) -> float:
    """How much the picture changed: the largest cell difference, in grey levels, after removing the
    change shared by the whole frame (the lights, the camera's exposure)."""
    diff = a - b
    return float(np.abs(diff - float(np.median(diff))).max())


class MotionGate:
    """Says whether a frame needs the detector: it changed since the last detected frame (by more than
    `threshold` grey levels in some cell) or the last detection is `max_skip_s` old. threshold 0: always."""

    def __init__(self, threshold: float, max_skip_s: float):
        self.threshold, self.max_skip_s = threshold, max_skip_s
        self._last: np.ndarray | None = None
        self._last_at = float("-inf")

    def needs_detection(self, frame: np.ndarray, now: float) -> bool:
        small = thumbnail(frame)
        if (self.threshold > 0 and self._last is not None and now - self._last_at < self.max_skip_s
                and small.shape == self._last.shape and change(small, self._last) <= self.threshold):
            return False
        self._last, self._last_at = small, now
        return True
