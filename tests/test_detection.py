"""Native-resolution detection without a model: tiling, merging, the region of interest and the region gate.

The detector here is a stand-in (it says where faces are in each region it is shown, like SCRFD would):
these tests check the geometry; tests/test_camera_worker.py and tests/test_classroom.py run the real one.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from recognition_service.recognition.detection import (
    DetectionSettings,
    Region,
    find_faces,
    merge,
    overlap_for,
    plan_regions,
    run_region,
    wanted,
)
from recognition_service.sessions.motion import RegionGate

SIZES = [(640, 480), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160), (1080, 1920), (4000, 3000)]


class StandInDetector:
    """Finds the faces (x1, y1, x2, y2) it was given wherever a region shows them whole (a face cut by the
    region's edge is found cut, as a real detector finds half a face), at the region's scale: a face smaller
    than `min_px` in the detector's input is missed, as SCRFD misses a 12 px face."""

    def __init__(self, faces, min_px: float = 16.0):
        self.faces, self.min_px, self.calls = np.asarray(faces, np.float32).reshape(-1, 4), min_px, []

    def detect(self, image, det_size, deadline=None):
        h, w = image.shape[:2]
        size = (det_size, det_size) if isinstance(det_size, int) else det_size
        scale = min(size[0] / w, size[1] / h)
        self.calls.append((w, h, size))
        # where this image sits in the frame: the tests hand it views of one frame
        base = image.__array_interface__["data"][0] - self.frame.__array_interface__["data"][0]
        oy, ox = divmod(base // self.frame.strides[1], self.frame.shape[1])
        out, kps = [], []
        for x1, y1, x2, y2 in self.faces:
            cx1, cy1 = max(x1, ox), max(y1, oy)
            cx2, cy2 = min(x2, ox + w), min(y2, oy + h)
            if cx2 - cx1 < 2 or cy2 - cy1 < 2 or (x2 - x1) * scale < self.min_px:
                continue
            out.append([cx1 - ox, cy1 - oy, cx2 - ox, cy2 - oy, 0.9 if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2)
                        else 0.6])
            kps.append(np.tile([[(cx1 + cx2) / 2 - ox, (cy1 + cy2) / 2 - oy]], (5, 1)))
        return np.asarray(out, np.float32).reshape(-1, 5), np.asarray(kps, np.float32).reshape(-1, 5, 2)


def _faces_grid(width, height, size, step):
    return [(x, y, x + size, y + size) for x in range(3, width - size - 3, step) for y in range(3, height - size - 3,
                                                                                                 step)]


@pytest.mark.parametrize("width,height", SIZES)
def test_tiles_cover_the_frame_and_every_small_face_lies_whole_in_one_tile(width, height):
    regions = plan_regions(width, height, DetectionSettings(mode="tiled"))
    tiles = [r for r in regions if r.native]
    covered = np.zeros((height, width), bool)
    for t in tiles:
        assert t.w <= 1024 and t.h <= 640 or (t.w == width or t.h == height)
        assert t.x >= 0 and t.y >= 0 and t.x + t.w <= width and t.y + t.h <= height
        assert t.input_size[0] % 32 == 0 and t.input_size[1] % 32 == 0
        covered[t.y:t.y + t.h, t.x:t.x + t.w] = True
    assert covered.all()
    overlap = overlap_for(width, height, 640)
    assert len({(t.w, t.h) for t in tiles}) == 1  # one input shape per camera: ONNX Runtime plans it once
    for x, y in itertools.product(range(0, width - overlap, 37), range(0, height - overlap, 41)):
        assert any(t.x <= x and x + overlap <= t.x + t.w and t.y <= y and y + overlap <= t.y + t.h for t in tiles)


def test_auto_tiles_only_frames_much_larger_than_the_detector_and_only_for_faces_it_would_miss():
    auto = DetectionSettings()
    assert [r.native for r in plan_regions(640, 480, auto)] == [False]
    assert [r.native for r in plan_regions(960, 540, auto)] == [False]   # shrunk 1.5x: tiles add little
    hd = plan_regions(1920, 1080, auto)
    assert hd[0] == Region(0, 0, 1920, 1080, native=False) and len(hd) == 5  # full pass + 2 x 2 tiles
    assert len(plan_regions(3840, 2160, auto)) == 1 + 20
    # a camera told to ignore faces under 60 px in 1080p: the full pass sees 60 / 3 = 20 px faces
    assert len(plan_regions(1920, 1080, DetectionSettings(min_face_px=60))) == 1
    assert len(plan_regions(1920, 1080, DetectionSettings(mode="full_frame"))) == 1
    # tiled on a small frame: one native tile is the frame, no separate full pass
    assert plan_regions(640, 480, DetectionSettings(mode="tiled")) == [Region(0, 0, 640, 480, native=True)]
    with pytest.raises(ValueError):
        DetectionSettings(mode="sideways")


def test_tiles_outside_the_region_of_interest_never_run():
    left_half = ((0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0))
    regions = plan_regions(3840, 2160, DetectionSettings(roi=left_half))
    tiles = [r for r in regions if r.native]
    assert tiles and all(t.x < 0.45 * 3840 for t in tiles)
    assert len(tiles) < 20


def test_a_face_cut_by_an_inner_tile_edge_is_dropped_there_and_found_whole_next_door():
    frame = np.zeros((1080, 1920, 3), np.uint8)
    tiles = [r for r in plan_regions(1920, 1080, DetectionSettings()) if r.native]
    edge = tiles[0].x + tiles[0].w  # the first tile's right edge, inside the second tile
    face = (edge - 20, 300, edge + 20, 340)  # 40 px, across that edge
    detector = StandInDetector([face])
    detector.frame = frame
    model = _Model(detector)
    cut, _ = run_region(model, frame, tiles[0], 640)
    assert len(cut) == 0
    whole, kps = run_region(model, frame, tiles[1], 640)
    assert whole[:, :4].tolist() == [list(face)] and kps.shape == (1, 5, 2)
    assert kps[0, 0].tolist() == [edge, 320]  # landmarks back in frame coordinates


class _Model:
    def __init__(self, detector):
        self.detector = detector

    def detect(self, image, det_size, deadline=None):
        return self.detector.detect(image, det_size)


@pytest.mark.parametrize("width,height", [(1920, 1080), (3840, 2160)])
def test_every_face_from_20_to_200_px_is_found_once_at_native_scale(width, height):
    """Faces on a grid all over the frame, many across tile edges: each found exactly once, uncut."""
    frame = np.zeros((height, width, 3), np.uint8)
    faces = []
    for size, step in ((20, 97), (28, 131), (45, 173), (80, 251), (200, 613)):
        faces += _faces_grid(width, height, size, step)
    # keep them apart (a real room has no overlapping faces)
    kept = []
    for f in faces:
        if all(f[2] < g[0] or g[2] < f[0] or f[3] < g[1] or g[3] < f[1] for g in kept):
            kept.append(f)
    detector = StandInDetector(kept)
    detector.frame = frame
    boxes, kps = find_faces(_Model(detector), frame, DetectionSettings())
    assert sorted(map(tuple, boxes[:, :4].tolist())) == sorted(map(tuple, np.float32(kept).tolist()))
    # the full pass alone misses the small ones
    detector.calls.clear()
    small, _ = find_faces(_Model(detector), frame, DetectionSettings(mode="full_frame"))
    assert len(small) < len(kept) and len(detector.calls) == 1


@pytest.mark.parametrize("width,height", [(3024, 4032), (3840, 2160)])
def test_a_portrait_is_not_tiled_but_one_face_among_unseen_small_ones_is(width, height):
    """A lone face filling the photo (a portrait, a selfie) ends the search after the full pass; a lone face
    that is small for the photo (someone near in a hall of distant faces) does not: tiles find the rest."""
    frame = np.zeros((height, width, 3), np.uint8)
    side = min(width, height) // 3
    portrait = StandInDetector([(width // 3, height // 4, width // 3 + side, height // 4 + side)])
    portrait.frame = frame
    boxes, _ = find_faces(_Model(portrait), frame, DetectionSettings())
    assert len(boxes) == 1 and len(portrait.calls) == 1
    near = (100, 100, 100 + int(0.1 * min(width, height)), 100 + int(0.1 * min(width, height)))
    hall = StandInDetector([near] + _faces_grid(width, height, 30, 400)[5:])
    hall.frame = frame
    boxes, _ = find_faces(_Model(hall), frame, DetectionSettings())
    assert len(hall.calls) > 1 and len(boxes) > 1
    # asked for tiles, a portrait gets them
    tiled = StandInDetector(portrait.faces)
    tiled.frame = frame
    find_faces(_Model(tiled), frame, DetectionSettings(mode="tiled"))
    assert len(tiled.calls) > 1


def test_merge_keeps_the_best_box_per_face_with_its_landmarks():
    a = (np.float32([[100, 100, 140, 140, 0.7], [500, 500, 530, 530, 0.8]]), np.float32(np.full((2, 5, 2), 1)))
    b = (np.float32([[102, 101, 141, 142, 0.9], [900, 100, 930, 130, 0.6]]), np.float32(np.full((2, 5, 2), 2)))
    partial = (np.float32([[500, 500, 515, 530, 0.95]]), np.float32(np.full((1, 5, 2), 3)))  # half of a face
    boxes, kps = merge([a, b, partial])
    assert boxes[:, 4].tolist() == pytest.approx([0.95, 0.9, 0.6])
    assert kps[1, 0, 0] == 2  # the 0.9 box of the first face kept its own landmarks
    assert len(merge([])[0]) == 0 and merge([])[1].shape == (0, 5, 2)


def test_region_of_interest_and_minimum_face_size_filter_by_the_face_centre():
    boxes = np.float32([[10, 10, 40, 40, 0.9], [900, 500, 960, 560, 0.9], [1500, 100, 1520, 120, 0.9]])
    kps = np.zeros((3, 5, 2), np.float32)
    roi = ((0.4, 0.3), (0.6, 0.3), (0.6, 0.7), (0.4, 0.7))
    kept, _ = wanted(boxes, kps, 1920, 1080, DetectionSettings(roi=roi))
    assert kept[:, 0].tolist() == [900]
    kept, _ = wanted(boxes, kps, 1920, 1080, DetectionSettings(min_face_px=25))
    assert kept[:, 0].tolist() == [10, 900]


def test_the_region_gate_runs_only_the_tiles_that_changed_and_refreshes_one_stale_region_at_a_time():
    """A still picture: one region every max_skip_s (the one left longest), all of them in turn."""
    regions = plan_regions(1920, 1080, DetectionSettings())
    gate = RegionGate(threshold=8.0, max_skip_s=3.0)
    rng = np.random.default_rng(0)
    still = rng.integers(60, 200, (1080, 1920, 3), dtype=np.uint8)
    assert gate.due(still, regions, 0.0) == list(range(len(regions)))  # the first frame: everything
    assert gate.due(still, regions, 1.0) == []                           # nothing changed
    assert gate.due(still, regions, 2.0) == []
    ticks = [3.0 * k + dt for k in range(1, len(regions) + 1) for dt in (0.0, 1.0, 2.0)]  # a frame a second
    stale = {t: gate.due(still, regions, t) for t in ticks}
    assert all(len(stale[t]) == 1 for t in ticks if t % 3 == 0), stale
    assert all(stale[t] == [] for t in ticks if t % 3), stale  # nothing between two refreshes
    assert sorted(sum(stale.values(), [])) == list(range(len(regions)))
    # a student stands up in the bottom-right corner: the full pass and the tiles holding that spot
    moved = still.copy()
    moved[900:1000, 1700:1800] = 230
    due = gate.due(moved, regions, ticks[-1] + 0.5)
    assert 0 in due and 1 < len(due) < len(regions)
    assert all(regions[i].x + regions[i].w > 1700 and regions[i].y + regions[i].h > 900 for i in due)
    # the lights go up: the whole picture changes alike, nothing needs the detector for it
    brighter = np.clip(moved.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    fresh = RegionGate(threshold=8.0, max_skip_s=3.0)
    fresh.due(moved, regions, 0.0)
    assert fresh.due(brighter, regions, 1.0) == []
    assert RegionGate(0, 3.0).due(still, regions, 0.0) == list(range(len(regions)))
