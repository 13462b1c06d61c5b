"""The callback outbox in PostgreSQL: batch events into deliveries, claim due ones, record outcomes.

Plain functions that take a connection. Claiming pushes `next_attempt_at` past the send time
(a visibility timeout) under FOR UPDATE SKIP LOCKED, so two senders never send one delivery at the
same time and a sender that dies mid-send only delays it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import psycopg2.extras

BATCH_MAX = 100


@dataclass
class Due:
    delivery_id: int
    event_id: str
    session_id: int
    body: dict
    attempts: int
    callback_url: str
    age_s: float


def _with_url(payload: dict, base_url: str, slot_id: int, event_id) -> dict:
    evidence = payload.get("evidence_id")
    url = f"{base_url}/api/v1/sessions/{slot_id}/evidence/{evidence}" if evidence else None
    return {**payload, "evidence_url": url, "event_id": str(event_id)}


def batch_events(conn, flush_ms: int, base_url: str) -> int:
    """Turn unbatched events into deliveries; return how many deliveries were made.

    Recognitions wait until the oldest is `flush_ms` old or 100 are waiting, then go out together.
    """
    made = 0
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("""SELECT e.id, e.event_id, e.session_id, e.type, e.payload, e.created_at,
                              s.slot_id, s.mode, s.callback_type,
                              (now() - e.created_at) >= make_interval(secs => %s / 1000.0) AS ripe
                       FROM events e JOIN sessions s USING (session_id)
                       WHERE e.delivery_id IS NULL ORDER BY e.id LIMIT 1000
                       FOR UPDATE OF e SKIP LOCKED""", (flush_ms,))
        rows = cur.fetchall()
        recognitions: dict[int, list] = {}
        for row in rows:
            if row["type"] == "recognition":
                recognitions.setdefault(row["session_id"], []).append(row)
                continue
            body = {"event_id": str(row["event_id"]), "type": "session_status", "slot_id": row["slot_id"],
                    "mode": row["mode"], "callback_type": row["callback_type"], **row["payload"],
                    "occurred_at": row["created_at"].isoformat()}
            _new_delivery(cur, row["session_id"], "session_status", str(row["event_id"]), body, [row["id"]])
            made += 1
        for session_id, items in recognitions.items():
            if len(items) < BATCH_MAX and not items[0]["ripe"]:
                continue  # wait for more, up to flush_ms
            for start in range(0, len(items), BATCH_MAX):
                chunk = items[start:start + BATCH_MAX]
                event_id = str(chunk[0]["event_id"]) if len(chunk) == 1 else str(uuid.uuid4())
                first = chunk[0]
                body = {"event_id": event_id, "type": "recognition", "slot_id": first["slot_id"],
                        "mode": first["mode"], "callback_type": first["callback_type"],
                        "recognitions": [_with_url(c["payload"], base_url, c["slot_id"], c["event_id"])
                                         for c in chunk]}
                _new_delivery(cur, session_id, "recognition", event_id, body, [c["id"] for c in chunk])
                made += 1
    return made


def _new_delivery(cur, session_id: int, type_: str, event_id: str, body: dict, event_ids: list[int]) -> None:
    cur.execute("""INSERT INTO deliveries (event_id, session_id, type, body) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (event_id) DO NOTHING RETURNING delivery_id""",
                (event_id, session_id, type_, json.dumps(body)))
    row = cur.fetchone()
    if row is None:  # a single recognition already delivered under its own id: attach to it
        cur.execute("SELECT delivery_id FROM deliveries WHERE event_id = %s", (event_id,))
        row = cur.fetchone()
    delivery_id = row["delivery_id"] if isinstance(row, dict) else row[0]
    cur.execute("UPDATE events SET delivery_id = %s WHERE id = ANY(%s)", (delivery_id, event_ids))


def claim_due(conn, limit: int, claim_s: float) -> list[Due]:
    """Take up to `limit` due deliveries for this sender for `claim_s` seconds."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => %s),
                              attempts = d.attempts + 1
                       FROM sessions s
                       WHERE s.session_id = d.session_id AND d.delivery_id IN (
                           SELECT delivery_id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                           ORDER BY delivery_id FOR UPDATE SKIP LOCKED LIMIT %s)
                       RETURNING d.delivery_id, d.event_id, d.session_id, d.body, d.attempts, s.callback_url,
                                 extract(epoch FROM now() - d.created_at)""", (claim_s, limit))
        return [Due(r[0], str(r[1]), r[2], r[3], r[4], r[5], float(r[6])) for r in cur.fetchall()]


def pending_count(conn) -> int:
    """Deliveries waiting plus events not yet batched."""
    with conn.cursor() as cur:
        cur.execute("""SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending')
                              + (SELECT count(*) FROM events WHERE delivery_id IS NULL)""")
        return int(cur.fetchone()[0])


def mark_delivered(conn, due: Due, status: int) -> None:
    with conn.cursor() as cur:
        cur.execute("""UPDATE deliveries SET status = 'delivered', delivered_at = now(), last_status = %s,
                              last_error = NULL WHERE delivery_id = %s""", (status, due.delivery_id))
        cur.execute("UPDATE sessions SET last_success_time = now() WHERE session_id = %s", (due.session_id,))


def mark_failed(conn, due: Due, *, status: int | None, error: str, retry_in_s: float | None) -> None:
    """Schedule a retry after `retry_in_s`, or make a dead letter when it is None."""
    with conn.cursor() as cur:
        if retry_in_s is None:
            cur.execute("""UPDATE deliveries SET status = 'dead', last_status = %s, last_error = %s
                           WHERE delivery_id = %s""", (status, error[:500], due.delivery_id))
        else:
            cur.execute("""UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => %s),
                                  last_status = %s, last_error = %s WHERE delivery_id = %s""",
                        (retry_in_s, status, error[:500], due.delivery_id))
        cur.execute("UPDATE sessions SET callback_failures = callback_failures + 1 WHERE session_id = %s",
                    (due.session_id,))


def list_deliveries(conn, slot_id: int, status: str | None, limit: int) -> list[dict]:
    """A slot's deliveries (newest first), optionally of one status."""
    where, args = ("AND d.status = %s", [status]) if status else ("", [])
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"""SELECT d.event_id, d.type, d.status, d.attempts, d.last_status, d.last_error,
                               d.created_at, d.next_attempt_at, d.delivered_at, d.body
                        FROM deliveries d JOIN sessions s USING (session_id)
                        WHERE s.slot_id = %s {where} ORDER BY d.delivery_id DESC LIMIT %s""",
                    [slot_id, *args, limit])
        rows = cur.fetchall()
    out = []
    for r in rows:
        item = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        item["event_id"] = str(r["event_id"])
        item["next_attempt_at"] = item["next_attempt_at"] if r["status"] == "pending" else None
        out.append(item)
    return out


def redeliver_dead(conn, slot_id: int) -> int:
    """Requeue the slot's dead letters (same event_id); return how many."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE deliveries d SET status = 'pending', next_attempt_at = now(), attempts = 0,
                              created_at = now()
                       FROM sessions s WHERE s.session_id = d.session_id AND s.slot_id = %s AND d.status = 'dead'""",
                    (slot_id,))
        return cur.rowcount
