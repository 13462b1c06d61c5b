#!/usr/bin/env python3
"""Measure camera sessions: how many cameras one worker sustains, and how cameras affect upload latency.

Starts python/start_production.py with one worker (cameras and uploads share its model) on the
embedded database in a temporary DATA_DIR (or DATABASE_URL) and enrols the Big Bang Theory cast.

`capacity` (default): for each scene and each camera count, cameras asking for one frame per second each;
reports the frames processed per camera per second (1.0 = sustained, with the slowest and fastest camera),
detector runs, faces detected and embedded, and how the streams were decoded. Scenes: classroom1080 (a
still 1080p class of 32 at real distances, enrolled), classroom4k (the same rows in a 4K frame), door (a
1080p door queue: two enrolled people at a time, 110 px faces, new ones every 1.2 s); the older
classroom and queue (640x480). Videos are H.264 at 10 frames/s with a keyframe a second (what the README
advises); --transport rtsp serves each scene from GStreamer's RTSP server on loopback (one live encoder
shared by all cameras of the scene: its CPU is part of the figure), file plays the files at their rate.
The worker runs with production defaults (ONNX Runtime threads = cores, recycling off so a run is not cut).
`uploads`: for each CAMERA_INFERENCE_CONCURRENCY, uploads alone, then uploads while a session reads
--cameras copies of the classroom video as fast as it can (frame_interval_ms=0).
"""

from __future__ import annotations

import argparse
import itertools
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
from devtools.streams import BBT, RtspCamera, build_video, face_at, still_frames, write_video

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


def camera_frames(url: str, *slots: int) -> dict:
    """Frames processed by each camera of the sessions."""
    return {(slot, c["camera_id"]): c["frames"] for slot in slots
            for c in requests.get(f"{url}/api/v1/sessions/{slot}", timeout=10).json()["cameras"]}


def camera_totals(url: str, *slots: int) -> dict:
    """Counters summed over the sessions' cameras (detector_runs is absent before version 0.6)."""
    cams = [c for slot in slots for c in requests.get(f"{url}/api/v1/sessions/{slot}", timeout=10).json()["cameras"]]
    return {k: sum(c.get(k, c["frames"] if k == "detector_runs" else 0) for c in cams) for k in COUNTERS}


def start_server(tmp: Path, **env) -> Server:
    env = {"ORT_THREADS": os.cpu_count() or 1, **env}  # production's default for one worker: every core
    server = Server("gunicorn", os.environ.get("DATABASE_URL", ""), tmp, WORKERS=1, THREADS=4, MAX_REQUESTS=0,
                    LOG_LEVEL="WARNING", **env).wait_ready(120)
    for person in sorted((BBT / "portraits").iterdir()):
        files = [("image", (p.name, p.read_bytes())) for p in sorted(person.iterdir())[:3]]
        requests.post(f"{server.url}/api/v1/students/{person.name}/faces", files=files,
                      timeout=60).raise_for_status()
    return server


def still_classroom_video(path: Path) -> Path:
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


def enrolled_class(url: str) -> list:
    """32 people of ../shared/faces enrolled from two photos each (their third is shown)."""
    from devtools.classroom import ROWS_1080P, cast

    people = cast(sum(n for _, n in ROWS_1080P))
    for name, photos, _, _, _ in people:
        requests.post(f"{url}/api/v1/students/{name}/faces", files=[("image", (p.name, p.read_bytes()))
                                                                      for p in photos], timeout=60).raise_for_status()
    return people


def classroom_video(path: Path, people: list, size: tuple[int, int]) -> Path:
    """A real classroom: 32 students in five rows, faces 80/60/45/36/28 px (devtools.classroom); the class
    sits still with sensor grain; H.264, 10 frames/s, a keyframe a second."""
    from devtools.classroom import classroom

    frame, _ = classroom(size, people=people, blur=1.0)
    return write_video(path, [(frame, 100)], noise=2.0, keyframe_every=10)


def door_video(path: Path, people: list) -> Path:
    """A door queue at 1080p: two people at a time, faces 110 px wide (a camera 1.5 m from the door),
    the next two every 1.2 s; H.264, 10 frames/s, a keyframe a second."""
    from devtools.classroom import classroom

    shots = []
    for i in range(0, len(people) - 1, 2):
        frame, _ = classroom((1920, 1080), rows=((110, 2),), people=people[i:i + 2], seed=i, blur=1.0)
        shots.append((frame, 12))
    return write_video(path, shots, noise=2.0, keyframe_every=10)


def capacity(args, tmp: Path) -> list[dict]:
    server = start_server(tmp)
    results, slot = [], 700
    try:
        people = enrolled_class(server.url) if set(args.scenes) & {"classroom1080", "classroom4k", "door"} else []
        makers = {"classroom": lambda: still_classroom_video(tmp / "still-classroom.mp4"),
                  "queue": lambda: queue_video(tmp / "queue.mp4", server.url),
                  "classroom1080": lambda: classroom_video(tmp / "classroom-1080p.mp4", people, (1920, 1080)),
                  "classroom4k": lambda: classroom_video(tmp / "classroom-4k.mp4", people, (3840, 2160)),
                  "door": lambda: door_video(tmp / "door.mp4", people)}
        videos = {scene: makers[scene]() for scene in args.scenes}
        for scene, transport in itertools.product(args.scenes, args.transport):
            camera = RtspCamera(videos[scene]).start() if transport == "rtsp" else None
            url = camera.url if camera else str(videos[scene])
            for count in args.capacity:
                slots = []
                for first in range(0, count, 16):  # MAX_CAMERAS_PER_SESSION
                    slot += 1
                    cams = [{"camera_id": i, "url": url} for i in range(first, min(count, first + 16))]
                    requests.post(server.url + "/api/v1/sessions", timeout=10, json={
                        "slot_id": slot, "cameras": cams, "frame_interval_ms": 1000,
                        "callback_url": "http://127.0.0.1:9/cb"}).raise_for_status()
                    slots.append(slot)
                time.sleep(args.warmup)
                before, t0 = camera_totals(server.url, *slots), time.perf_counter()
                first_frames = camera_frames(server.url, *slots)
                time.sleep(args.seconds)
                after, wall = camera_totals(server.url, *slots), time.perf_counter() - t0
                per_camera = [(n - first_frames[k]) / wall for k, n in camera_frames(server.url, *slots).items()]
                decoding = sorted({str(c.get("decoding")) for s in slots
                                   for c in requests.get(f"{server.url}/api/v1/sessions/{s}", timeout=10).json()["cameras"]})
                for s in slots:
                    requests.post(f"{server.url}/api/v1/sessions/{s}/stop", timeout=10)
                d = {k: after[k] - before[k] for k in COUNTERS}
                frames = max(1, d["frames"])
                row = {"scene": scene, "transport": transport, "cameras": count,
                       "frames_per_camera_per_s": round(d["frames"] / count / wall, 2),
                       "slowest_camera": round(min(per_camera), 2), "fastest_camera": round(max(per_camera), 2),
                       "frames_per_s": round(d["frames"] / wall, 2), "decoding": decoding,
                       "detector_runs_per_frame": round(d["detector_runs"] / frames, 3),
                       "faces_detected_per_frame": round(d["faces_detected"] / frames, 2),
                       "faces_embedded_per_face_detected": round(d["faces_embedded"] / max(1, d["faces_detected"]), 3)}
                print(json.dumps(row), flush=True)
                results.append(row)
                time.sleep(3)  # the stopped cameras let go
            if camera:
                camera.stop()
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
    parser.add_argument("--capacity", type=int, nargs="+", default=[1, 4, 8, 16, 32], metavar="N",
                        help="camera counts to try (default 1 4 8 16 32)")
    parser.add_argument("--scenes", nargs="+", choices=("classroom1080", "classroom4k", "door", "classroom", "queue"),
                        default=["classroom1080", "classroom4k", "door"],
                        help="scenes to try (default classroom1080 classroom4k door; classroom and queue: 640x480)")
    parser.add_argument("--transport", nargs="+", choices=("file", "rtsp"), default=["file"],
                        help="how the cameras are reached (default file)")
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
