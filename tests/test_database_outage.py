"""The database stops under a running Gunicorn service: 503 during, success after, sessions resume, no restart."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests
from devtools.servers import Server
from devtools.shared import sample


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    import pgserver
    from pgserver._commands import pg_ctl

    root = Path(tempfile.mkdtemp(prefix="outage-"))  # short: PostgreSQL's socket path has a length limit
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    user = "pgserver" if os.geteuid() == 0 else None

    def stop():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=user)

    def start():
        server.ensure_postgres_running()

    yield server.get_uri(), stop, start
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def test_database_outage_degrades_then_recovers(own_postgres, tmp_path):
    url, stop, start = own_postgres
    service = Server("gunicorn", url, tmp_path, WORKERS=2, DB_CONNECT_TIMEOUT_S=2).wait_ready()
    try:
        r = requests.post(service.url + "/api/v1/students/obama/faces",
                          files={"image": ("o.jpg", sample("obama.jpg"))}, timeout=30)
        assert r.status_code == 201
        stop()
        outage_started = time.monotonic()
        codes = []
        while time.monotonic() - outage_started < 10:
            t0 = time.monotonic()
            r = requests.get(service.url + "/api/v1/students", timeout=30)
            assert time.monotonic() - t0 < 10  # an answer, not a hang
            codes.append((r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else None))
            time.sleep(0.5)
        assert set(codes) == {(503, "database_unavailable")}, codes
        r = requests.get(service.url + "/health", timeout=30)
        assert r.status_code == 503 and "unavailable" in r.json()["database"]
        start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if requests.get(service.url + "/api/v1/students", timeout=30).status_code == 200:
                break
            time.sleep(0.3)
        for _ in range(6):  # every worker, every pooled connection: no dead one left behind
            assert requests.get(service.url + "/api/v1/students", timeout=30).json()["total"] == 1
            r = requests.post(service.url + "/api/v1/recognize", files={"image": ("o.jpg", sample("obama2.jpg"))},
                              timeout=30)
            assert r.status_code == 200 and r.json()["faces"][0]["student_id"] == "obama"
        assert requests.get(service.url + "/health", timeout=30).json()["status"] == "ok"
    finally:
        assert service.stop() == 0


def test_sessions_survive_a_database_outage_longer_than_their_lease(own_postgres, tmp_path):
    from devtools.streams import build_video

    url, stop, start = own_postgres
    video = build_video(tmp_path / "classroom.mp4")
    service = Server("gunicorn", url, tmp_path, WORKERS=2, DB_CONNECT_TIMEOUT_S=2, SESSION_LEASE_S=4,
                     SESSION_POLL_S=0.5).wait_ready()

    def session() -> dict:
        r = requests.get(service.url + "/api/v1/sessions/1", timeout=30)
        return r.json() if r.status_code == 200 else {}

    def wait(check, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.3)
        return False

    try:
        r = requests.post(service.url + "/api/v1/sessions", timeout=30, json={
            "slot_id": 1, "cameras": [{"camera_id": 1, "url": str(video)}], "frame_interval_ms": 200,
            "callback_url": "http://127.0.0.1:9/cb"})
        assert r.status_code == 201
        assert wait(lambda: session().get("status") == "running" and session()["cameras"][0]["frames"] > 0, 30)
        stop()
        time.sleep(8)  # twice the lease: no owner can renew, no process can claim
        start()
        assert wait(lambda: session().get("owner") is not None, 30), service.log()
        frames = session()["cameras"][0]["frames"]
        assert wait(lambda: session()["cameras"][0]["frames"] > frames, 20), "frames did not resume"
        final = session()
        assert final["status"] == "running" and final["active_camera_ids"] == [1]
        workers = {p.pid for p in psutil.Process(service.proc.pid).children()}
        assert int(final["owner"].split(":")[1]) in workers
    finally:
        service.kill()
