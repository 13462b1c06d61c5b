#!/usr/bin/env python3
"""Benchmark: (a) the raw pipeline in-process, (b) the service over HTTP through Gunicorn, (c) the naive way.

All three on the same photos from ../shared/faces (portraits and classroom scenes), with the same
enrolled people; then a gallery sweep of matching time per face and RSS for 100 to 100,000 embeddings.
Prints a table and writes a JSON report.

Example: .venv/bin/python scripts/benchmark.py --report docs/benchmark.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import requests
from devtools.servers import Server, free_port
from devtools.shared import FACES, IDENTITIES, MODEL_PACK, cpu_model
from recognition_service.config import load_settings
from recognition_service.recognition.engine import analyse
from recognition_service.recognition.gallery import Gallery
from recognition_service.recognition.images import decode_image
from recognition_service.recognition.model import load_face_model
from recognition_service.recognition.thresholds import in_force

ROOT = Path(__file__).resolve().parent.parent

CORES = os.cpu_count() or 1


def photo_sets(portraits: int, scenes: int) -> dict[str, list[bytes]]:
    people = sorted(p for p in IDENTITIES.iterdir() if p.is_dir())
    # Every person's photos after the first (the first is enrolled), round-robin so all people appear.
    queues = [sorted(x for x in p.iterdir() if x.suffix in (".jpg", ".png"))[1:] for p in people]
    chosen = []
    while len(chosen) < portraits and any(queues):
        for q in queues:
            if q and len(chosen) < portraits:
                chosen.append(q.pop(0).read_bytes())
    classroom = sorted((FACES / "group" / "scenes").glob("*.jpg"))[:scenes]
    return {"portraits": chosen, "classroom": [p.read_bytes() for p in classroom]}


def enrolment_photos() -> list[tuple[str, bytes]]:
    out = []
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir()):
        first = sorted(x for x in person.iterdir() if x.suffix in (".jpg", ".png"))[0]
        out.append((person.name, first.read_bytes()))
    return out


def bench_raw(images: list[bytes], passes: int, threads: int, enrol: list[tuple[str, bytes]]) -> dict:
    """(a) decode, detect, align, embed, match in this process: `threads` callers, cores shared among them."""
    settings = load_settings(MODEL_DIR=str(MODEL_PACK), DATABASE_URL="unused")
    model = load_face_model(MODEL_PACK, threads=max(1, CORES // threads), det_threshold=settings.DET_THRESHOLD,
                            concurrency=threads)
    ids, vecs = [], []
    for name, data in enrol:
        faces = analyse(model, decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS,
                                            max_side=settings.DECODE_MAX_SIDE), settings.DET_SIZE)
        if faces:
            ids.append(name)
            vecs.append(faces[0].embedding)
    gallery = Gallery.from_vectors(model.info.fingerprint, ids, np.stack(vecs))

    def one(data: bytes) -> int:
        img = decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.DECODE_MAX_SIDE)
        faces = analyse(model, img, settings.DET_SIZE)
        if faces:
            gallery.match(np.stack([f.embedding for f in faces]), threshold=in_force(settings, model.info),
                          margin=settings.MATCH_MARGIN)
        return len(faces)

    with ThreadPoolExecutor(threads) as pool:
        sum(pool.map(one, images))  # warm-up pass: ONNX Runtime plans memory once per new input shape
        started = time.perf_counter()
        faces = sum(pool.map(one, images * passes))
    return _rates(len(images) * passes, faces, time.perf_counter() - started)


def _rates(n_images: int, n_faces: int, seconds: float) -> dict:
    return {"images": n_images, "faces": n_faces, "seconds": round(seconds, 2),
            "images_per_s": round(n_images / seconds, 2), "faces_per_s": round(n_faces / seconds, 2)}


def bench_http(url: str, images: list[bytes], passes: int, concurrency: int) -> dict:
    """Send every image `passes` times from `concurrency` clients; count faces answered."""
    local = threading.local()

    def one(data: bytes) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        r = session.post(url + "/api/v1/recognize", files={"image": ("p.jpg", data)}, timeout=300)
        r.raise_for_status()
        return len(r.json()["faces"])

    with ThreadPoolExecutor(concurrency) as pool:
        sum(pool.map(one, images))  # warm-up pass (every worker, every input shape), as for (a)
        started = time.perf_counter()
        faces = sum(pool.map(one, images * passes))
    return _rates(len(images) * passes, faces, time.perf_counter() - started)


def start_naive(database_url: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK), "PORT": str(port)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "naive_service.py")], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/health/ready", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the naive service did not start")


def gallery_sweep(sizes: list[int], dim: int = 512) -> list[dict]:
    """Matching time per face against n synthetic unit vectors (one probe, and a batch of 20), and RSS."""
    rng = np.random.default_rng(0)
    process = psutil.Process()
    out = []
    for n in sizes:
        before = process.memory_info().rss
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        gallery = Gallery.from_vectors("sweep", [f"s{i // 2}" for i in range(n)], vecs)  # 2 faces per student
        del vecs
        probes = rng.standard_normal((20, dim), dtype=np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        gallery.match(probes[:1], threshold=0.35, margin=0.03)
        reps = max(3, min(200, 2_000_000 // n))
        t0 = time.perf_counter()
        for i in range(reps):
            gallery.match(probes[i % 20: i % 20 + 1], threshold=0.35, margin=0.03)
        single = (time.perf_counter() - t0) / reps * 1000
        t0 = time.perf_counter()
        for _ in range(max(1, reps // 5)):
            gallery.match(probes, threshold=0.35, margin=0.03)
        batched = (time.perf_counter() - t0) / max(1, reps // 5) / 20 * 1000
        out.append({"embeddings": n, "ms_per_face_single": round(single, 3), "ms_per_face_batch20": round(batched, 3),
                    "rss_mib": round(process.memory_info().rss / 2**20, 1),
                    "rss_growth_mib": round((process.memory_info().rss - before) / 2**20, 1)})
        print(f"  gallery {n:>7}: {single:7.2f} ms/face alone, {batched:6.2f} ms/face in a batch of 20, "
              f"RSS +{out[-1]['rss_growth_mib']} MiB", flush=True)
        del gallery
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portraits", type=int, default=120, help="portrait photos per pass (default %(default)s)")
    parser.add_argument("--scenes", type=int, default=25, help="classroom photos per pass (default: all 25)")
    parser.add_argument("--passes", type=int, default=3,
                        help="timed passes over each photo set, after one warm-up pass (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients for (b) and (c)")
    parser.add_argument("--sweep", default="100,1000,10000,100000", help="gallery sizes, comma-separated ('' to skip)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "benchmark.json",
                        help="where to write the figures as JSON (default reports/benchmark.json)")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="benchmark-"))
    pg = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    sets = photo_sets(args.portraits, args.scenes)
    enrol = enrolment_photos()
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{cpu_model()}, {CORES} cores, "
                                f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
                     "model_pack": MODEL_PACK.name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                     "sets": {k: len(v) for k, v in sets.items()}}
    try:
        if "a" not in skip:
            for threads in sorted({1, CORES}):
                for name, images in sets.items():
                    r = bench_raw(images, args.passes, threads, enrol)
                    results.setdefault("a_raw", {}).setdefault(name, {})[f"{threads}_threads"] = r
                    print(f"(a) raw pipeline, {threads} thread(s), {name}: {r['images_per_s']} images/s, "
                          f"{r['faces_per_s']} faces/s", flush=True)
        if "b" not in skip or "c" not in skip:
            server = Server("gunicorn", pg.get_uri(), tmp, LOG_LEVEL="WARNING", MAX_REQUESTS=0).wait_ready(120)
            try:
                for name, data in enrol:
                    requests.post(f"{server.url}/api/v1/students/{name}/faces", files={"image": ("e.jpg", data)},
                                  timeout=120)
                if "b" not in skip:
                    for name, images in sets.items():
                        r = bench_http(server.url, images, args.passes, args.concurrency)
                        results.setdefault("b_service", {})[name] = r
                        print(f"(b) service (Gunicorn, production config), {name}: {r['images_per_s']} images/s, "
                              f"{r['faces_per_s']} faces/s", flush=True)
            finally:
                server.stop()
        if "c" not in skip:
            proc, url = start_naive(pg.get_uri(), tmp)
            try:
                for name, images in sets.items():
                    r = bench_http(url, images, args.passes, args.concurrency)
                    results.setdefault("c_naive", {})[name] = r
                    print(f"(c) naive (dev server, FaceAnalysis.get, query + loop), {name}: "
                          f"{r['images_per_s']} images/s, {r['faces_per_s']} faces/s", flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
        for name in sets:
            ratios = {}
            a = max((v["images_per_s"] for v in results.get("a_raw", {}).get(name, {}).values()), default=None)
            b = results.get("b_service", {}).get(name, {}).get("images_per_s")
            c = results.get("c_naive", {}).get(name, {}).get("images_per_s")
            if a and b:
                ratios["b_over_a"] = round(b / a, 3)
            if b and c:
                ratios["b_over_c"] = round(b / c, 2)
            if ratios:
                results.setdefault("ratios", {})[name] = ratios
                print(f"ratios, {name}: {ratios}")
        sizes = [int(x) for x in args.sweep.split(",") if x.strip()]
        if sizes:
            results["gallery_sweep"] = gallery_sweep(sizes)
    finally:
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)  # the servers' logs and data: nothing left in /tmp
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2))
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
