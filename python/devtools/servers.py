"""Real server processes for end-to-end tests: start_production.py (Gunicorn) and start_windows_production.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from devtools.shared import MODEL_PACK, REPO_ROOT

SCRIPTS = {"gunicorn": REPO_ROOT / "python" / "start_production.py",
           "waitress": REPO_ROOT / "python" / "start_windows_production.py"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A service process on loopback; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, kind: str, database_url: str, tmp: Path, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{kind}-{self.port}.log"
        full_env = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK),
                    "DATA_DIR": str(tmp / "data"), "PORT": str(self.port), "HOST": "127.0.0.1",
                    "WORKERS": "2", "THREADS": "4", "ORT_THREADS": "1", "LOG_FORMAT": "json",
                    "GRACEFUL_TIMEOUT_S": "20",
                    # the tests' cameras, receivers and videos live on loopback and in the temp folder
                    "CALLBACK_ALLOWED_HOSTS": "127.0.0.1", "CAMERA_ALLOWED_NETWORKS": "127.0.0.0/8",
                    "CAMERA_FILE_ROOT": tempfile.gettempdir(),
                    # the server's own temporary files (its metrics folder) in the test's folder: a server a
                    # test kills leaves nothing in /tmp
                    "TMPDIR": str(tmp)}
        full_env.update({k: str(v) for k, v in env.items()})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(SCRIPTS[kind])], env=full_env, cwd=tmp,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the server and its workers (orphaned workers would otherwise linger briefly)."""
        import psutil

        if self.proc.poll() is None:
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.proc.kill()
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(10)
        self._log.close()
