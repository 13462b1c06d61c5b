"""The HTTP seam of callbacks: `post(url, body, headers) -> Reply`, over requests or in memory.

The sender only ever calls `post`; the real transport never follows a redirect (it could lead to an
address the egress rules refuse). `MemoryTransport` is its in-memory twin for fast tests of the retry,
Retry-After and dead-letter rules, as httpx's MockTransport is for httpx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import requests

USER_AGENT = "recognition-service-callbacks/1"


class TransportError(Exception):
    """The request got no HTTP answer (connection refused or reset, timeout, TLS failure)."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict = field(default_factory=dict)


class HttpTransport:
    def __init__(self, connect_timeout_s: float, read_timeout_s: float):
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT

    def post(self, url: str, body: bytes, headers: dict) -> Reply:
        try:
            response = self._http.post(url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        response.close()
        return Reply(response.status_code, dict(response.headers))


class MemoryTransport:
    """Answers from `respond(url, body, headers)` (a Reply, or raises TransportError); keeps every request."""

    def __init__(self, respond: Callable[[str, bytes, dict], Reply]):
        self.respond = respond
        self.requests: list[tuple[str, bytes, dict]] = []

    def post(self, url: str, body: bytes, headers: dict) -> Reply:
        self.requests.append((url, body, headers))
        return self.respond(url, body, headers)
