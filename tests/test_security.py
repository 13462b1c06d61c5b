"""API keys, the loopback-only rule without keys, and the audit log."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import psycopg2
import requests
from servers import Server
from shared import REPO_ROOT, sample

MANAGE = [sys.executable, str(REPO_ROOT / "python" / "manage_api_keys.py")]


def test_keys_from_the_environment(make_app):
    client = make_app(API_KEYS="first-key, second-key").test_client()
    missing = client.get("/api/v1/students")
    assert missing.status_code == 401 and missing.json["error"]["code"] == "missing_api_key"
    wrong = client.get("/api/v1/students", headers={"X-API-Key": "second-kez"})
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "invalid_api_key"
    assert client.get("/api/v1/students", headers={"X-API-Key": "second-key"}).status_code == 200
    assert client.post("/api/v1/recognize", data=sample("obama.jpg"), content_type="image/jpeg").status_code == 401
    for open_path in ("/health/live", "/health/ready", "/metrics", "/health"):
        assert client.get(open_path).status_code == 200, open_path


def test_metrics_and_health_details_can_require_a_key(make_app):
    client = make_app(API_KEYS="k", PUBLIC_METRICS=False, PUBLIC_HEALTH_DETAILS=False).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/health").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "k"}).status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_no_key_anywhere_means_open_on_loopback(client):
    assert client.get("/api/v1/students").status_code == 200
    assert client.get("/api/v1/students", headers={"X-API-Key": "anything"}).status_code == 200


def _manage(database_url: str, tmp_path, *args) -> subprocess.CompletedProcess:
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([*MANAGE, *args], env=env, capture_output=True, text=True, timeout=60)


def test_database_keys_created_listed_and_revoked_with_the_cli(make_app, database_url, tmp_path):
    client = make_app().test_client()
    assert client.get("/api/v1/students").status_code == 200  # no key yet: open (on loopback)
    created = _manage(database_url, tmp_path, "create", "--name", "school backend")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["api_key"].startswith("rk_")
    deadline = time.monotonic() + 6  # "no keys" is cached for up to 5 s
    while client.get("/api/v1/students").status_code != 401:
        assert time.monotonic() < deadline, "a created key did not close the API"
        time.sleep(0.2)
    headers = {"X-API-Key": key["api_key"]}
    r = client.post("/api/v1/students/obama/faces", data={"image": (io.BytesIO(sample("obama.jpg")), "o.jpg")},
                    headers=headers)
    assert r.status_code == 201
    assert client.delete("/api/v1/students/obama", headers=headers).status_code == 204

    listed = _manage(database_url, tmp_path, "list")
    assert listed.returncode == 0 and key["api_key"] not in listed.stdout
    assert json.loads(listed.stdout)[0]["name"] == "school backend"
    revoked = _manage(database_url, tmp_path, "revoke", str(key["key_id"]))
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 6  # revocation takes effect within the 5 s cache
    while (r := client.get("/api/v1/students", headers=headers)).status_code != 403:
        assert time.monotonic() < deadline, r.status_code
        time.sleep(0.2)
    assert r.json["error"]["code"] == "api_key_revoked"
    assert _manage(database_url, tmp_path, "revoke", str(key["key_id"])).returncode == 1

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT actor, action, target FROM audit_log ORDER BY id")
        log = cur.fetchall()
    actor = f"key:{key['key_id']}"
    assert log == [("cli", "api_key.create", str(key["key_id"])), (actor, "student.enrol", "obama"),
                   (actor, "student.delete", "obama"), ("cli", "api_key.revoke", str(key["key_id"]))]


def test_without_keys_the_service_refuses_a_public_address(database_url, tmp_path):
    refused = Server("gunicorn", database_url, tmp_path, HOST="0.0.0.0")
    assert refused.proc.wait(60) == 2
    lines = [line for line in refused.log_path.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "no API key configured" in lines[0] and "ALLOW_UNAUTHENTICATED" in lines[0]
    refused.kill()

    allowed = Server("gunicorn", database_url, tmp_path, HOST="0.0.0.0", ALLOW_UNAUTHENTICATED=1, WORKERS=1)
    try:
        allowed.url = f"http://127.0.0.1:{allowed.port}"
        allowed.wait_ready(90)
        assert "ALLOW_UNAUTHENTICATED=1" in allowed.log()
        assert requests.get(allowed.url + "/api/v1/students", timeout=10).status_code == 200
    finally:
        allowed.kill()

    keyed = Server("gunicorn", database_url, tmp_path, HOST="0.0.0.0", API_KEYS="k", WORKERS=1)
    try:
        keyed.url = f"http://127.0.0.1:{keyed.port}"
        keyed.wait_ready(90)
        assert requests.get(keyed.url + "/api/v1/students", timeout=10).status_code == 401
        assert requests.get(keyed.url + "/api/v1/students", headers={"X-API-Key": "k"}, timeout=10).status_code == 200
    finally:
        keyed.kill()
