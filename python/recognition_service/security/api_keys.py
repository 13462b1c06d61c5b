"""API keys: stored as sha256 only; plain functions that take a connection, plus the per-process checker."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from recognition_service.security.audit import audit

KEY_PREFIX = "rk_"
_CACHE_S = 5.0  # a revocation takes effect within this


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn, name: str, actor: str = "cli") -> tuple[int, str]:
    """A new key: returns (key_id, key); the key itself is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO api_keys (name, key_hash, prefix) VALUES (%s, %s, %s) RETURNING key_id",
                    (name, hash_key(key), key[:10]))
        key_id = cur.fetchone()[0]
    audit(conn, actor, "api_key.create", str(key_id), {"name": name})
    return key_id, key


def list_keys(conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT key_id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY key_id")
        return [{"key_id": r[0], "name": r[1], "prefix": r[2], "created_at": r[3].isoformat(),
                 "revoked_at": r[4].isoformat() if r[4] else None} for r in cur.fetchall()]


def revoke_key(conn, key_id: int, actor: str = "cli") -> bool:
    with conn.cursor() as cur:
        cur.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL", (key_id,))
        done = cur.rowcount == 1
    if done:
        audit(conn, actor, "api_key.revoke", str(key_id))
    return done


@dataclass
class KeyCheck:
    status: str  # "ok", "missing", "invalid", "revoked", "open" (no keys configured anywhere)
    actor: str


class KeyChecker:
    """Checks X-API-Key against API_KEYS (constant-time) and the database's hashed keys (cached briefly)."""

    def __init__(self, env_keys: list[str], db):
        self._env = [k.encode() for k in env_keys]
        self._db = db
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str, int | None]] = {}  # hash -> (expires, status, key_id)
        self._any_db_keys: tuple[float, bool] = (0.0, False)

    def keys_configured(self) -> bool:
        return bool(self._env) or self._db_has_keys()

    def _db_has_keys(self) -> bool:
        expires, value = self._any_db_keys
        if time.monotonic() < expires:
            return value
        with self._db.get_db_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM api_keys)")
            value = bool(cur.fetchone()[0])
        self._any_db_keys = (time.monotonic() + _CACHE_S, value)
        return value

    def check_signed_in(self, actor: str, digest: str | None) -> bool:
        """Is a console sign-in (the actor and, for a database key, its sha256) still valid? Revocation ends it."""
        if actor.startswith("env-key:"):
            return actor[len("env-key:"):].isdigit() and int(actor[len("env-key:"):]) < len(self._env)
        if actor == "anonymous":
            return not self.keys_configured()
        if not digest:
            return False
        with self._db.get_db_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT key_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (digest,))
            row = cur.fetchone()
        return row is not None and actor == f"key:{row[0]}"

    def check(self, key: str | None) -> KeyCheck:
        if not key:
            return KeyCheck("missing" if self.keys_configured() else "open", "anonymous")
        given = key.encode()
        matched = None
        for i, candidate in enumerate(self._env):  # compare with every key: time does not say which matched
            if hmac.compare_digest(given, candidate):
                matched = i
        if matched is not None:
            return KeyCheck("ok", f"env-key:{matched}")
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(digest)
        if cached is None or cached[0] < now:
            with self._db.get_db_conn() as conn, conn.cursor() as cur:
                cur.execute("SELECT key_id, revoked_at IS NOT NULL FROM api_keys WHERE key_hash = %s", (digest,))
                row = cur.fetchone()
            status = "invalid" if row is None else ("revoked" if row[1] else "ok")
            cached = (now + _CACHE_S, status, row[0] if row else None)
            with self._lock:
                if len(self._known) > 10_000:  # unknown keys sprayed at us must not grow memory
                    self._known.clear()
                self._known[digest] = cached
        if cached[1] == "invalid" and not self.keys_configured():
            return KeyCheck("open", "anonymous")
        return KeyCheck(cached[1], f"key:{cached[2]}" if cached[2] else "anonymous")
