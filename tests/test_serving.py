"""End to end through real Gunicorn (start_production.py) and real Waitress (start_windows_production.py)."""

import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests
from devtools.servers import SCRIPTS, Server
from devtools.shared import sample
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def server_factory(database_url, tmp_path):
    started = []

    def _start(kind, **env):
        server = Server(kind, database_url, tmp_path, **env)
        started.append(server)
        return server.wait_ready()

    yield _start
    for server in started:
        server.kill()


def metric(base_url, name, **labels) -> float:
    text = requests.get(base_url + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def recognize(url, name="obama2.jpg", **headers):
    return requests.post(url + "/api/v1/recognize", files={"image": (name, sample(name))}, headers=headers, timeout=60)


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_serves_the_api_and_stops_gracefully(server_factory, kind):
    server = server_factory(kind)
    url = server.url
    r = requests.post(url + "/api/v1/students/obama/faces", files={"image": ("o.jpg", sample("obama.jpg"))},
                      timeout=60)
    assert r.status_code == 201
    for _ in range(6):
        r = recognize(url, **{"X-Request-ID": "client-id-42"})
        assert r.status_code == 200 and r.json()["faces"][0]["student_id"] == "obama"
        assert r.headers["X-Request-ID"] == "client-id-42"
    assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"
    assert metric(url, "recognizer_http_requests_total", route="/api/v1/recognize", status="200") == 6
    assert metric(url, "recognizer_http_requests_total", route="/api/v1/students/{student_id}/faces",
                  status="201") == 1
    assert metric(url, "recognizer_faces_detected_total") == 6
    assert metric(url, "recognizer_recognitions_total") == 6
    assert metric(url, "recognizer_stage_duration_seconds_count", stage="detect") == 6
    assert metric(url, "recognizer_process_rss_bytes") > 50e6

    result = {}
    inflight = threading.Thread(target=lambda: result.setdefault("r", recognize(url, "five_faces.jpg")))
    inflight.start()
    time.sleep(0.15)  # the request is being handled when SIGTERM arrives
    code = server.stop()
    inflight.join(60)
    assert result["r"].status_code == 200 and len(result["r"].json()["faces"]) == 5
    assert code == 0, server.log()


def test_unexpected_error_is_500_json_and_the_worker_lives_on(server_factory):
    server = server_factory("gunicorn", WORKERS=1, FAULT_INJECTION=1)
    pid = requests.get(server.url + "/health", timeout=10).json()["pid"]
    r = recognize(server.url, **{"X-Fault-Inject": "model"})
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "internal_error" and body["request_id"] == r.headers["X-Request-ID"]
    r = recognize(server.url)
    assert r.status_code == 200
    assert requests.get(server.url + "/health", timeout=10).json()["pid"] == pid
    assert "injected fault" in server.log()  # logged with its stack trace


def test_killed_worker_is_replaced(server_factory):
    server = server_factory("gunicorn", WORKERS=2)
    master = psutil.Process(server.proc.pid)
    workers = {c.pid for c in master.children()}
    assert len(workers) == 2
    victim = workers.pop()
    psutil.Process(victim).kill()
    for _ in range(10):
        assert recognize(server.url).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {c.pid for c in master.children()}
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    assert len(now) == 2 and victim not in now


def test_request_timeout_answers_503_instead_of_hanging(server_factory):
    server = server_factory("gunicorn", WORKERS=1, REQUEST_TIMEOUT_S=0.05)
    r = recognize(server.url, "five_faces.jpg")
    assert r.status_code == 503 and r.json()["error"]["code"] == "timeout"
    assert requests.get(server.url + "/health/live", timeout=5).status_code == 200


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
@pytest.mark.parametrize("env,expected", [
    ({"MODEL_DIR": "/nonexistent/model-pack"}, "model"),
    ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "database unreachable"),
    ({"DB_POOL_MAX": "lots"}, "DB_POOL_MAX"),
])
def test_bad_configuration_exits_with_one_clear_line(tmp_path, database_url, kind, env, expected):
    import os

    from devtools.shared import MODEL_PACK

    full = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK), "DATA_DIR": str(tmp_path),
            **env}
    done = subprocess.run([sys.executable, str(SCRIPTS[kind])], env=full, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "error" in lines[0], done.stderr


def test_workers_recycle_without_a_failed_request(server_factory):
    """MAX_REQUESTS on (as in production): every worker is replaced several times and no request fails,
    for clients on new connections and for clients keeping theirs alive across the recycles."""
    from concurrent.futures import ThreadPoolExecutor

    server = server_factory("gunicorn", WORKERS=2, MAX_REQUESTS=25, MAX_REQUESTS_JITTER=5, API_KEYS="school-key")
    master = psutil.Process(server.proc.pid)
    seen = {c.pid for c in master.children()}
    photo = sample("obama2.jpg")

    def client(n: int) -> list:
        failures = []
        session = requests.Session() if n % 2 else requests  # half keep their connection alive
        for i in range(100):
            try:
                if i % 20 == 0:
                    r = session.post(server.url + "/api/v1/recognize", files={"image": ("o.jpg", photo)},
                                     headers={"X-API-Key": "school-key"}, timeout=60)
                else:
                    r = session.get(server.url + ("/metrics" if i % 10 == 5 else "/health/live"), timeout=30)
                if r.status_code != 200:
                    failures.append((n, i, r.status_code, r.text[:200]))
            except requests.RequestException as exc:
                failures.append((n, i, type(exc).__name__, str(exc)[:200]))
            seen.update(c.pid for c in master.children())
        return failures

    with ThreadPoolExecutor(4) as pool:
        failures = [f for result in pool.map(client, range(4)) for f in result]
    assert failures == [], server.log()
    # 400 requests over 2 workers recycling every 25-30: at least a dozen workers have come and gone.
    assert len(seen) >= 12, seen
    assert server.proc.poll() is None
    assert metric(server.url, "recognizer_http_requests_total", route="/health/live") >= 300
    assert server.stop() == 0
