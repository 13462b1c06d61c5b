"""A real HTTP callback receiver on loopback that records every POST (headers, body) and answers as told."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """`status` is what it answers (change it any time), with `location` as Location header when set;
    `received` lists (status, headers, body, raw bytes), `paths` the request paths."""

    def __init__(self, port: int = 0, status: int = 200, location: str | None = None):
        self.status, self.location = status, location
        self.received: list[tuple[int, dict, dict, bytes]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = outer.status
                with outer._lock:
                    outer.received.append((status, dict(self.headers), json.loads(raw), raw))
                    outer.paths.append(self.path)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                if outer.location:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict]:
        """Bodies answered with 2xx."""
        with self._lock:
            return [body for status, _, body, _ in self.received if 200 <= status < 300]

    def all(self) -> list[tuple[int, dict, dict, bytes]]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
