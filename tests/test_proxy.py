"""The LAN deployment: Debian's nginx with deploy/nginx/recognizer.conf in front of real Gunicorn.

Slow and idle clients (slowloris headers, idle sockets, slow bodies, a large body trickled in) are held by
nginx; /health/ready keeps answering through the proxy the whole time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests
from devtools.attacks import probe_ready, standard_attacks
from devtools.servers import free_port
from devtools.shared import REPO_ROOT, sample

CONF = REPO_ROOT / "deploy" / "nginx" / "recognizer.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
KEY = "school-key"


class Nginx:
    """nginx running the repository's configuration, with only its listen and upstream ports changed."""

    def __init__(self, tmp, upstream_port: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = CONF.read_text()
        for old, new in (("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
                         ("listen 80;", f"listen 127.0.0.1:{self.port};")):
            assert old in conf, f"{CONF} no longer has {old!r}"
            conf = conf.replace(old, new)
        self.prefix = tmp / "nginx"
        (self.prefix / "logs").mkdir(parents=True)
        (self.prefix / "recognizer.conf").write_text(conf)
        temps = " ".join(f"{kind}_temp_path {self.prefix / kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.prefix / "nginx.conf").write_text(f"""
            {"user root;" if os.geteuid() == 0 else ""}
            worker_processes 1;
            pid {self.prefix / "nginx.pid"};
            error_log {self.prefix / "logs" / "error.log"} warn;
            events {{ worker_connections 2048; }}
            http {{
                access_log off;
                {temps}
                include {self.prefix / "recognizer.conf"};
            }}""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("nginx did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is installed by scripts/setup.sh --dev")


@pytest.fixture
def proxied(gunicorn_servers, tmp_path):
    # production defaults otherwise: 2 workers, 4 threads, recycling on, a key
    server = gunicorn_servers(TRUSTED_PROXY_COUNT=1, LOG_LEVEL="INFO", API_KEYS=KEY)
    nginx = Nginx(tmp_path, server.port)
    yield server, nginx
    nginx.stop()


def test_slow_and_idle_clients_do_not_starve_the_service_behind_nginx(proxied):
    server, nginx = proxied
    attacks = standard_attacks(nginx.port)
    try:
        probes, failures, slowest = probe_ready(nginx.url)
        # a real request (a photo through the proxy) is served too
        r = requests.post(nginx.url + "/api/v1/recognize", files={"image": ("o.jpg", sample("obama.jpg"))},
                          headers={"X-API-Key": KEY},
                          timeout=60)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        open_now = [a.connected - a.dropped for a in attacks]
    finally:
        for attack in attacks:
            attack.end()
    assert failures == [] and probes >= 40, (failures, probes)
    assert slowest < 2.0, slowest
    assert open_now[1] >= 250 and open_now[3] == 1, open_now  # the attack was really on while we probed
    assert attacks[0].dropped >= 100  # nginx gave up on the slow heads (client_header_timeout)


def test_the_real_client_address_reaches_the_logs_and_cannot_be_spoofed(proxied):
    server, nginx = proxied
    r = requests.get(nginx.url + "/api/v1/students", headers={"X-Forwarded-For": "6.6.6.6", "X-API-Key": KEY,
                                                               "X-Request-ID": "via-proxy"}, timeout=10)
    assert r.status_code == 200
    r = requests.get(server.url + "/api/v1/students", headers={"X-Forwarded-For": "10.9.8.7", "X-API-Key": KEY,
                                                                "X-Request-ID": "direct"}, timeout=10)
    assert r.status_code == 200
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    by_id = {line.get("request_id"): line for line in lines}
    # nginx replaces the header with the address it saw; the service believes exactly one proxy hop
    assert by_id["via-proxy"]["client"] == "127.0.0.1"
    assert by_id["direct"]["client"] == "10.9.8.7"


def test_a_body_over_the_limit_is_refused_by_nginx_before_gunicorn_reads_it(proxied):
    server, nginx = proxied
    r = requests.post(nginx.url + "/api/v1/recognize", data=b"\0" * (22 * 1024 * 1024),
                      headers={"Content-Type": "image/jpeg", "X-API-Key": KEY}, timeout=60)
    assert r.status_code == 413
    assert requests.get(nginx.url + "/health/ready", timeout=5).status_code == 200
