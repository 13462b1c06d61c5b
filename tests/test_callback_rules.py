"""The callback retry rules, fast: the pure decision, and the sender over the in-memory transport.

The end-to-end behaviour with a real HTTP receiver and real Gunicorn is in test_callbacks.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from recognition_service.callbacks import outbox
from recognition_service.callbacks.sender import CallbackSender, decide, sign
from recognition_service.callbacks.transport import MemoryTransport, Reply, TransportError
from recognition_service.retry import Backoff
from recognition_service.sessions import store

BACKOFF = Backoff(2.0, 60.0, jitter=(0.5, 1.0))
TOP = lambda lo, hi: hi  # noqa: E731 - the jitter at its largest, so delays are exact


def _decide(reply, error="", attempts=1, age_s=1.0):
    return decide(reply, error, attempts=attempts, age_s=age_s, max_age_s=3600, backoff=BACKOFF, rand=TOP)


def test_2xx_is_delivered():
    for status in (200, 201, 204):
        outcome = _decide(Reply(status))
        assert outcome.delivered and outcome.status == status and outcome.retry_in is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_server_errors_timeouts_and_throttling_are_retried_with_backoff(status):
    assert [_decide(Reply(status), attempts=n).retry_in for n in (1, 2, 3, 6, 10)] == [2, 4, 8, 60, 60]
    assert not _decide(Reply(status)).delivered


def test_no_answer_at_all_is_retried():
    outcome = _decide(None, "ConnectionError: refused", attempts=2)
    assert outcome.retry_in == 4 and outcome.status is None and "refused" in outcome.error


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_dead_letters_at_once(status):
    outcome = _decide(Reply(status))
    assert not outcome.delivered and outcome.retry_in is None and outcome.error == f"HTTP {status}"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed_and_dead(status):
    outcome = _decide(Reply(status, {"Location": "http://169.254.169.254/"}))
    assert outcome.retry_in is None and "redirect to http://169.254.169.254/ not followed" in outcome.error


def test_retry_after_in_seconds_or_as_a_date_is_honoured_on_429_and_503():
    assert _decide(Reply(429, {"Retry-After": "120"})).retry_in == 120
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    assert 290 <= _decide(Reply(503, {"retry-after": when})).retry_in <= 300
    assert _decide(Reply(429, {"Retry-After": "0"})).retry_in == 2  # never sooner than the backoff
    assert _decide(Reply(500, {"Retry-After": "120"})).retry_in == 2  # only 429 and 503 carry it
    assert _decide(Reply(429, {"Retry-After": "soon"})).retry_in == 2


def test_a_delivery_older_than_the_max_age_is_a_dead_letter():
    outcome = decide(Reply(503), "", attempts=40, age_s=3601, max_age_s=3600, backoff=BACKOFF)
    assert outcome.retry_in is None and not outcome.delivered


def test_the_backoff_is_jittered_within_its_bounds():
    delays = [BACKOFF.delay(3) for _ in range(200)]
    assert 4.0 <= min(delays) and max(delays) <= 8.0 and len(set(delays)) > 100


def test_the_sender_posts_signed_retries_with_the_same_event_id_then_delivers(make_app):
    """Over the in-memory transport and the real outbox: 503, a dropped connection, then 200."""
    app = make_app(CALLBACK_SECRET="s3cret", CALLBACK_ALLOWED_HOSTS="127.0.0.1", CALLBACK_RETRY_BASE_S=1)
    state = app.extensions["recognition"]
    state.ensure_schema()
    answers = [Reply(503), TransportError("ConnectionError: reset"), Reply(200)]

    def respond(url, body, headers):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = MemoryTransport(respond)
    sender = CallbackSender(db=state.db, settings=state.settings, post=transport.post)
    with state.db.get_db_conn() as conn:
        store.create_session(conn, slot_id=7, cameras=[{"camera_id": 1, "url": "x.mp4"}], ends_in_s=3600,
                             callback_url="http://127.0.0.1:9/cb", student_ids=None, threshold=None, mode=None,
                             callback_type=None, frame_interval_ms=1000)
        outbox.batch_events(conn, 0, "http://127.0.0.1")
    outcomes = []
    for _ in range(3):
        with state.db.get_db_conn() as conn:
            conn.cursor().execute("UPDATE deliveries SET next_attempt_at = now()")  # due now, not after the backoff
            due = outbox.claim_due(conn, 10, 60)
        assert len(due) == 1
        outcomes.append(sender.send(due[0]))
    assert [o.delivered for o in outcomes] == [False, False, True]
    assert [o.retry_in is not None for o in outcomes[:2]] == [True, True]
    ids = {headers["X-Recognizer-Event-Id"] for _, _, headers in transport.requests}
    assert len(transport.requests) == 3 and len(ids) == 1  # at-least-once: one event id across retries
    for url, body, headers in transport.requests:
        assert url == "http://127.0.0.1:9/cb"
        assert headers["X-Recognizer-Signature"] == "sha256=" + sign("s3cret", headers["X-Recognizer-Timestamp"], body)
        assert json.loads(body)["slot_id"] == 7
    with state.db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("SELECT status, attempts FROM deliveries")
        assert cur.fetchall() == [("delivered", 3)]
