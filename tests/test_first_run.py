"""The ways a new user starts the service: older commands, an empty environment, an unclean exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from devtools.servers import SCRIPTS, Server, free_port
from devtools.shared import MODEL_PACK, REPO_ROOT


def _postgres_running(pgdata) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any("postgres" in part for part in cmdline[:1]) and str(pgdata) in " ".join(cmdline):
            return True
    return False


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_data_dir_is_the_repositorys_whatever_the_current_folder(monkeypatch, tmp_path):
    from recognition_service.config import load_settings

    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_settings().DATA_DIR == REPO_ROOT / "data"
    monkeypatch.chdir(REPO_ROOT / "python")
    assert load_settings().DATA_DIR == REPO_ROOT / "data"
    assert load_settings(DATA_DIR="elsewhere").DATA_DIR.resolve() == REPO_ROOT / "python" / "elsewhere"


def test_the_start_says_where_the_data_is_and_where_the_console_is(gunicorn_servers, tmp_path):
    server = gunicorn_servers(WORKERS=1)
    assert f"data folder: {tmp_path / 'data'} (database: DATABASE_URL)" in server.log()
    said = server.log().split("console: ", 1)[1].split(" ", 1)[0]
    assert said == f"{server.url}/console/"
    assert requests.get(said, timeout=10).status_code == 200  # the sign-in page, where it said


def test_running_the_module_directly_starts_the_development_server(database_url, tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK), "PORT": str(port),
           "DATA_DIR": str(tmp_path / "data"), "ORT_THREADS": "1"}
    log = tmp_path / "dev.log"
    with open(log, "wb") as out_file:  # a file, not a pipe nobody reads while it runs
        proc = subprocess.Popen([sys.executable, "recognizer_service.py"], cwd=REPO_ROOT / "python", env=env,
                                stdout=out_file, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: _ready(f"http://127.0.0.1:{port}"), 90, "the development server")
            proc.send_signal(signal.SIGTERM)
            proc.wait(40)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "Flask development server" in out and "not for production" in out


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/health/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_an_empty_environment_gets_one_line_naming_what_is_missing(tmp_path, kind):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "empty")], check=True)
    bare = tmp_path / "empty" / "bin" / "python"
    done = subprocess.run([str(bare), str(SCRIPTS[kind])], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "missing Python packages: flask" in lines[0] and "--install-deps" in lines[0]


def test_only_revoked_keys_are_reported_as_such(database_url, tmp_path):
    tool = [sys.executable, str(REPO_ROOT / "python" / "manage_api_keys.py")]
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data")}
    created = subprocess.run([*tool, "create", "--name", "only"], env=env, capture_output=True, text=True, check=True)
    key_id = json.loads(created.stdout)["key_id"]
    subprocess.run([*tool, "revoke", str(key_id)], env=env, check=True, capture_output=True)
    server = Server("gunicorn", database_url, tmp_path, WORKERS=1).wait_ready(90)
    try:
        assert requests.get(server.url + "/api/v1/students", timeout=10).status_code == 401
        log = server.log()
        assert "open to anyone" not in log and "revoked: every /api/v1 request is refused" in log
    finally:
        server.kill()


def test_an_unclean_exit_does_not_keep_the_embedded_postgresql_running(tmp_path):
    pgdata = tmp_path / "data" / "pgdata"
    first = Server("gunicorn", "", tmp_path, WORKERS=1).wait_ready(120)  # no DATABASE_URL: embedded
    assert _postgres_running(pgdata)
    first.kill()  # SIGKILL: its pid stays in pgserver's list of users
    assert first.proc.pid in json.loads((pgdata / ".handle_pids.json").read_text())
    second = Server("gunicorn", "", tmp_path, WORKERS=1).wait_ready(120)
    assert second.stop() == 0
    _wait(lambda: not _postgres_running(pgdata), 30, "the embedded PostgreSQL to stop")

    # --dev stops it on SIGTERM too
    port = free_port()
    env = {**os.environ, "DATABASE_URL": "", "MODEL_DIR": str(MODEL_PACK), "PORT": str(port),
           "DATA_DIR": str(tmp_path / "data"), "ORT_THREADS": "1"}
    dev = subprocess.Popen([sys.executable, str(SCRIPTS["gunicorn"]), "--dev"], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # DEVNULL never fills up
    try:
        _wait(lambda: _ready(f"http://127.0.0.1:{port}"), 120, "the development server")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(40) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
    _wait(lambda: not _postgres_running(pgdata), 30, "the embedded PostgreSQL to stop after --dev")


def test_the_session_walkthrough_works_as_the_readme_says(gunicorn_servers, tmp_path):
    videos = tmp_path / "demo"
    server = gunicorn_servers(CAMERA_FILE_ROOT=str(videos), CALLBACK_ALLOWED_HOSTS="127.0.0.1")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "try_session.py"), "--url", server.url,
                           "--video-dir", str(videos), "--seconds", "20"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "callback:" in done.stdout
    recognised = int(done.stdout.split("stopped. recognised ", 1)[1].split(" ", 1)[0])
    assert recognised >= 3, done.stdout
    session = requests.get(server.url + "/api/v1/sessions/9001", timeout=10).json()
    assert session["status"] == "stopped"
    # the demo's students are erased at the end (with their recognitions): nothing of it stays in the school's data
    assert requests.get(server.url + "/api/v1/students", timeout=10).json()["total"] == 0
    assert session["recognition_count"] == 0 and "erased the" in done.stdout
    assert session["cameras"][0]["url"] == str(videos / "demo_classroom.mp4")  # the relative path, resolved
    # an ended session shows no camera as active
    assert session["active_camera_ids"] == [] and {c["status"] for c in session["cameras"]} == {"stopped"}


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_a_port_in_use_is_one_line_at_once(database_url, tmp_path, kind):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK), "PORT": str(port),
               "DATA_DIR": str(tmp_path / "data")}
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(SCRIPTS[kind])], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], done.stderr
    assert time.monotonic() - started < 15


def test_help_names_the_settings_and_leaves_no_metrics_folder_behind(tmp_path):
    import glob
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), "recognizer-metrics-*")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a master killed without its clean-up left its folder; the next start removes it
    orphan = Path(tempfile.mkdtemp(prefix=f"recognizer-metrics-{dead.pid}-"))
    (orphan / "counter_1.db").write_bytes(b"x")
    before = set(glob.glob(pattern)) - {str(orphan)}
    done = subprocess.run([sys.executable, str(SCRIPTS["gunicorn"]), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "MODEL_DIR" in done.stdout and "DATABASE_URL" in done.stdout
    failed = subprocess.run([sys.executable, str(SCRIPTS["gunicorn"])], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DB_POOL_MAX": "lots"})
    assert failed.returncode == 2
    assert set(glob.glob(pattern)) <= before  # neither the help nor the failed start left a folder
    assert not orphan.exists()


def test_naive_service_help_works():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "naive_service.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "do not deploy" in done.stdout


def test_a_form_sent_where_json_is_expected_says_so(client):
    r = client.put("/api/v1/students/s1", data={"name": "Ann"})
    assert r.status_code == 400 and "Content-Type: application/json" in r.json["error"]["message"]


def test_health_says_its_time_zone_and_metrics_use_openapi_routes(client):
    health = client.get("/health").json
    assert health["time_zone"] == "Asia/Ho_Chi_Minh" and health["now"].endswith("+07:00")
    client.get("/api/v1/sessions/5")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="/api/v1/sessions/{slot_id}"' in text and "<int:slot_id>" not in text


def test_setup_stops_at_once_without_a_supported_python(tmp_path):
    """Only a Python 3.13 on PATH: one line naming the versions to install, nothing created."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "python3").write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "Python 3.13.0"\nexit 1\n')
    (stubs / "python3").chmod(0o755)
    for tool in ("dirname",):
        (stubs / tool).symlink_to(shutil.which(tool))
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "setup.sh", repo / "scripts")
    done = subprocess.run(["/bin/bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True,
                          timeout=60, env={"PATH": str(stubs), "HOME": str(tmp_path)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "needs Python 3.12 or 3.11" in lines[0] and "Python 3.13.0" in lines[0]
    assert not (repo / ".venv").exists()


def test_the_master_writes_no_metric_sample_of_its_own(gunicorn_servers):
    server = gunicorn_servers(WORKERS=2)
    master = psutil.Process(server.proc.pid)
    victim = master.children()[0].pid
    psutil.Process(victim).kill()  # the master's child_exit runs: it used to create the master's own samples
    _wait(lambda: len(master.children()) == 2 and victim not in {c.pid for c in master.children()}, 60,
          "a replacement worker")
    _wait(lambda: _ready(server.url), 60, "ready")
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert f'pid="{server.proc.pid}"' not in text and f'pid="{victim}"' not in text
