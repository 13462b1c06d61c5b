"""A short run of test_continuous_recognition.py against a real Gunicorn service, so the tool never rots."""

import json
import subprocess
import sys

import psutil
import pytest
from servers import Server
from shared import IDENTITIES, REPO_ROOT

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
        assert "enrolled 8 students" in done.stdout

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


def test_unreachable_service_exits_2(tmp_path, small_identities):
    done = run_tool("--url", "http://127.0.0.1:1", "--images", small_identities, "--report", tmp_path / "x")
    assert done.returncode == 2 and "does not answer" in done.stderr


def test_help():
    done = run_tool("--help")
    assert done.returncode == 0 and "--max-rss-growth" in done.stdout
