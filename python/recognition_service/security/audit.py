"""The audit log (who changed what), and how logs and the audit log name students without exposing them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os


def audit(conn, actor: str, action: str, target: str | None = None, details: dict | None = None) -> None:
    """Append to the audit log (in the caller's transaction)."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
                    (actor, action, target, json.dumps(details) if details else None))


# Log lines name students by a keyed hash under this process's random key: one student reads the same in a
# worker's lines (a session can be followed), but no log line ties back to an id once the rows are erased.
_LOG_KEY = os.urandom(32)


def log_ref(student_id: str) -> str:
    return "student#" + hmac.new(_LOG_KEY, student_id.encode(), hashlib.sha256).hexdigest()[:12]


def pseudonym(student_id: str) -> str:
    """What the audit log keeps of an erased student: sha256 of the id (verifiable, not readable)."""
    return "sha256:" + hashlib.sha256(student_id.encode()).hexdigest()
