"""Console sign-ins kept in PostgreSQL (OWASP session management): the cookie carries a random id; the row
says which key opened it and ends on sign-out, after CONSOLE_IDLE_TIMEOUT_S without a request, after
CONSOLE_SESSION_MAX_S in all, or when its key stops being valid. Plain functions that take a connection."""

from __future__ import annotations

import hashlib
import secrets


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn, actor: str) -> str:
    """A new sign-in for `actor`; returns the id for the cookie (only its sha256 is stored)."""
    token = secrets.token_urlsafe(32)
    with conn.cursor() as cur:
        cur.execute("""DELETE FROM console_sessions
                       WHERE coalesce(ended_at, last_seen_at) < now() - interval '7 days'""")  # old rows go
        cur.execute("INSERT INTO console_sessions (token_hash, actor) VALUES (%s, %s)", (_hash(token), actor))
    return token


def touch(conn, token: str, idle_s: float, max_s: float) -> str | None:
    """The actor of a live sign-in, marking it seen now; None (and the row ended) when it is over."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE console_sessions SET last_seen_at = now()
                       WHERE token_hash = %s AND ended_at IS NULL
                         AND last_seen_at > now() - make_interval(secs => %s)
                         AND created_at > now() - make_interval(secs => %s)
                       RETURNING actor""", (_hash(token), idle_s, max_s))
        row = cur.fetchone()
        if row is None:
            cur.execute("""UPDATE console_sessions SET ended_at = now(),
                                  end_reason = CASE WHEN created_at <= now() - make_interval(secs => %s)
                                                    THEN 'expired' ELSE 'idle' END
                           WHERE token_hash = %s AND ended_at IS NULL""", (max_s, _hash(token)))
    return row[0] if row else None


def end(conn, token: str, reason: str) -> None:
    with conn.cursor() as cur:
        cur.execute("""UPDATE console_sessions SET ended_at = now(), end_reason = %s
                       WHERE token_hash = %s AND ended_at IS NULL""", (reason, _hash(token)))


def signed_in(conn) -> list[dict]:
    """Live sign-ins by key (for the service page): actor, count, last seen."""
    with conn.cursor() as cur:
        cur.execute("""SELECT actor, count(*), max(last_seen_at) FROM console_sessions WHERE ended_at IS NULL
                       GROUP BY actor ORDER BY actor""")
        return [{"actor": a, "sessions": n, "last_seen_at": t.isoformat()} for a, n, t in cur.fetchall()]
