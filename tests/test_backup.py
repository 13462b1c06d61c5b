"""Back up a running service and restore it into a fresh data folder (python/manage_data.py, real pg_dump)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import requests
from devtools.servers import Server
from devtools.shared import REPO_ROOT
from devtools.streams import build_video, still_frames
from session_helpers import CAST, FAST, cast_in_stills, enrol, get, start, wait_for

TOOL = [sys.executable, str(REPO_ROOT / "python" / "manage_data.py")]
KEYS = [sys.executable, str(REPO_ROOT / "python" / "manage_api_keys.py")]


def tool(args: list, **env) -> subprocess.CompletedProcess:
    return subprocess.run(args, env={**os.environ, **{k: str(v) for k, v in env.items()}}, capture_output=True,
                          text=True, timeout=300)


def names_in_stills(url: str, key: str) -> set[str]:
    found = set()
    for frame in still_frames():
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        r = requests.post(f"{url}/api/v1/recognize", files={"image": ("s.jpg", jpeg)}, headers={"X-API-Key": key},
                          timeout=60)
        assert r.status_code == 200, r.text
        found |= {f["student_id"] for f in r.json()["faces"] if f["student_id"]}
    return found


def test_a_running_service_is_backed_up_and_restored_into_a_fresh_folder(gunicorn_servers, database_url, tmp_path):
    server = gunicorn_servers(**FAST)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    video = build_video(tmp_path / "classroom.mp4")
    start(server.url, 61, [(1, str(video))], frame_interval_ms=300)  # cameras write while the backup runs
    wait_for(lambda: get(server.url, 61)["recognition_count"] >= 1, 90, "a recognition")
    made = tool(KEYS + ["create", "--name", "school backend"], DATABASE_URL=database_url)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["api_key"]

    dump = tmp_path / "school.dump"
    backed = tool(TOOL + ["backup", str(dump)], DATABASE_URL=database_url)
    assert backed.returncode == 0, backed.stderr
    report = json.loads(backed.stdout)
    counts = report["counts"]
    assert counts["students"] == len(CAST) and counts["faces"] >= len(CAST) and counts["face_crops"] >= len(CAST)
    assert counts["api_keys"] == 1 and counts["sessions"] == 1 and counts["recognitions"] >= 1
    assert report["bytes"] == dump.stat().st_size > 0 and not (tmp_path / "school.dump.partial").exists()

    fresh = tmp_path / "restored-data"
    restored = tool(TOOL + ["restore", str(dump)], DATABASE_URL="", DATA_DIR=fresh)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["counts"] == counts
    again = tool(TOOL + ["restore", str(dump)], DATABASE_URL="", DATA_DIR=fresh)
    assert again.returncode == 1 and "not empty" in again.stderr  # a restore never overwrites
    checked = tool(TOOL + ["check", str(dump)])
    assert checked.returncode == 0 and json.loads(checked.stdout)["counts"] == counts, checked.stderr
    missing = tool(TOOL + ["backup", str(tmp_path)], DATABASE_URL=database_url)
    assert missing.returncode == 1 and "folder" in missing.stderr

    server.kill()
    # the restored folder runs the service: the same students, the same key, the session goes on
    restored_server = Server("gunicorn", "", tmp_path, DATA_DIR=fresh, WORKERS=1, **FAST)
    try:
        restored_server.wait_ready(120)
        assert requests.get(f"{restored_server.url}/api/v1/students", timeout=10).status_code == 401
        assert names_in_stills(restored_server.url, key) == expected
        session = requests.get(f"{restored_server.url}/api/v1/sessions/61", headers={"X-API-Key": key},
                               timeout=10).json()
        assert session["recognition_count"] == counts["recognitions"]
    finally:
        assert restored_server.stop() == 0
