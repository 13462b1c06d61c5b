"""Numbered SQL migrations, applied at start under an advisory lock so concurrent starts are safe."""

from __future__ import annotations

import logging
from importlib import resources

log = logging.getLogger(__name__)

_LOCK_KEY = 0x7265636F  # any constant shared by every process of this service


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def apply_migrations(conn) -> list[str]:
    """Apply the migrations this database lacks; return the names applied."""
    applied = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                           version int PRIMARY KEY, name text NOT NULL,
                           applied_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for number, name, sql in _migrations():
            if number in done:
                continue
            log.info("applying migration %s", name)
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (number, name))
            applied.append(name)
    return applied
