"""API keys: stored as sha256 only, each with a role; plain functions that take a connection, plus the
per-process checker. Keys from API_KEYS are admin and are named by a fingerprint (a keyed hash), never by
their position in the list: removing one signs its console sessions out and the audit log keeps naming
the others as before."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from recognition_service.security.audit import audit
from recognition_service.security.roles import ROLES

KEY_PREFIX = "rk_"
_CACHE_S = 5.0  # a revocation takes effect within this


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn, name: str, role: str, actor: str = "cli") -> tuple[int, str]:
    """A new key with its role: returns (key_id, key); the key itself is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO api_keys (name, key_hash, prefix, role) VALUES (%s, %s, %s, %s) RETURNING key_id",
                    (name, hash_key(key), key[:10], role))
        key_id = cur.fetchone()[0]
    audit(conn, actor, "api_key.create", str(key_id), {"name": name, "role": role})
    return key_id, key


def list_keys(conn) -> list[dict]:
    """Every key made with the tool (never the key itself): name, role, prefix, made, revoked, last used."""
    with conn.cursor() as cur:
        cur.execute("""SELECT k.key_id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, u.last_used_at
                       FROM api_keys k LEFT JOIN key_usage u ON u.actor = 'key:' || k.key_id ORDER BY k.key_id""")
        return [{"key_id": r[0], "name": r[1], "role": r[2], "prefix": r[3], "created_at": r[4].isoformat(),
                 "revoked_at": r[5].isoformat() if r[5] else None,
                 "last_used_at": r[6].isoformat() if r[6] else None} for r in cur.fetchall()]


def last_used(conn, actors: list[str]) -> dict[str, str]:
    """When each of these actors (key:<id>, env-key:<fingerprint>) last made a request, ISO 8601."""
    with conn.cursor() as cur:
        cur.execute("SELECT actor, last_used_at FROM key_usage WHERE actor = ANY(%s)", (actors,))
        return {a: t.isoformat() for a, t in cur.fetchall()}


def actor_names(conn, actors: set[str]) -> dict[str, str]:
    """What people call each actor: a tool-made key by its name, an API_KEYS key by its fingerprint (it has
    no name), `cli` the command-line tools, `anonymous` a service without keys."""
    ids = [int(a[4:]) for a in actors if a.startswith("key:") and a[4:].isdigit()]
    names = {}
    if ids:
        with conn.cursor() as cur:
            cur.execute("SELECT key_id, name FROM api_keys WHERE key_id = ANY(%s)", (ids,))
            names = {f"key:{i}": n for i, n in cur.fetchall()}
    for actor in actors:
        if actor not in names:
            names[actor] = (f"API_KEYS key {actor[8:]}" if actor.startswith("env-key:")
                            else "no key (the service has none)" if actor == "anonymous" else actor)
    return names


_USAGE_EVERY_S = 60.0  # a key's last use is written at most this often per process: not a write per request


def shared_secret(db) -> bytes:
    """The database's own random secret (made once, shared by every worker and server): it signs console
    cookies and keys the fingerprints of API_KEYS keys."""
    import os

    with db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO console_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                    (os.urandom(32),))
        cur.execute("SELECT secret FROM console_secret WHERE id = 1")
        return bytes(cur.fetchone()[0])


def env_fingerprint(secret: bytes, key: str) -> str:
    """How an API_KEYS key is named (actor `env-key:<fingerprint>`): 12 hex of an HMAC under the database's
    secret, so the name says nothing about a weak key and stays the same whatever the list's order."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:12]


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
    role: str | None = None  # the key's role when ok; admin when open (no key configured: no roles either)


class KeyChecker:
    """Checks X-API-Key against API_KEYS (constant-time) and the database's hashed keys (cached briefly)."""

    def __init__(self, env_keys: list[str], db, secret=None):
        self._env = [k.encode() for k in env_keys]
        self._env_text = list(env_keys)
        self._db = db
        self._secret = secret  # () -> bytes: the database's secret (console.py), for env key fingerprints
        self._env_ids: list[str] | None = None
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str, int | None, str | None]] = {}  # hash -> (expires, status, id, role)
        self._any_db_keys: tuple[float, bool] = (0.0, False)
        self._usage_written: dict[str, float] = {}  # actor -> monotonic time its last use was written

    def _env_actor(self, index: int) -> str:
        if self._env_ids is None:
            secret = self._secret() if self._secret else b"recognizer"
            self._env_ids = [f"env-key:{env_fingerprint(secret, k)}" for k in self._env_text]
        return self._env_ids[index]

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

    def used(self, actor: str) -> None:
        """Note that `actor` made a request (the service page's "last used"), at most once a minute here."""
        if not actor.startswith(("key:", "env-key:")):
            return
        now = time.monotonic()
        with self._lock:
            if now - self._usage_written.get(actor, float("-inf")) < _USAGE_EVERY_S:
                return
            self._usage_written[actor] = now
        try:
            with self._db.get_db_conn() as conn, conn.cursor() as cur:
                cur.execute("""INSERT INTO key_usage (actor, last_used_at) VALUES (%s, now())
                               ON CONFLICT (actor) DO UPDATE SET last_used_at = excluded.last_used_at""", (actor,))
        except Exception:  # noqa: BLE001 - the database is down: /health must still answer; next minute then
            pass

    def env_actors(self) -> list[str]:
        """The actors of the API_KEYS keys (env-key:<fingerprint>), in the list's order."""
        return [self._env_actor(i) for i in range(len(self._env))]

    def role_of(self, actor: str) -> str | None:
        """The role of a signed-in actor, None when its key is gone (revoked, removed from API_KEYS): a
        console session opened with it ends. `anonymous` is admin only while no key exists anywhere."""
        if actor.startswith("env-key:"):
            return "admin" if any(actor == self._env_actor(i) for i in range(len(self._env))) else None
        if actor == "anonymous":
            return None if self.keys_configured() else "admin"
        if not actor.startswith("key:") or not actor[4:].isdigit():
            return None
        with self._db.get_db_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT role FROM api_keys WHERE key_id = %s AND revoked_at IS NULL", (int(actor[4:]),))
            row = cur.fetchone()
        return row[0] if row else None

    def check(self, key: str | None) -> KeyCheck:
        if not key:
            configured = self.keys_configured()
            return KeyCheck("missing" if configured else "open", "anonymous", None if configured else "admin")
        given = key.encode()
        matched = None
        for i, candidate in enumerate(self._env):  # compare with every key: time does not say which matched
            if hmac.compare_digest(given, candidate):
                matched = i
        if matched is not None:
            return KeyCheck("ok", self._env_actor(matched), "admin")
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(digest)
        if cached is None or cached[0] < now:
            with self._db.get_db_conn() as conn, conn.cursor() as cur:
                cur.execute("SELECT key_id, revoked_at IS NOT NULL, role FROM api_keys WHERE key_hash = %s",
                            (digest,))
                row = cur.fetchone()
            status = "invalid" if row is None else ("revoked" if row[1] else "ok")
            cached = (now + _CACHE_S, status, row[0] if row else None, row[2] if row else None)
            with self._lock:
                if len(self._known) > 10_000:  # unknown keys sprayed at us must not grow memory
                    self._known.clear()
                self._known[digest] = cached
        if cached[1] == "invalid" and not self.keys_configured():
            return KeyCheck("open", "anonymous", "admin")
        return KeyCheck(cached[1], f"key:{cached[2]}" if cached[2] else "anonymous", cached[3])
