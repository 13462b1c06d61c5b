#!/usr/bin/env python3
"""Continuous-load test of a running recognition service: throughput, latency, errors, worker memory.

Sends recognition requests without pause from --concurrency clients, samples the RSS of every server
worker over time, and writes a report (JSON and, with matplotlib installed, a PNG plot). Exits 1 when
any request failed with a 5xx or a connection error, or, when --max-rss-growth is given, when a
worker's RSS grew more than that many percent between the end of the warm-up and the end of the run;
2 when the service cannot be reached or refuses the key.

Example: python test_continuous_recognition.py --url http://127.0.0.1:8000 --enroll --requests 20000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def default_images() -> Path:
    shared = Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")
    return shared / "faces" / "identities"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL (default %(default)s)")
    p.add_argument("--images", type=Path, default=default_images(),
                   help="folder of photos, searched recursively (default: ../shared/faces/identities)")
    p.add_argument("--concurrency", type=int, default=4, help="clients sending at once (default %(default)s)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--requests", type=int, help="stop after this many requests (default 1000)")
    amount.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--warmup", type=float, default=10.0,
                   help="warm-up, in %% of the run, before the RSS baseline is taken (default %(default)s)")
    p.add_argument("--api-key", help="sent as X-API-Key")
    p.add_argument("--enroll", action="store_true",
                   help="first enrol the first photo of each subfolder of --images as a student loadtest-<folder>, "
                        "erased again at the end (run it against a test service with its own DATA_DIR)")
    p.add_argument("--keep-enrolled", action="store_true", help="with --enroll: keep those students at the end")
    p.add_argument("--report", type=Path, help="report folder (default reports/continuous-<time>)")
    p.add_argument("--pid", type=int, action="append", default=[],
                   help="worker pid to sample with psutil (repeatable; default: pids from the service's /metrics)")
    p.add_argument("--max-rss-growth", type=float, default=None,
                   help="fail when a worker's RSS grew more than this, in %%: median RSS over the last 10%% of the "
                        "run against the median over the 10%% after the warm-up. Growth is always reported; "
                        "without this option it never fails the run (a short run's medians wander by a few %%: "
                        "give it for runs of 10,000 requests or more, e.g. 5)")
    p.add_argument("--sample-interval", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    args = p.parse_args(argv)
    if args.requests is None and args.duration is None:
        args.requests = 1000
    if args.concurrency < 1 or (args.requests is not None and args.requests < 1):
        p.error("--concurrency and --requests must be positive")
    return args


@dataclass
class Result:
    t: float          # seconds since start, when the request was sent
    latency_ms: float
    status: int       # HTTP status, 0 for a connection error or timeout
    faces: int


class RssSampler(threading.Thread):
    """Samples worker RSS: psutil for given pids, else the per-pid gauge of the service's /metrics."""

    def __init__(self, url: str, pids: list[int], interval: float, headers: dict, started: float):
        super().__init__(daemon=True)
        self.url, self.pids, self.interval, self.headers, self.started = url, pids, interval, headers, started
        self.samples: list[tuple[float, int, int]] = []  # (t, pid, rss bytes)
        self.stop = threading.Event()

    def read(self) -> dict[int, int]:
        if self.pids:
            import psutil

            out = {}
            for pid in self.pids:
                try:
                    out[pid] = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            return out
        text = requests.get(self.url + "/metrics", headers=self.headers, timeout=10).text
        out = {}
        for line in text.splitlines():
            if line.startswith("recognizer_process_rss_bytes{"):
                labels, value = line.rsplit(" ", 1)
                pid = int(labels.split('pid="', 1)[1].split('"', 1)[0])
                if float(value) > 0:
                    out[pid] = int(float(value))
        return out

    def sample_once(self) -> None:
        try:
            now = time.monotonic() - self.started
            for pid, rss in self.read().items():
                self.samples.append((now, pid, rss))
        except (requests.RequestException, ValueError, IndexError):
            pass

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample_once()


def load_images(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [(p.name, p.read_bytes()) for p in files]


LOAD_TEST = "loadtest-"  # the load test's students: ids no school uses, erased at the end


def enrol(url: str, folder: Path, headers: dict) -> list[str]:
    """Enrol one photo of each subfolder as student loadtest-<folder>; the ids enrolled."""
    enrolled = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for photo in photos[:3]:
            r = requests.post(f"{url}/api/v1/students/{LOAD_TEST}{person.name}/faces", headers=headers,
                              timeout=120, files={"image": (photo.name, photo.read_bytes())},
                              data={"name": person.name})
            if r.status_code == 201:
                enrolled.append(f"{LOAD_TEST}{person.name}")
                break
    return enrolled


def erase(url: str, student_ids: list[str], headers: dict) -> None:
    for sid in student_ids:
        requests.delete(f"{url}/api/v1/students/{sid}", headers=headers, timeout=120)


def machine() -> dict:
    """The CPU the figures were taken on: absolute figures mean little without it."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform

        cpu = platform.processor() or platform.machine()
    return {"cpu": cpu, "cores": os.cpu_count()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_load(args, images, headers, started) -> list[Result]:
    results: list[Result] = []
    lock = threading.Lock()
    feed = itertools.cycle(images)
    counter = itertools.count()
    stop_at = None if args.duration is None else started + args.duration

    def client():
        session = requests.Session()
        while True:
            n = next(counter)
            if args.requests is not None and n >= args.requests:
                return
            if stop_at is not None and time.monotonic() >= stop_at:
                return
            with lock:
                name, data = next(feed)
            t0 = time.monotonic()
            try:
                r = session.post(args.url + "/api/v1/recognize", files={"image": (name, data)}, headers=headers,
                                 timeout=args.timeout)
                status = r.status_code
                faces = len(r.json().get("faces", [])) if status == 200 else 0
            except (requests.RequestException, ValueError):
                status, faces = 0, 0
            result = Result(round(t0 - started, 3), round((time.monotonic() - t0) * 1000, 2), status, faces)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    last = 0.0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        now = time.monotonic() - started
        if now - last >= 2:
            last = now
            with lock:
                done = list(results)
            errors = sum(r.status != 200 for r in done)
            target = f"/{args.requests}" if args.requests else f" in {now:.0f}/{args.duration:.0f} s"
            p95 = percentile([r.latency_ms for r in done[-500:]], 95)
            print(f"  {len(done)}{target} requests, {len(done) / now:.1f}/s, p95 {p95:.0f} ms, errors {errors}",
                  flush=True)
    return results


def rss_summary(samples, warm_t: float, window: float) -> dict:
    """Per worker: first sample, median over `window` s after the warm-up, median over the last `window` s.

    Medians over windows, not single samples: RSS jumps for a moment while a large photo is being
    handled, and one sample taken during such a moment would read as growth (or hide it).
    """
    by_pid = defaultdict(list)
    for t, pid, rss in samples:
        by_pid[pid].append((t, rss))
    out = {}
    for pid, points in by_pid.items():
        points.sort()
        last_t = points[-1][0]
        warm = [rss for t, rss in points if warm_t <= t <= warm_t + window]
        end = [rss for t, rss in points if t >= last_t - window]
        entry = {"start": points[0][1], "after_warmup": int(statistics.median(warm)) if warm else None,
                 "end": int(statistics.median(end)), "max": max(rss for _, rss in points), "samples": len(points)}
        if entry["after_warmup"] and points[0][0] <= warm_t and last_t - window > warm_t + window:
            entry["growth_pct"] = round((entry["end"] - entry["after_warmup"]) / entry["after_warmup"] * 100, 2)
        out[str(pid)] = entry
    return out


def plot(path: Path, results: list[Result], samples) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    ok = [r for r in results if r.status == 200]
    bad = [r for r in results if r.status != 200]
    ax1.scatter([r.t for r in ok], [r.latency_ms for r in ok], s=2, alpha=0.4, label="200")
    if bad:
        ax1.scatter([r.t for r in bad], [r.latency_ms for r in bad], s=8, color="red", label="errors")
    window = sorted(ok, key=lambda r: r.t)
    if len(window) >= 50:
        step = max(1, len(window) // 200)
        xs, ys = [], []
        for i in range(50, len(window) + 1, step):
            chunk = window[i - 50:i]
            xs.append(chunk[-1].t)
            ys.append(percentile([r.latency_ms for r in chunk], 95))
        ax1.plot(xs, ys, color="black", linewidth=1, label="p95 (rolling 50)")
    ax1.set_ylabel("latency (ms)")
    ax1.legend(loc="upper right")
    by_pid = defaultdict(list)
    for t, pid, rss in samples:
        by_pid[pid].append((t, rss / 2**20))
    for pid, points in sorted(by_pid.items()):
        points.sort()
        ax2.plot([p[0] for p in points], [p[1] for p in points], label=f"worker {pid}")
    ax2.set_ylabel("RSS (MiB)")
    ax2.set_xlabel("seconds")
    if by_pid:
        ax2.legend(loc="lower right", fontsize="small")
    fig.suptitle("Continuous recognition: latency and worker memory")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        requests.get(args.url + "/health/live", headers=headers, timeout=10).raise_for_status()
    except requests.RequestException as exc:
        print(f"error: the service at {args.url} does not answer: {exc}", file=sys.stderr)
        return 2
    try:
        probe = requests.get(args.url + "/api/v1/students", params={"limit": 1}, headers=headers, timeout=10)
    except requests.RequestException as exc:
        print(f"error: the service at {args.url} does not answer: {exc}", file=sys.stderr)
        return 2
    if probe.status_code in (401, 403):
        print(f"error: the service refuses {'this' if args.api_key else 'requests without an'} API key "
              f"({probe.status_code}): pass a valid one with --api-key", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401 - only to know, before a long run, whether the plot can be drawn
        can_plot = True
    except ImportError:
        can_plot = False
    if not can_plot:
        print("note: matplotlib is not installed (scripts/setup.sh --dev installs it): the report will have no plot")
    images = load_images(args.images) if args.images.is_dir() else []
    if not images:
        print(f"error: no photos in {args.images}", file=sys.stderr)
        return 2
    enrolled = enrol(args.url, args.images, headers) if args.enroll else []
    if args.enroll:
        print(f"enrolled {len(enrolled)} students from {args.images}")
    try:
        return _run(args, images, headers, can_plot)
    finally:
        if enrolled and not args.keep_enrolled:
            erase(args.url, enrolled, headers)
            print(f"erased the {len(enrolled)} students it enrolled (--keep-enrolled keeps them)")


def _run(args, images, headers, can_plot) -> int:

    report_dir = args.report or ROOT / "reports" / f"continuous-{datetime.now():%Y%m%d-%H%M%S}"
    report_dir.mkdir(parents=True, exist_ok=True)
    amount = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
    print(f"{amount} to {args.url}/api/v1/recognize, {args.concurrency} at a time, {len(images)} photos")
    started = time.monotonic()
    sampler = RssSampler(args.url, args.pid, args.sample_interval, headers, started)
    sampler.sample_once()
    sampler.start()
    results = run_load(args, images, headers, started)
    elapsed = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    sampler.sample_once()

    ok = [r.latency_ms for r in results if r.status == 200]
    statuses = Counter(r.status for r in results)
    errors = {("connection_error" if s == 0 else str(s)): n for s, n in statuses.items() if s != 200}
    warm_t = elapsed * args.warmup / 100
    rss = rss_summary(sampler.samples, warm_t, window=max(args.sample_interval * 3, elapsed * 0.1))
    failed_5xx = sum(n for s, n in statuses.items() if s == 0 or s >= 500)
    grown = {pid: e["growth_pct"] for pid, e in rss.items() if args.max_rss_growth is not None
             and e.get("growth_pct") is not None and e["growth_pct"] > args.max_rss_growth}
    summary = {
        "url": args.url, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),  # the client's; run it on the server's machine for figures that mean something
        "requests": len(results), "seconds": round(elapsed, 2), "concurrency": args.concurrency,
        "throughput_rps": round(len(results) / elapsed, 2) if elapsed else 0.0,
        "faces_per_s": round(sum(r.faces for r in results) / elapsed, 2) if elapsed else 0.0,
        "latency_ms": {"p50": percentile(ok, 50), "p95": percentile(ok, 95), "p99": percentile(ok, 99),
                       "max": max(ok, default=0.0), "mean": round(statistics.fmean(ok), 2) if ok else 0.0},
        "errors_by_status": errors, "rss_bytes_by_worker": rss, "max_rss_growth_pct": args.max_rss_growth,
        # more pids than workers: Gunicorn replaced workers during the run (MAX_REQUESTS recycling)
        "worker_pids_seen": len(rss),
        "passed": failed_5xx == 0 and not grown,
    }
    (report_dir / "report.json").write_text(json.dumps(summary, indent=2))
    (report_dir / "requests.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in results))
    if can_plot:
        plot(report_dir / "plot.png", results, sampler.samples)

    lat = summary["latency_ms"]
    print(f"\n{len(results)} requests in {elapsed:.1f} s: {summary['throughput_rps']} req/s, "
          f"{summary['faces_per_s']} faces/s")
    print(f"latency ms: p50 {lat['p50']:.0f}, p95 {lat['p95']:.0f}, p99 {lat['p99']:.0f}, max {lat['max']:.0f}")
    print(f"errors: {errors or 'none'}; worker pids seen: {len(rss)}")
    for pid, e in sorted(rss.items()):
        warm = f"{e['after_warmup'] / 2**20:.1f}" if e["after_warmup"] else "-"
        print(f"worker {pid} RSS MiB: start {e['start'] / 2**20:.1f}, after warm-up {warm}, "
              f"end {e['end'] / 2**20:.1f}, max {e['max'] / 2**20:.1f}"
              + (f" ({e['growth_pct']:+.2f}%)" if "growth_pct" in e else ""))
    print(f"report: {report_dir}")
    if failed_5xx:
        print(f"FAILED: {failed_5xx} requests failed with 5xx or no answer", file=sys.stderr)
    if grown:
        print(f"FAILED: RSS grew more than {args.max_rss_growth}% after warm-up: {grown}", file=sys.stderr)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
