#!/usr/bin/env python3
"""Measure camera sessions: how many cameras one worker sustains, and how cameras affect upload latency.

Starts python/start_production.py with one worker (cameras and uploads share its model) on the
embedded database in a temporary DATA_DIR (or DATABASE_URL) and enrols the Big Bang Theory cast.

`capacity` (default): for each scene (a still classroom; a queue of people at one spot, one after
another) and each camera count, file cameras processing one frame per second each; reports the frames
processed per camera per second (1.0 = sustained), detector runs, faces detected and embedded.
`uploads`: for each CAMERA_INFERENCE_CONCURRENCY, uploads alone, then uploads while a session reads
--cameras copies of the classroom video as fast as it can (frame_interval_ms=0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import requests
from devtools.servers import Server
from devtools.shared import IDENTITIES
from devtools.streams import BBT, build_video, face_at, still_frames, write_video

COUNTERS = ("frames", "detector_runs", "faces_detected", "faces_embedded")


def uploads(url: str, photos: list[bytes], n: int, clients: int) -> dict:
    def one(i: int) -> float:
        t0 = time.perf_counter()
        r = requests.post(url + "/api/v1/recognize", files={"image": ("p.jpg", photos[i % len(photos)])}, timeout=120)
        r.raise_for_status()
        return (time.perf_counter() - t0) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = sorted(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    return {"requests": n, "per_s": round(n / wall, 2), "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(lat[int(0.95 * (n - 1))], 1)}


def camera_totals(url: str, *slots: int) -> dict:
    """Counters summed over the sessions' cameras (detector_runs is absent before version 0.6)."""
    cams = [c for slot in slots for c in requests.get(f"{url}/api/v1/sessions/{slot}", timeout=10).json()["cameras"]]
    return {k: sum(c.get(k, c["frames"] if k == "detector_runs" else 0) for c in cams) for k in COUNTERS}


def start_server(tmp: Path, **env) -> Server:
    server = Server("gunicorn", os.environ.get("DATABASE_URL", ""), tmp, WORKERS=1, THREADS=4, MAX_REQUESTS=0,
                    LOG_LEVEL="WARNING", **env).wait_ready(120)
    for person in sorted((BBT / "portraits").iterdir()):
        files = [("image", (p.name, p.read_bytes())) for p in sorted(person.iterdir())[:3]]
        requests.post(f"{server.url}/api/v1/students/{person.name}/faces", files=files,
                      timeout=60).raise_for_status()
    return server


def classroom_video(path: Path) -> Path:
    """A still classroom: the busiest Big Bang Theory still, held, with sensor grain on every frame."""
    frame = max(still_frames(), key=lambda f: int(f.std()))
    return write_video(path, [(frame, 100)], noise=2.0)


def queue_video(path: Path, url: str, people: int = 20) -> Path:
    """A queue at a door: identity photos with their face on the same spot, 1.2 s each, no gap."""
    spot, size, shots = (250, 140, 390, 300), (640, 480), []
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir()):
        photo = sorted(person.iterdir())[0]
        faces = requests.post(url + "/api/v1/embeddings", files={"image": ("p.jpg", photo.read_bytes())},
                              timeout=60).json().get("faces") or []
        if len(faces) == 1:
            shots.append((face_at(cv2.imread(str(photo)), faces[0]["bbox"], spot, size), 12))
        if len(shots) == people:
            break
    return write_video(path, shots)


def classroom_1080p_video(path: Path, url: str) -> Path:
    """A real 1080p classroom: 32 students in five rows, faces 80/60/45/36/28 px (devtools.classroom), all
    enrolled from two other photos; the class sits still with sensor grain, 10 frames/s."""
    from devtools.classroom import ROWS_1080P, cast, classroom

    people = cast(sum(n for _, n in ROWS_1080P))
    for name, photos, _, _, _ in people:
        requests.post(f"{url}/api/v1/students/{name}/faces", files=[("image", (p.name, p.read_bytes()))
                                                                      for p in photos], timeout=60).raise_for_status()
    frame, _ = classroom((1920, 1080), people=people, blur=1.0)
    return write_video(path, [(frame, 100)], noise=2.0)


def capacity(args, tmp: Path) -> list[dict]:
    server = start_server(tmp)
    results, slot = [], 700
    try:
        makers = {"classroom": lambda: classroom_video(tmp / "still-classroom.mp4"),
                  "queue": lambda: queue_video(tmp / "queue.mp4", server.url),
                  "classroom1080": lambda: classroom_1080p_video(tmp / "classroom-1080p.mp4", server.url)}
        videos = {scene: makers[scene]() for scene in args.scenes}
        for scene in args.scenes:
            for count in args.capacity:
                slots = []
                for first in range(0, count, 16):  # MAX_CAMERAS_PER_SESSION
                    slot += 1
                    cams = [{"camera_id": i, "url": str(videos[scene])} for i in range(first, min(count, first + 16))]
                    requests.post(server.url + "/api/v1/sessions", timeout=10, json={
                        "slot_id": slot, "cameras": cams, "frame_interval_ms": 1000,
                        "callback_url": "http://127.0.0.1:9/cb"}).raise_for_status()
                    slots.append(slot)
                time.sleep(args.warmup)
                before, t0 = camera_totals(server.url, *slots), time.perf_counter()
                time.sleep(args.seconds)
                after, wall = camera_totals(server.url, *slots), time.perf_counter() - t0
                for s in slots:
                    requests.post(f"{server.url}/api/v1/sessions/{s}/stop", timeout=10)
                d = {k: after[k] - before[k] for k in COUNTERS}
                frames = max(1, d["frames"])
                row = {"scene": scene, "cameras": count,
                       "frames_per_camera_per_s": round(d["frames"] / count / wall, 2),
                       "detector_runs_per_frame": round(d["detector_runs"] / frames, 3),
                       "faces_detected_per_frame": round(d["faces_detected"] / frames, 2),
                       "faces_embedded_per_face_detected": round(d["faces_embedded"] / max(1, d["faces_detected"]), 3)}
                print(json.dumps(row), flush=True)
                results.append(row)
                time.sleep(3)  # the stopped cameras let go
    finally:
        server.stop()
    return results


def run(concurrency: int, args, tmp: Path, video: Path, photos: list[bytes]) -> dict:
    server = start_server(tmp, ORT_THREADS=1, CAMERA_INFERENCE_CONCURRENCY=concurrency)
    try:
        url = server.url
        uploads(url, photos, 20, args.clients)  # warm-up
        alone = uploads(url, photos, args.requests, args.clients)
        slot = 900 + concurrency
        cameras = [{"camera_id": i, "url": str(video)} for i in range(args.cameras)]
        requests.post(url + "/api/v1/sessions", json={"slot_id": slot, "cameras": cameras, "frame_interval_ms": 0,
                                                      "callback_url": "http://127.0.0.1:9/cb"},
                      timeout=10).raise_for_status()
        time.sleep(5)
        before, t0 = camera_totals(url, slot), time.perf_counter()
        shared = uploads(url, photos, args.requests, args.clients)
        after, wall = camera_totals(url, slot), time.perf_counter() - t0
        frames = after["frames"] - before["frames"]
        requests.post(f"{url}/api/v1/sessions/{slot}/stop", timeout=10)
        return {"camera_inference_concurrency": concurrency, "uploads_alone": alone, "uploads_with_cameras": shared,
                "camera_frames_per_s": round(frames / wall, 2),
                "faces_detected_per_frame": round((after["faces_detected"]) / max(1, after["frames"]), 2),
                "faces_embedded_per_frame": round((after["faces_embedded"]) / max(1, after["frames"]), 2)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("capacity", "uploads"), default="capacity",
                        help="capacity: cameras per worker at 1 frame/s (default); uploads: latency beside cameras")
    parser.add_argument("--capacity", type=int, nargs="+", default=[8, 16, 32], metavar="N",
                        help="camera counts to try (default 8 16 32)")
    parser.add_argument("--scenes", nargs="+", choices=("classroom", "queue", "classroom1080"),
                        default=["classroom", "queue"],
                        help="scenes to try (default classroom queue; classroom1080: 32 students at real distances)")
    parser.add_argument("--seconds", type=float, default=40, help="measured seconds per capacity run (default 40)")
    parser.add_argument("--warmup", type=float, default=15, help="seconds before measuring (default 15)")
    parser.add_argument("--requests", type=int, default=200, help="uploads per measurement")
    parser.add_argument("--clients", type=int, default=2, help="upload clients sending at once (default 2)")
    parser.add_argument("--cameras", type=int, default=3, help="file cameras of the session (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8],
                        help="CAMERA_INFERENCE_CONCURRENCY values to compare (default: 1 = bounded, 8 = unbounded)")
    parser.add_argument("--report", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sessions-"))
    if args.mode == "capacity":
        results = capacity(args, tmp)
    else:
        video = build_video(tmp / "classroom.mp4")
        photos = [p.read_bytes() for p in sorted(IDENTITIES.glob("*/*"))[:100] if p.suffix in (".jpg", ".png")]
        results = [run(c, args, tmp, video, photos) for c in args.concurrency]
    text = json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "results": results}, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
