#!/usr/bin/env python3
"""Native-resolution detection against the shrunken whole frame, on classroom scenes at real distances.

Builds classroom frames (python/devtools/classroom.py: rows of real people with faces 80/60/45/36/28 px wide
in 1920x1080, and the same rows spread over a 3840x2160 frame), enrols every student from two other photos,
and for each way of detecting reports per row how many faces were found and named, wrong names, and the
detector's time per frame:

- full_frame: the whole frame shrunk to DET_SIZE (what the service did before, and plain InsightFace);
- native: the same detector on the whole frame at its own resolution, one pass (the reference the issue
  compares against: "det_size 1920");
- auto: the service's default (recognition/detection.py: full pass + native tiles, merged).

Also the camera path's cost (sessions/face_finder.py at 1 frame/s, MOTION_THRESHOLD 8, MOTION_MAX_SKIP_S 3)
on a still class (sensor grain only) and on one where everyone moves every frame: detector milliseconds and
regions per processed frame, full_frame against auto.

usage: .venv/bin/python scripts/measure_detection.py [--report docs/detection.json] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

import cv2  # noqa: E402
from devtools.classroom import ROWS_1080P, cast, classroom, seat_of  # noqa: E402
from devtools.shared import MODEL_PACK  # noqa: E402
from recognition_service.recognition.detection import (  # noqa: E402
    DetectionSettings,
    Region,
    find_faces,
    merge,
    run_region,
)
from recognition_service.recognition.engine import align, detect_faces  # noqa: E402
from recognition_service.recognition.gallery import Gallery  # noqa: E402
from recognition_service.recognition.model import load_face_model  # noqa: E402


def native_pass(model, frame):
    h, w = frame.shape[:2]
    return merge([run_region(model, frame, Region(0, 0, w, h, native=True), 640)])


def score(model, gallery, frame, seats, boxes, kps, threshold, margin):
    rows = {}
    wrong = 0
    crops = align(frame, kps)
    embeddings = model.embed(crops) if crops else np.zeros((0, model.info.embedding_size), np.float32)
    matches = gallery.match(embeddings, threshold=threshold, margin=margin) if len(embeddings) else []
    for box, match in zip(boxes, matches):
        seat = seat_of(seats, box)
        if seat is None:
            continue
        row = rows.setdefault(seat.width, {"found": set(), "named": set()})
        row["found"].add(seat.person)
        if match.student_id == seat.person:
            row["named"].add(seat.person)
        elif match.student_id is not None:
            wrong += 1
    return rows, wrong


def camera_cost(model, people, frames: int) -> dict:
    """Detector time per processed camera frame (1 frame/s, the service's gate and finder), per scene."""
    import threading

    from recognition_service.sessions.face_finder import FaceFinder
    from recognition_service.sessions.motion import RegionGate

    slots = threading.BoundedSemaphore(1)
    rng = np.random.default_rng(0)
    out = {}
    for label, size in (("1080p", (1920, 1080)), ("4k", (3840, 2160))):
        still, _ = classroom(size, people=people, seed=0)
        moving = [classroom(size, people=people, seed=1 + i)[0] for i in range(4)]
        for mode in ("full_frame", "auto"):
            for scene in ("still", "moving"):
                finder = FaceFinder(DetectionSettings(mode=mode), RegionGate(8.0, 3.0))
                spent, regions = 0.0, 0
                for n in range(frames + 1):
                    if scene == "still":
                        frame = np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)
                    else:
                        frame = moving[n % len(moving)]
                    t0 = time.perf_counter()
                    found = finder.find(model, frame, float(n), slots)
                    if n:  # the first frame runs every region: not the steady state
                        spent += time.perf_counter() - t0
                        regions += found.regions_run if found else 0
                key = f"{label} {mode} {scene}"
                out[key] = {"detector_ms_per_frame": round(1000 * spent / frames, 1),
                            "regions_per_frame": round(regions / frames, 2)}
                print(key, out[key], flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per way (default 3)")
    parser.add_argument("--frames", type=int, default=30, help="camera frames per scene (default 30)")
    args = parser.parse_args(argv)
    model = load_face_model(MODEL_PACK, threads=os.cpu_count() or 2, det_threshold=0.5, concurrency=1)
    threshold, margin = 0.35, 0.03
    students = sum(n for _, n in ROWS_1080P)
    people = cast(students)
    ids, vectors = [], []
    for name, enrol, _, _, _ in people:
        for path in enrol:
            img = cv2.imread(str(path))
            b, k = detect_faces(model, img, 640)  # a portrait: full frame, padded when tight
            if len(b):
                ids.append(name)
                vectors.append(model.embed(align(img, k[:1]))[0])
    gallery = Gallery.from_vectors("measure", ids, np.stack(vectors))
    scenes = {"1080p": classroom((1920, 1080), people=people), "4k": classroom((3840, 2160), people=people)}
    ways = {
        "full_frame": lambda f: find_faces(model, f, DetectionSettings(mode="full_frame")),
        "native": lambda f: native_pass(model, f),
        "auto": lambda f: find_faces(model, f, DetectionSettings(mode="auto")),
    }
    out = {"date": time.strftime("%Y-%m-%d"), "model": model.info.detector, "cores": os.cpu_count(),
           "students": students, "rows_px": [w for w, _ in ROWS_1080P], "scenes": {}}
    for scene_name, (frame, seats) in scenes.items():
        per_scene = {}
        for way, run in ways.items():
            run(frame)  # warm-up: ONNX Runtime plans memory per input shape
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                boxes, kps = run(frame)
                times.append(time.perf_counter() - t0)
            rows, wrong = score(model, gallery, frame, seats, boxes, kps, threshold, margin)
            per_scene[way] = {
                "detect_ms": round(1000 * float(np.median(times)), 1),
                "found_by_row": [len(rows.get(w, {}).get("found", ())) for w, _ in ROWS_1080P],
                "named_by_row": [len(rows.get(w, {}).get("named", ())) for w, _ in ROWS_1080P],
                "wrong_names": wrong,
            }
            per_scene[way]["named"] = sum(per_scene[way]["named_by_row"])
            print(scene_name, way, per_scene[way], flush=True)
        out["scenes"][scene_name] = per_scene
    out["camera"] = camera_cost(model, people[:students], args.frames)
    text = json.dumps(out, indent=1)
    if args.report:
        args.report.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
