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
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from recognition_service import metrics
from recognition_service.background import BackgroundLoop
from recognition_service.callbacks import outbox
from recognition_service.callbacks.retention import delete_expired_deliveries
from recognition_service.callbacks.transport import Reply, TransportError
from recognition_service.retry import Backoff
from recognition_service.security.egress import RefusedAddress, check_callback_url

log = logging.getLogger(__name__)

_RETRYABLE = {408, 425, 429}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.` + body, hex: the X-Recognizer-Signature value."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_after_s(headers: dict) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds from now."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
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


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: delivered, to be retried in `retry_in` s, or (neither) a dead letter."""

    delivered: bool
    status: int | None
    error: str
    retry_in: float | None


def decide(reply: Reply | None, error: str, *, attempts: int, age_s: float, max_age_s: float,
           backoff: Backoff, rand=None) -> Outcome:
    """The retry rule, pure: 2xx delivered; 3xx and 4xx other than 408/425/429 dead at once; the rest
    retried with backoff (and at least Retry-After on 429/503) until the delivery is max_age_s old."""
    status = reply.status if reply is not None else None
    if status is not None and 200 <= status < 300:
        return Outcome(True, status, "", None)
    retry_after = None
    if status is not None:
        error = f"HTTP {status}"
        if 300 <= status < 400:  # never followed: it could lead to a refused address
            location = next((v for k, v in reply.headers.items() if k.lower() == "location"), "?")
            error = f"HTTP {status} redirect to {location[:200]} not followed"
        if status in (429, 503):
            retry_after = retry_after_s(reply.headers)
    permanent = status is not None and 300 <= status < 500 and status not in _RETRYABLE
    if permanent or age_s >= max_age_s:
        return Outcome(False, status, error, None)
    wait = backoff.delay(attempts) if rand is None else backoff.delay(attempts, rand)
    return Outcome(False, status, error, max(retry_after or 0.0, wait))


class CallbackSender(BackgroundLoop):
    """Batches events, claims due deliveries and posts them; never drops one before its max age.

    Given its collaborators: the database, the settings and `post(url, body, headers) -> Reply` (the
    transport seam); one small function per duty (batch, deliver, sweep delivered callbacks).
    """

    def __init__(self, *, db, settings, post, ensure_schema=lambda: None):
        super().__init__("callback-sender", settings.CALLBACK_POLL_S)
        self.db, self.settings, self.post = db, settings, post
        self._ensure_schema = ensure_schema
        self.backoff = Backoff(settings.CALLBACK_RETRY_BASE_S, settings.CALLBACK_RETRY_MAX_S, jitter=(0.5, 1.0))
        self._last_count = 0.0
        self._last_sweep = 0.0

    def tick(self) -> bool:
        self._ensure_schema()
        self._batch()
        busy = self._deliver_due()
        self._sweep()
        return busy

    def _batch(self) -> None:
        s = self.settings
        with self.db.get_db_conn() as conn:
            outbox.batch_events(conn, s.CALLBACK_FLUSH_MS, s.public_base_url)
            if time.monotonic() - self._last_count >= 5:
                metrics.CALLBACKS_PENDING.set(outbox.pending_count(conn))
                self._last_count = time.monotonic()

    def _deliver_due(self) -> bool:
        s = self.settings
        with self.db.get_db_conn() as conn:
            due = outbox.claim_due(conn, 10, s.CALLBACK_READ_TIMEOUT_S + s.CALLBACK_CONNECT_TIMEOUT_S + 30)
        for item in due:
            if self.stopping:
                break
            self.send(item)
        return bool(due)

    def _sweep(self) -> None:
        """Delivered callbacks past DELIVERED_RETENTION_DAYS go (hourly, one process at a time)."""
        if time.monotonic() - self._last_sweep < self.settings.EVIDENCE_SWEEP_S:
            return
        self._last_sweep = time.monotonic()
        with self.db.get_db_conn() as conn:
            removed = delete_expired_deliveries(conn, self.settings.DELIVERED_RETENTION_DAYS)
        if removed:
            log.info("retention: %d delivered callback(s) removed", removed)

    def send(self, item: outbox.Due) -> Outcome:
        """Post one delivery and record what became of it."""
        s = self.settings
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        body = json.dumps({**item.body, "sent_at": timestamp}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Recognizer-Event-Id": item.event_id,
                   "X-Recognizer-Timestamp": timestamp}
        if s.CALLBACK_SECRET:
            headers["X-Recognizer-Signature"] = "sha256=" + sign(s.CALLBACK_SECRET.get_secret_value(), timestamp, body)
        try:
            check_callback_url(item.callback_url, s.CALLBACK_ALLOWED_HOSTS)
        except RefusedAddress as exc:  # the host now resolves somewhere it must not go
            log.warning("callback %s not sent: %s", item.event_id, exc.message)
            outcome = Outcome(False, None, exc.message, None)
        else:
            reply, error = None, ""
            try:
                reply = self.post(item.callback_url, body, headers)
            except TransportError as exc:
                error = str(exc)
            outcome = decide(reply, error, attempts=item.attempts, age_s=item.age_s, max_age_s=s.CALLBACK_MAX_AGE_S,
                             backoff=self.backoff)
        self._record(item, outcome)
        return outcome

    def _record(self, item: outbox.Due, outcome: Outcome) -> None:
        with self.db.get_db_conn() as conn:
            if outcome.delivered:
                outbox.mark_delivered(conn, item, outcome.status)
            else:
                outbox.mark_failed(conn, item, status=outcome.status, error=outcome.error, retry_in_s=outcome.retry_in)
        if outcome.delivered:
            metrics.CALLBACKS.labels("delivered").inc()
            metrics.CALLBACK_LATENCY.observe(item.age_s)
        elif outcome.retry_in is None:
            metrics.CALLBACKS.labels("dead").inc()
            log.warning("callback %s to %s: dead letter after %d attempt(s), %.0f s (%s)", item.event_id,
                        item.callback_url, item.attempts, item.age_s, outcome.error)
        else:
            metrics.CALLBACKS.labels("retried").inc()
            log.info("callback %s failed (%s), attempt %d; next in %.1f s", item.event_id, outcome.error,
                     item.attempts, outcome.retry_in)
