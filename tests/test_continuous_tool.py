"""A short run of test_continuous_recognition.py against a real Gunicorn service, so the tool never rots."""

import json
import os
import subprocess
import sys

import psutil
import pytest
from devtools.servers import Server
from devtools.shared import IDENTITIES, REPO_ROOT

TOOL = REPO_ROOT / "test_continuous_recognition.py"


@pytest.fixture
def small_identities(tmp_path):
    """Eight people's photos (links to ../shared, nothing copied)."""
    folder = tmp_path / "people"
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir())[:8]:
        (folder / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:3]:
            (folder / person.name / photo.name).symlink_to(photo)
    return folder


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=600)


def test_short_run_reports_and_passes(database_url, tmp_path, small_identities):
    server = Server("gunicorn", database_url, tmp_path, WORKERS=2).wait_ready()
    try:
        report = tmp_path / "report"
        done = run_tool("--url", server.url, "--images", small_identities, "--enroll", "--requests", 200,
                        "--concurrency", 4, "--report", report, "--sample-interval", 0.5,
                        "--max-rss-growth", 50)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads((report / "report.json").read_text())
        assert summary["requests"] == 200 and summary["errors_by_status"] == {} and summary["passed"]
        assert summary["throughput_rps"] > 0 and 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["max"]
        rss = summary["rss_bytes_by_worker"]
        assert len(rss) == 2  # both workers sampled through /metrics, each with its own figure
        for pid, entry in rss.items():
            actual = psutil.Process(int(pid)).memory_info().rss
            assert 0.7 * actual < entry["end"] < 1.3 * actual, (pid, entry, actual)
        assert (report / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "enrolled 8 students" in done.stdout and "erased the 8 students" in done.stdout
        assert summary["machine"]["cores"] == os.cpu_count() and summary["machine"]["cpu"] != "unknown"
        # the load test's students are gone: it leaves nothing in the service's data
        import requests

        assert requests.get(server.url + "/api/v1/students", timeout=10).json()["total"] == 0

        # The same run fails when no growth at all is allowed: the exit status reflects the RSS rule.
        strict = run_tool("--url", server.url, "--images", small_identities, "--requests", 80,
                          "--sample-interval", 0.2, "--report", tmp_path / "strict", "--max-rss-growth", -100)
        assert strict.returncode == 1 and "RSS grew" in strict.stderr
    finally:
        server.stop()


def test_server_errors_fail_the_run(database_url, tmp_path, small_identities):
    # A time budget no recognition can meet: every request is a real 503 from the service.
    server = Server("gunicorn", database_url, tmp_path, WORKERS=1, REQUEST_TIMEOUT_S=0.001).wait_ready()
    try:
        done = run_tool("--url", server.url, "--images", small_identities, "--requests", 20,
                        "--report", tmp_path / "r")
        assert done.returncode == 1
        summary = json.loads((tmp_path / "r" / "report.json").read_text())
        assert summary["errors_by_status"] == {"503": 20} and not summary["passed"]
    finally:
        server.stop()


def test_a_keyed_service_without_a_key_exits_2_saying_so(database_url, tmp_path, small_identities):
    server = Server("gunicorn", database_url, tmp_path, WORKERS=1, API_KEYS="k1").wait_ready()
    try:
        done = run_tool("--url", server.url, "--images", small_identities, "--requests", 5,
                        "--report", tmp_path / "r")
        assert done.returncode == 2 and "--api-key" in done.stderr and "401" in done.stderr, done.stderr
        wrong = run_tool("--url", server.url, "--images", small_identities, "--requests", 5, "--api-key", "nope",
                         "--report", tmp_path / "r")
        assert wrong.returncode == 2 and "refuses this API key" in wrong.stderr
        # without matplotlib the run still reports, with a note instead of the plot
        shim = tmp_path / "no-matplotlib" / "matplotlib"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
        done = subprocess.run([sys.executable, str(TOOL), "--url", server.url, "--images", str(small_identities),
                               "--requests", "10", "--api-key", "k1", "--report", str(tmp_path / "plain")],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(shim.parent)})
        assert done.returncode == 0 and "no plot" in done.stdout, done.stdout + done.stderr
        assert (tmp_path / "plain" / "report.json").exists() and not (tmp_path / "plain" / "plot.png").exists()
    finally:
        server.stop()


def test_unreachable_service_exits_2(tmp_path, small_identities):
    done = run_tool("--url", "http://127.0.0.1:1", "--images", small_identities, "--report", tmp_path / "x")
    assert done.returncode == 2 and "does not answer" in done.stderr


def test_help():
    done = run_tool("--help")
    assert done.returncode == 0 and "--max-rss-growth" in done.stdout
