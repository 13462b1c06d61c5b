#!/usr/bin/env python3
"""Measure one Gunicorn worker's RSS over N recognitions (default 5,000): after the first 500 vs at the end.

Starts python/start_production.py with WORKERS=1 on the embedded database in a temporary DATA_DIR
(or DATABASE_URL if set), enrols a few people, then sends recognitions of ../shared/faces photos.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from devtools.servers import Server
from devtools.shared import IDENTITIES, SAMPLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="recognitions to send (default 5000)")
    parser.add_argument("--warmup", type=int, default=500, help="requests before the RSS baseline (default 500)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients sending at once (default 4)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="memory-"))
    server = Server("gunicorn", os.environ.get("DATABASE_URL", ""), tmp, WORKERS=1, THREADS=4,
                    ORT_THREADS=os.cpu_count() or 1, MAX_REQUESTS=0, LOG_LEVEL="WARNING").wait_ready(120)
    try:
        worker = psutil.Process(server.proc.pid).children()[0]
        people = sorted(p for p in IDENTITIES.iterdir() if p.is_dir())[:10]
        for person in people:
            photo = sorted(person.iterdir())[0]
            requests.post(f"{server.url}/api/v1/students/{person.name}/faces",
                          files={"image": (photo.name, photo.read_bytes())}, timeout=60)
        photos = [p.read_bytes() for p in sorted(IDENTITIES.glob("*/*")) if p.suffix in (".jpg", ".png")]
        photos += [(SAMPLES / n).read_bytes() for n in ("five_faces.jpg", "large_3024x4032.jpg", "grayscale_L.png")]
        feed = itertools.cycle(photos)
        errors, rss = 0, {}

        def one(data: bytes) -> int:
            return requests.post(server.url + "/api/v1/recognize", files={"image": ("p.jpg", data)},
                                 timeout=120).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            done = 0
            for batch_start in range(0, args.requests, 100):
                batch = [next(feed) for _ in range(min(100, args.requests - batch_start))]
                errors += sum(code != 200 for code in pool.map(one, batch))
                done += len(batch)
                if done == args.warmup:
                    rss["after_warmup"] = worker.memory_info().rss
                if done % 1000 == 0:
                    print(f"{done} requests, RSS {worker.memory_info().rss / 2**20:.1f} MiB", flush=True)
        rss["end"] = worker.memory_info().rss
        elapsed = time.monotonic() - started
        growth = (rss["end"] - rss["after_warmup"]) / rss["after_warmup"] * 100
        print(f"requests: {args.requests}, errors: {errors}, {args.requests / elapsed:.1f} req/s")
        print(f"worker RSS after {args.warmup}: {rss['after_warmup'] / 2**20:.1f} MiB; "
              f"at the end: {rss['end'] / 2**20:.1f} MiB; growth {growth:+.2f}%")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
