"""API keys, the loopback-only rule without keys, and the audit log."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time

import psycopg2
import pytest
import requests
from devtools.receiver import Receiver
from devtools.servers import Server
from devtools.shared import REPO_ROOT, sample

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
    erased = "sha256:" + hashlib.sha256(b"obama").hexdigest()  # a deleted student is not named in the log
    assert log == [("cli", "api_key.create", str(key["key_id"])), (actor, "student.enrol", erased),
                   (actor, "student.delete", erased), ("cli", "api_key.revoke", str(key["key_id"]))]


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


def _session(client, **overrides):
    body = {"slot_id": 1, "cameras": [{"camera_id": 1, "url": "rtsp://10.0.0.5/stream"}],
            "callback_url": "http://127.0.0.1:8080/cb", **overrides}
    return client.post("/api/v1/sessions", json=body)


def test_session_urls_reaching_refused_addresses_are_422(make_app, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "room.mp4").write_bytes(b"")
    client = make_app(CALLBACK_ALLOWED_HOSTS=None, CAMERA_ALLOWED_NETWORKS=None,
                      CAMERA_FILE_ROOT=str(videos)).test_client()
    refused = {
        "http://169.254.169.254/latest/meta-data/": "callback_url",   # cloud metadata
        "http://127.0.0.1:8080/cb": "callback_url",                   # loopback, not allow-listed
        "http://localhost:8080/cb": "callback_url",                   # a name resolving to loopback
        "http://167772161/cb": "callback_url",                        # a host resolving to 10.0.0.1 (private)
        "http://[::1]/cb": "callback_url",
        "ftp://example.org/cb": "callback_url",
    }
    for url, field in refused.items():
        r = _session(client, callback_url=url)
        assert r.status_code == 422, (url, r.json)
        assert r.json["error"]["field"] == field
    cameras = {
        "rtsp://169.254.169.254/": "cameras.0.url",
        "rtsp://127.0.0.1:8554/cam": "cameras.0.url",
        "http://localhost/mjpg": "cameras.0.url",
        "rtsp://224.0.0.1/": "cameras.0.url",
        str(tmp_path / "elsewhere.mp4"): "cameras.0.url",              # a file outside CAMERA_FILE_ROOT
        str(videos / ".." / "elsewhere.mp4"): "cameras.0.url",         # ... also through ..
    }
    for url, field in cameras.items():
        r = _session(client, callback_url="http://8.8.8.8/cb", cameras=[{"camera_id": 1, "url": url}])
        assert r.status_code == 422, (url, r.json)
        assert r.json["error"]["field"] == field and r.json["error"]["code"] == "refused_address"
    assert client.get("/api/v1/sessions").json["total"] == 0  # nothing was created
    # a LAN camera, a file under the root and a public callback are fine
    ok = _session(client, callback_url="http://8.8.8.8/cb",
                  cameras=[{"camera_id": 1, "url": "rtsp://10.0.0.5/stream"},
                           {"camera_id": 2, "url": str(videos / "room.mp4")}])
    assert ok.status_code == 201, ok.json


@pytest.mark.parametrize("host", [
    "[::ffff:127.0.0.2]", "[::ffff:7f00:2]", "[0:0:0:0:0:ffff:127.0.0.2]", "[::ffff:0.0.0.0]",
    "[::ffff:169.254.169.254]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[2002:a9fe:a9fe::1]",
    "0.0.0.0", "0.1.2.3", "[::]", "[::1]",
])
def test_addresses_hidden_inside_ipv6_forms_are_judged_by_their_ipv4(host):
    from recognition_service.security.egress import RefusedAddress, check_callback_url, check_camera_url

    with pytest.raises(RefusedAddress):
        check_camera_url(f"rtsp://{host}:8554/cam", None, None)
    with pytest.raises(RefusedAddress):
        check_callback_url(f"http://{host}:8080/cb", None)


def test_embedded_lan_and_public_addresses_stay_allowed():
    from recognition_service.security.egress import check_callback_url, check_camera_url

    check_camera_url("rtsp://[::ffff:10.0.0.5]/cam", None, None)       # a LAN camera, written as IPv6
    check_callback_url("http://[::ffff:8.8.8.8]/cb", None)              # a public receiver, written as IPv6
    check_camera_url("rtsp://[::ffff:127.0.0.1]/cam", "127.0.0.0/8", None)  # allow-listed by its IPv4 network


def test_mapped_loopback_camera_is_refused_through_the_api(make_app):
    client = make_app(CAMERA_ALLOWED_NETWORKS=None).test_client()
    r = _session(client, callback_url="http://8.8.8.8/cb",
                 cameras=[{"camera_id": 1, "url": "rtsp://[::ffff:127.0.0.2]:8554/cam"}])
    assert r.status_code == 422 and r.json["error"]["field"] == "cameras.0.url"
    assert client.get("/api/v1/sessions").json["total"] == 0


def test_allow_lists_open_chosen_hosts_and_networks(make_app):
    client = make_app(CALLBACK_ALLOWED_HOSTS="backend.lan, 127.0.0.1, 10.1.0.0/16",
                      CAMERA_ALLOWED_NETWORKS="127.0.0.0/8").test_client()
    assert _session(client, callback_url="http://127.0.0.1:9/cb",
                    cameras=[{"camera_id": 1, "url": "rtsp://127.0.0.1:8554/cam"}]).status_code == 201
    assert _session(client, slot_id=2, callback_url="http://10.1.2.3/cb").status_code == 201
    assert _session(client, slot_id=3, callback_url="http://10.2.0.1/cb").status_code == 422


def test_a_callback_redirecting_to_a_refused_address_is_not_followed(database_url, tmp_path):
    redirector = Receiver(status=302, location="http://169.254.169.254/latest/meta-data/")
    server = Server("gunicorn", database_url, tmp_path, WORKERS=1, CALLBACK_POLL_S=0.2,
                    CAMERA_MAX_FAILURES=1000).wait_ready(90)
    try:
        r = requests.post(server.url + "/api/v1/sessions", timeout=10, json={
            "slot_id": 7, "cameras": [{"camera_id": 1, "url": "rtsp://127.0.0.1:9/none"}],
            "callback_url": f"http://127.0.0.1:{redirector.port}/cb"})
        assert r.status_code == 201
        deadline = time.monotonic() + 20
        while True:
            dead = requests.get(server.url + "/api/v1/sessions/7/events?status=dead", timeout=10).json()["events"]
            if dead:
                break
            assert time.monotonic() < deadline, "no dead letter"
            time.sleep(0.3)
        assert dead[0]["last_status"] == 302 and "not followed" in dead[0]["last_error"]
        assert redirector.paths == ["/cb"]  # one attempt; the redirect target was never contacted
    finally:
        server.kill()
        redirector.close()


def test_rate_limit_per_key_answers_429_with_retry_after(make_app):
    app = make_app(API_KEYS="a,b", RATE_LIMIT_PER_MINUTE=5)
    client = app.test_client()
    codes = [client.get("/api/v1/students", headers={"X-API-Key": "a"}).status_code for _ in range(5)]
    assert codes == [200] * 5
    limited = client.get("/api/v1/students", headers={"X-API-Key": "a"})
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/students", headers={"X-API-Key": "b"}).status_code == 200  # per key
    assert client.get("/health/ready").status_code == 200  # probes are never limited
    # a second process on the same database shares the counters
    other = make_app(API_KEYS="a,b", RATE_LIMIT_PER_MINUTE=5).test_client()
    assert other.get("/api/v1/students", headers={"X-API-Key": "a"}).status_code == 429


def test_wrong_keys_are_throttled_per_client_address(make_app):
    app = make_app(API_KEYS="right", FAILED_KEY_ATTEMPTS_PER_MINUTE=5)
    client = app.test_client()
    guesser = {"REMOTE_ADDR": "10.0.0.66"}
    codes = [client.get("/api/v1/students", headers={"X-API-Key": f"guess-{i}"}, environ_base=guesser).status_code
             for i in range(5)]
    assert codes == [401] * 5
    blocked = client.get("/api/v1/students", headers={"X-API-Key": "guess-5"}, environ_base=guesser)
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    # blocked even with the right key until the window ends: a guesser learns nothing more
    assert client.get("/api/v1/students", headers={"X-API-Key": "right"}, environ_base=guesser).status_code == 429
    # another address, with the right key, is unaffected; so is the same guesser on another server
    assert client.get("/api/v1/students", headers={"X-API-Key": "right"},
                      environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 200
    other = make_app(API_KEYS="right", FAILED_KEY_ATTEMPTS_PER_MINUTE=5).test_client()
    assert other.get("/api/v1/students", headers={"X-API-Key": "x"}, environ_base=guesser).status_code == 429


def test_addresses_are_checked_again_when_connecting(database_url, tmp_path):
    """A session accepted under one policy is refused by a process whose policy no longer allows it."""
    receiver = Receiver()
    lenient = Server("gunicorn", database_url, tmp_path, WORKERS=1, SESSIONS_ENABLED=0,
                     CALLBACK_POLL_S=30).wait_ready(90)  # accepts, but neither runs cameras nor sends soon
    r = requests.post(lenient.url + "/api/v1/sessions", timeout=10, json={
        "slot_id": 8, "cameras": [{"camera_id": 1, "url": "rtsp://127.0.0.1:9/cam"}],
        "callback_url": f"http://127.0.0.1:{receiver.port}/cb"})
    assert r.status_code == 201
    lenient.kill()
    strict = Server("gunicorn", database_url, tmp_path, WORKERS=1, CALLBACK_ALLOWED_HOSTS="",
                    CAMERA_ALLOWED_NETWORKS="", CALLBACK_POLL_S=0.2, SESSION_POLL_S=0.5).wait_ready(90)
    try:
        deadline = time.monotonic() + 30
        while True:
            session = requests.get(strict.url + "/api/v1/sessions/8", timeout=10).json()
            dead = requests.get(strict.url + "/api/v1/sessions/8/events?status=dead", timeout=10).json()["events"]
            camera = session["cameras"][0]
            if dead and camera["last_error"]:
                break
            assert time.monotonic() < deadline, (session, dead)
            time.sleep(0.3)
        assert "refused address" in camera["last_error"]
        assert "non-public address" in dead[0]["last_error"]
        assert receiver.paths == []  # the receiver on loopback was never contacted
    finally:
        strict.kill()
        receiver.close()


def test_logs_hold_no_keys_embeddings_or_image_bytes(database_url, tmp_path):
    server = Server("gunicorn", database_url, tmp_path, WORKERS=1, API_KEYS="very-secret-key-123",
                    CALLBACK_SECRET="hmac-secret-456", LOG_LEVEL="DEBUG").wait_ready(90)
    try:
        headers = {"X-API-Key": "very-secret-key-123"}
        r = requests.post(server.url + "/api/v1/embeddings", headers=headers, timeout=60,
                          files={"image": ("o.jpg", sample("obama.jpg"))})
        assert r.status_code == 200
        requests.post(server.url + "/api/v1/recognize", headers={"X-API-Key": "wrong-key-789"}, timeout=60,
                      files={"image": ("o.jpg", sample("obama.jpg"))})
        values = [f"{v:.6f}".rstrip("0") for v in r.json()["faces"][0]["embedding"][:20]]
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    for secret in ("very-secret-key-123", "wrong-key-789", "hmac-secret-456"):
        assert secret not in log
    assert sum(v in log for v in values if len(v) > 6) == 0
    assert "JFIF" not in log and "\\xff\\xd8" not in log
