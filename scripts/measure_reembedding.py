#!/usr/bin/env python3
"""Measure a model change: how fast the kept face crops are re-embedded with the next model, and what it
costs the uploads served meanwhile.

Starts python/start_production.py (production defaults: two workers) on the embedded database in a
temporary DATA_DIR (or DATABASE_URL), enrols every photo of ../shared/faces/identities with the first model
(crops kept), then restarts it with SHADOW_MODEL_DIR set to the second and times the re-embedding, while a
client sends /recognize requests (their latency is compared with the same requests before). Both ways:
buffalo_s_int8 -> mobilefacenet_128d, then, after a switch and a purge, mobilefacenet_128d -> buffalo_s_int8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from devtools.servers import Server
from devtools.shared import IDENTITIES, MODEL_PACK, REPO_ROOT
from recognition_service.recognition.model import recognizer_fingerprint

PACKS = {"buffalo_s_int8": MODEL_PACK, "mobilefacenet_128d": MODEL_PACK.parent / "mobilefacenet_128d"}


def enrol_all(url: str) -> int:
    def one(person: Path) -> int:
        files = sorted(person.iterdir())[:10]
        r = requests.post(f"{url}/api/v1/students/{person.name}/faces", timeout=120,
                          files=[("image", (f.name, f.read_bytes())) for f in files])
        return len(r.json().get("faces", [])) if r.status_code == 201 else 0

    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(one, sorted(p for p in IDENTITIES.iterdir() if p.is_dir())))


def latencies(url: str, photos: list[bytes], stop: threading.Event | None = None, n: int = 60) -> list[float]:
    """/recognize latencies (ms), n requests or until `stop`."""
    out, i = [], 0
    while (stop is None and len(out) < n) or (stop is not None and not stop.is_set()):
        started = time.perf_counter()
        requests.post(f"{url}/api/v1/recognize", files={"image": ("p.jpg", photos[i % len(photos)])}, timeout=60)
        out.append((time.perf_counter() - started) * 1000)
        i += 1
    return out


def change(tmp: Path, database_url: str, active: str, shadow: str, photos: list[bytes]) -> dict:
    """Start with `shadow` as SHADOW_MODEL_DIR; time its re-embedding with uploads running beside it."""
    server = Server("gunicorn", database_url, tmp, MODEL_DIR=PACKS[active], SHADOW_MODEL_DIR=PACKS[shadow],
                    SHADOW_SAMPLE_RATE=0, LOG_LEVEL="WARNING").wait_ready(120)
    stop = threading.Event()
    busy: list[float] = []
    client = threading.Thread(target=lambda: busy.extend(latencies(server.url, photos, stop)))
    try:
        started = time.perf_counter()
        client.start()
        while True:
            status = requests.get(server.url + "/api/v1/models", timeout=10).json()["reembedding"].get("shadow")
            if status and status["state"] == "done":
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stop.set()
        client.join()
        idle = latencies(server.url, photos)
        return {"from": active, "to": shadow, "faces": status["embedded"], "wall_seconds": round(wall, 2),
                "faces_per_second_wall": round(status["embedded"] / wall, 1),
                "faces_per_second_embedding": status["faces_per_second"],
                "recognize_p50_ms_during": round(statistics.median(busy), 1) if busy else None,
                "recognize_requests_during": len(busy),
                "recognize_p50_ms_after": round(statistics.median(idle), 1)}
    finally:
        stop.set()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reembed-"))
    database_url = os.environ.get("DATABASE_URL", "")
    photos = [p.read_bytes() for p in sorted(IDENTITIES.glob("*/*"))[::7]][:40]

    first = Server("gunicorn", database_url, tmp, MODEL_DIR=PACKS["buffalo_s_int8"],
                   LOG_LEVEL="WARNING").wait_ready(120)
    try:
        enrolled = enrol_all(first.url)
    finally:
        first.stop()
    results = [change(tmp, database_url, "buffalo_s_int8", "mobilefacenet_128d", photos)]

    # Switch to mobilefacenet_128d, purge buffalo_s_int8's embeddings, and change back to it.
    env = {**os.environ, "MODEL_DIR": str(PACKS["mobilefacenet_128d"]), "DATA_DIR": str(tmp / "data")}
    if database_url:
        env["DATABASE_URL"] = database_url
    fingerprint, _ = recognizer_fingerprint(PACKS["buffalo_s_int8"])
    done = subprocess.run([sys.executable, str(REPO_ROOT / "python" / "manage_students.py"), "purge-model",
                           fingerprint], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise SystemExit(done.stderr)
    results.append(change(tmp, database_url, "mobilefacenet_128d", "buffalo_s_int8", photos))

    text = json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "faces_enrolled": enrolled,
                       "workers": 2, "results": results}, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
