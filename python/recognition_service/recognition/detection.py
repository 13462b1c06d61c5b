"""Faces at the resolution the camera (or the photo) delivers: a frame and its settings in, boxes and
landmarks in frame coordinates out.

The detector is fully convolutional but is normally fed the whole frame shrunk to DET_SIZE (640 px): in a
1080p classroom a 36 px face in the back row reaches it as 12 px, below what it finds. So a frame larger
than the detector's input is searched in two ways, as Frigate searches regions at native resolution:

- the *full pass*: the whole frame at DET_SIZE, for near faces (cheap, one detector run);
- *tiles*: overlapping tiles cut at native scale, each fed to the detector at its own size, so a 28 px
  face reaches it as 28 px. A face no larger than the overlap lies wholly in some tile; detections cut by
  a tile's inner edge are dropped (the neighbour tile, or the full pass for a large face, holds it whole).

A face filling the frame (a portrait; a student a step from a door camera) is too large for the detector's
anchors: when nothing at all was found, the frame is searched once more on a padded canvas (`run_padded`),
for uploads and cameras alike.

Everything found is merged in frame coordinates by non-maximum suppression (landmarks stay with their
box), then an optional region of interest (a polygon in fractions of the frame) and a minimum face size
are applied. Which regions run on a given camera frame (only those whose picture changed) is the camera's
business (sessions/face_finder.py); this module only plans regions and runs the ones it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MODES = ("auto", "full_frame", "tiled")
# The smallest face the detector finds reliably, in pixels of its own input (SCRFD's stride-8 anchors): a
# face of S frame pixels is found by the full pass only when S x (DET_SIZE / longer side) is at least this.
DETECTOR_MIN_FACE = 16
# auto tiles a frame only when the full pass shrinks it by more than this: below, tiles would add little.
AUTO_MIN_SHRINK = 1.5
# The tile, in frame pixels (multiples of 32, as the detector's input must be). Measured on 2 cores with
# det_500m (scripts/measure_detection.py): per pixel, 1024x640 tiles cost no more than one native-resolution
# pass (at 4K half of it), smaller ones pay for more overlap, and this size keeps a camera's changed area
# (sessions/face_finder.py) fine enough that one student moving re-detects a quarter of a 1080p frame.
TILE_MAX = (1024, 640)
MIN_OVERLAP = 128  # frame pixels; at least the largest face the full pass may miss, with room to spare
EDGE_PX = 2        # a tile detection this close to an inner tile edge is cut by it
MERGE_IOU = 0.4    # two boxes overlapping more than this are one face
PAD_RATIO = 0.4    # border added on each side when nothing was found: a face filling the frame becomes detectable


@dataclass(frozen=True)
class DetectionSettings:
    """How to search one camera's frames (or one photo) for faces.

    mode: auto (tiles when the frame is much larger than DET_SIZE), full_frame (DET_SIZE only, the old
    behaviour and the cheapest) or tiled (always tiles at native scale). roi: polygon of (x, y) in
    fractions of the frame's width and height; faces whose centre lies outside are ignored, and tiles
    outside it never run. min_face_px: faces whose shorter side is smaller are ignored.
    """

    mode: str = "auto"
    det_size: int = 640
    min_face_px: float = 0.0
    roi: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"detection mode must be one of {', '.join(MODES)}")


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame the detector runs on: the full pass (native=False) or a tile."""

    x: int
    y: int
    w: int
    h: int
    native: bool

    @property
    def input_size(self) -> tuple[int, int]:
        """The detector's input (width, height): the tile's own size, or DET_SIZE square for the full pass."""
        return (_ceil32(self.w), _ceil32(self.h))


def _ceil32(v: float) -> int:
    return max(32, int(math.ceil(v / 32.0)) * 32)


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of equal tiles covering [0, length) with at least `overlap` shared between neighbours."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def tile_size(length: int, limit: int) -> int:
    """The side of the tiles covering `length`: always `limit` when the frame is larger, so every frame
    over TILE_MAX gives the detector one input shape (ONNX Runtime plans memory per shape: a worker's
    memory stays flat whatever resolutions its cameras and uploads come in)."""
    return min(length, limit)


def overlap_for(width: int, height: int, det_size: int) -> int:
    """The tile overlap: at least the smallest face the full pass finds in this frame, and MIN_OVERLAP."""
    shrink = max(width, height) / det_size
    return max(MIN_OVERLAP, _ceil32(1.25 * DETECTOR_MIN_FACE * shrink))


def wants_tiles(width: int, height: int, settings: DetectionSettings) -> bool:
    """Whether this frame is searched at native scale too."""
    if settings.mode == "full_frame":
        return False
    if settings.mode == "tiled":
        return True
    shrink = max(width, height) / settings.det_size
    if shrink <= AUTO_MIN_SHRINK:
        return False
    # faces at least min_face_px wide are all found by the full pass: tiles would find nothing more
    return settings.min_face_px / shrink < DETECTOR_MIN_FACE


def roi_mask_box(width: int, height: int, roi) -> tuple[int, int, int, int]:
    """The ROI's bounding box in frame pixels (the whole frame without a ROI)."""
    if not roi:
        return (0, 0, width, height)
    xs = [p[0] * width for p in roi]
    ys = [p[1] * height for p in roi]
    return (max(0, int(min(xs))), max(0, int(min(ys))), min(width, int(math.ceil(max(xs)))),
            min(height, int(math.ceil(max(ys)))))


def plan_regions(width: int, height: int, settings: DetectionSettings) -> list[Region]:
    """Where the detector runs on a frame of this size: the full pass first, then native tiles (if any)
    that meet the region of interest."""
    regions = [Region(0, 0, width, height, native=False)]
    if not wants_tiles(width, height, settings):
        return regions
    overlap = overlap_for(width, height, settings.det_size)
    tw, th = tile_size(width, TILE_MAX[0]), tile_size(height, TILE_MAX[1])
    rx1, ry1, rx2, ry2 = roi_mask_box(width, height, settings.roi)
    for y in _positions(height, th, overlap):
        for x in _positions(width, tw, overlap):
            if x < rx2 and x + tw > rx1 and y < ry2 and y + th > ry1:
                regions.append(Region(x, y, min(tw, width), min(th, height), native=True))
    if len(regions) == 2 and regions[1].w == width and regions[1].h == height:
        return regions[1:]  # one tile is the whole frame at native scale: the full pass adds nothing
    return regions


def run_padded(model, frame: np.ndarray, det_size: int, deadline=None) -> tuple[np.ndarray, np.ndarray]:
    """The full pass on the frame shrunk to det_size with a black border: the faces too large for the plain
    pass (a face filling the frame), boxes and landmarks in frame coordinates.

    The canvas pads a copy already scaled to det_size: the detector would shrink the padded image to
    det_size anyway, so it sees the same pixels, and the retry costs a few MB whatever the image size."""
    h, w = frame.shape[:2]
    scale = min(1.0, det_size / max(h, w))
    small = frame if scale == 1.0 else cv2.resize(
        frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    pad = int(round(max(small.shape[:2]) * PAD_RATIO))
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    del small
    try:
        boxes, kps = model.detect(padded, det_size, deadline)
    finally:
        del padded
    if len(boxes):
        boxes = boxes.copy()
        boxes[:, :4] = (boxes[:, :4] - pad) / scale
        kps = (kps - pad) / scale
    return boxes, kps


def run_region(model, frame: np.ndarray, region: Region, det_size: int,
               deadline=None) -> tuple[np.ndarray, np.ndarray]:
    """Detect in one region; boxes (N x 5) and landmarks (N x 5 x 2) in frame coordinates."""
    if not region.native:
        return model.detect(frame, det_size, deadline)
    tile = frame[region.y:region.y + region.h, region.x:region.x + region.w]
    boxes, kps = model.detect(tile, region.input_size, deadline)
    if not len(boxes):
        return boxes, kps
    fh, fw = frame.shape[:2]
    keep = np.ones(len(boxes), bool)
    # a box touching an inner edge is cut by it: the whole face is in a neighbour tile or the full pass
    if region.x > 0:
        keep &= boxes[:, 0] > EDGE_PX
    if region.y > 0:
        keep &= boxes[:, 1] > EDGE_PX
    if region.x + region.w < fw:
        keep &= boxes[:, 2] < region.w - EDGE_PX
    if region.y + region.h < fh:
        keep &= boxes[:, 3] < region.h - EDGE_PX
    boxes, kps = boxes[keep].copy(), kps[keep].copy()
    boxes[:, [0, 2]] += region.x
    boxes[:, [1, 3]] += region.y
    kps[:, :, 0] += region.x
    kps[:, :, 1] += region.y
    return boxes, kps


def merge(found: list[tuple[np.ndarray, np.ndarray]], iou_max: float = MERGE_IOU) -> tuple[np.ndarray, np.ndarray]:
    """One box per face from several regions' detections: greedy non-maximum suppression by score."""
    parts = [(b, k) for b, k in found if len(b)]
    if not parts:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    boxes = np.concatenate([b for b, _ in parts]).astype(np.float32)
    kps = np.concatenate([k for _, k in parts]).astype(np.float32)
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes, kps = boxes[order], kps[order]
    if len(parts) == 1:
        return boxes, kps
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if not len(rest):
            break
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        # IoU, or a box mostly inside the other (a partial face next to the whole one)
        overlap = np.maximum(inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9),
                             inter / np.maximum(np.minimum(areas[i], areas[rest]), 1e-9) * 0.5)
        alive[rest[overlap > iou_max]] = False
    return boxes[alive], kps[alive]


def wanted(boxes: np.ndarray, kps: np.ndarray, width: int, height: int,
           settings: DetectionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Drop faces smaller than min_face_px and faces whose centre is outside the region of interest."""
    if not len(boxes):
        return boxes, kps
    keep = np.ones(len(boxes), bool)
    if settings.min_face_px > 0:
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep &= sides >= settings.min_face_px
    if settings.roi:
        polygon = np.array([[x * width, y * height] for x, y in settings.roi], np.float32).reshape(-1, 1, 2)
        for i in np.nonzero(keep)[0]:
            cx, cy = float(boxes[i, 0] + boxes[i, 2]) / 2, float(boxes[i, 1] + boxes[i, 3]) / 2
            keep[i] = cv2.pointPolygonTest(polygon, (cx, cy), False) >= 0
    return boxes[keep], kps[keep]


def is_portrait(boxes: np.ndarray, width: int, height: int) -> bool:
    """One face, filling the photo: a portrait, a selfie, a kiosk's picture. Tiles at native scale would
    look for faces smaller than the full pass sees, and a portrait has none worth naming: on a 2-core
    server they cost a large portrait 10 to 20 detector runs (/recognize fell from 25.9 to 14.7 portraits a
    second when uploads were first tiled)."""
    if len(boxes) != 1:
        return False
    side = min(boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1])
    return side >= PORTRAIT_MIN_SHARE * min(width, height)


# A lone face at least this share of the photo's shorter side makes it a portrait (is_portrait). A class
# photo's nearest face rarely reaches a tenth of it; a passport photo's is about half, a selfie's more.
PORTRAIT_MIN_SHARE = 0.2


def find_faces(model, frame: np.ndarray, settings: DetectionSettings,
               deadline=None) -> tuple[np.ndarray, np.ndarray]:
    """Every face of one photo, each region run once: boxes (N x 5) and landmarks, best first. In auto mode
    a portrait found by the full pass is not tiled (is_portrait)."""
    height, width = frame.shape[:2]
    found = []
    for region in plan_regions(width, height, settings):
        if deadline is not None:
            deadline.check("detect")
        found.append(run_region(model, frame, region, settings.det_size, deadline))
        if (len(found) == 1 and not region.native and settings.mode == "auto"
                and is_portrait(found[0][0], width, height)):
            break
    boxes, kps = merge(found)
    return wanted(boxes, kps, width, height, settings)
