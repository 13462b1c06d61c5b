"""The database stops for 10 s under a running Gunicorn service: 503 during, success after, no restart."""

import os
import tempfile
import time
from pathlib import Path

import pytest
import requests
from servers import Server
from shared import sample


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="outage-")) / "pgdata", cleanup_mode="delete")
    user = "pgserver" if os.geteuid() == 0 else None

    def stop():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=user)

    def start():
        server.ensure_postgres_running()

    yield server.get_uri(), stop, start
    server.cleanup()


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
