"""The callback seam: one sender thread per process posts outbox deliveries to each session's callback_url.

At-least-once: a delivery keeps its event_id across retries. 2xx delivered; 408, 429, 5xx, timeouts and
connection errors are retried with exponential backoff and jitter (Retry-After honoured) until
CALLBACK_MAX_AGE_S; other 4xx are dead letters at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime

import requests

from recognition_service import metrics
from recognition_service.callbacks import outbox
from recognition_service.security.egress import RefusedAddress, check_callback_url

log = logging.getLogger(__name__)

_RETRYABLE = {408, 425, 429}
USER_AGENT = "recognition-service-callbacks/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.` + body, hex: the X-Recognizer-Signature value."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


class CallbackSender:
    """Batches events, claims due deliveries and posts them; never drops one before its max age."""

    def __init__(self, state):
        self.state = state
        self.settings = state.settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        self._last_error = ""
        self._last_count = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="callback-sender", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self._tick()
                self._last_error = ""
            except Exception as exc:  # noqa: BLE001 - database down: try again next tick
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if message != self._last_error:
                    log.warning("callback sender tick failed: %s", message)
                self._last_error = message
            if not busy:
                self._wake.wait(self.settings.CALLBACK_POLL_S)
                self._wake.clear()

    def _tick(self) -> bool:
        s = self.settings
        self.state.ensure_schema()
        with self.state.db.get_db_conn() as conn:
            outbox.batch_events(conn, s.CALLBACK_FLUSH_MS, s.public_base_url)
            if time.monotonic() - self._last_count >= 5:
                metrics.CALLBACKS_PENDING.set(outbox.pending_count(conn))
                self._last_count = time.monotonic()
        with self.state.db.get_db_conn() as conn:
            due = outbox.claim_due(conn, 10, s.CALLBACK_READ_TIMEOUT_S + s.CALLBACK_CONNECT_TIMEOUT_S + 30)
        for item in due:
            if self._stop.is_set():
                break
            self._send(item)
        return bool(due)

    def _send(self, item: outbox.Due) -> None:
        s = self.settings
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        body = json.dumps({**item.body, "sent_at": timestamp}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Recognizer-Event-Id": item.event_id,
                   "X-Recognizer-Timestamp": timestamp}
        if s.CALLBACK_SECRET:
            headers["X-Recognizer-Signature"] = "sha256=" + sign(s.CALLBACK_SECRET.get_secret_value(), timestamp, body)
        status, error, retry_after = None, "", None
        try:
            check_callback_url(item.callback_url, s.CALLBACK_ALLOWED_HOSTS)
        except RefusedAddress as exc:  # the host now resolves somewhere it must not go
            log.warning("callback %s not sent: %s", item.event_id, exc.message)
            with self.state.db.get_db_conn() as conn:
                outbox.mark_failed(conn, item, status=None, error=exc.message, retry_in_s=None)
            metrics.CALLBACKS.labels("dead").inc()
            return
        try:
            response = self._http.post(item.callback_url, data=body, headers=headers, allow_redirects=False,
                                       timeout=(s.CALLBACK_CONNECT_TIMEOUT_S, s.CALLBACK_READ_TIMEOUT_S))
            status = response.status_code
            response.close()
            if 200 <= status < 300:
                with self.state.db.get_db_conn() as conn:
                    outbox.mark_delivered(conn, item, status)
                metrics.CALLBACKS.labels("delivered").inc()
                metrics.CALLBACK_LATENCY.observe(item.age_s)
                return
            error = f"HTTP {status}"
            retry_after = _retry_after(response) if status in (429, 503) else None
            if 300 <= status < 400:  # never followed: it could lead to a refused address
                error = f"HTTP {status} redirect to {response.headers.get('Location', '?')[:200]} not followed"
            permanent = 300 <= status < 500 and status not in _RETRYABLE
        except requests.RequestException as exc:
            error, permanent = f"{type(exc).__name__}: {exc}".splitlines()[0], False
        if permanent:
            retry_in = None
            log.warning("callback %s to %s refused with %s: dead letter", item.event_id, item.callback_url, status)
        elif item.age_s >= s.CALLBACK_MAX_AGE_S:
            retry_in = None
            log.warning("callback %s undelivered for %.0f s (%s): dead letter", item.event_id, item.age_s, error)
        else:
            backoff = min(s.CALLBACK_RETRY_MAX_S, s.CALLBACK_RETRY_BASE_S * 2 ** max(0, item.attempts - 1))
            retry_in = max(retry_after or 0.0, backoff * random.uniform(0.5, 1.0))
            log.info("callback %s failed (%s), attempt %d; next in %.1f s", item.event_id, error, item.attempts,
                     retry_in)
        with self.state.db.get_db_conn() as conn:
            outbox.mark_failed(conn, item, status=status, error=error, retry_in_s=retry_in)
        metrics.CALLBACKS.labels("dead" if retry_in is None else "retried").inc()
