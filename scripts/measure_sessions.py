#!/usr/bin/env python3
"""Measure camera sessions: faces embedded per frame (tracking) and how cameras affect upload latency.

Starts python/start_production.py with one worker (cameras and uploads share its model) on the
embedded database in a temporary DATA_DIR (or DATABASE_URL), enrols the Big Bang Theory cast and
runs, for each CAMERA_INFERENCE_CONCURRENCY given: uploads alone, then uploads while a session
reads --cameras copies of the classroom video as fast as it can (frame_interval_ms=0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import Server  # noqa: E402
from shared import IDENTITIES  # noqa: E402
from streams import BBT, build_video  # noqa: E402


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


def camera_totals(url: str, slot: int) -> dict:
    cams = requests.get(f"{url}/api/v1/sessions/{slot}", timeout=10).json()["cameras"]
    return {k: sum(c[k] for c in cams) for k in ("frames", "faces_detected", "faces_embedded")}


def run(concurrency: int, args, tmp: Path, video: Path, photos: list[bytes]) -> dict:
    server = Server("gunicorn", os.environ.get("DATABASE_URL", ""), tmp, WORKERS=1, THREADS=4,
                    ORT_THREADS=1, CAMERA_INFERENCE_CONCURRENCY=concurrency, MAX_REQUESTS=0,
                    LOG_LEVEL="WARNING").wait_ready(120)
    try:
        url = server.url
        for person in sorted((BBT / "portraits").iterdir()):
            files = [("image", (p.name, p.read_bytes())) for p in sorted(person.iterdir())[:3]]
            requests.post(f"{url}/api/v1/students/{person.name}/faces", files=files, timeout=60).raise_for_status()
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
    parser.add_argument("--requests", type=int, default=200, help="uploads per measurement")
    parser.add_argument("--clients", type=int, default=2, help="upload clients sending at once (default 2)")
    parser.add_argument("--cameras", type=int, default=3, help="file cameras of the session (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8],
                        help="CAMERA_INFERENCE_CONCURRENCY values to compare (default: 1 = bounded, 8 = unbounded)")
    parser.add_argument("--report", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sessions-"))
    video = build_video(tmp / "classroom.mp4")
    photos = [p.read_bytes() for p in sorted(IDENTITIES.glob("*/*"))[:100] if p.suffix in (".jpg", ".png")]
    results = [run(c, args, tmp, video, photos) for c in args.concurrency]
    text = json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "results": results}, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
