"""Slow and idle clients for the serving tests (tests/test_proxy.py, tests/test_waitress_attacks.py): many
connections that send a request head a line a second, sit idle, or trickle a body, reconnecting when dropped."""

from __future__ import annotations

import socket
import threading


class Attack:
    """`count` connections doing `behave(sock)` over and over (reconnecting when the server drops them)."""

    def __init__(self, port: int, count: int, behave):
        self.port, self.behave = port, behave
        self.stop = threading.Event()
        self.connected = 0     # connections that were open at some point
        self.dropped = 0       # connections the server closed on us
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.connected += 1
                    self.behave(sock, self.stop)
                    self.dropped += 1
            except OSError:
                self.dropped += 1
                self.stop.wait(0.2)

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def slow_headers(sock, stop):
    sock.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")
    while not stop.wait(1.0):
        sock.sendall(b"X-Slow: 1\r\n")  # never the blank line that ends the head


def idle(sock, stop):
    sock.settimeout(1.0)
    while not stop.is_set():
        try:
            if sock.recv(1) == b"":
                return  # closed by the server
        except socket.timeout:
            continue


def trickle(total: int):
    def behave(sock, stop):
        sock.sendall(f"POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {total}\r\n\r\n".encode())
        while not stop.wait(1.0):
            sock.sendall(b"\0" * 1024)  # 1 KiB/s
    return behave


def standard_attacks(port: int) -> list[Attack]:
    """What a LAN throws at a server: 100 slow heads, 300 idle sockets, 10 slow bodies, one large slow body."""
    return [Attack(port, 100, slow_headers), Attack(port, 300, idle), Attack(port, 10, trickle(1_000_000)),
            Attack(port, 1, trickle(19 * 1024 * 1024))]


def probe_ready(url: str, seconds: float = 25.0) -> tuple[int, list, float]:
    """Ask `url`/health/ready every half second for `seconds` (after 2 s for the attack to build up): how many
    probes, the failures (status codes or exception names) and the slowest answer in seconds."""
    import time

    import requests

    probes, failures, slowest = 0, [], 0.0
    time.sleep(2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            r = requests.get(url + "/health/ready", timeout=5)
            if r.status_code != 200:
                failures.append(r.status_code)
        except requests.RequestException as exc:
            failures.append(type(exc).__name__)
        slowest = max(slowest, time.monotonic() - started)
        probes += 1
        time.sleep(0.5)
    return probes, failures, slowest
