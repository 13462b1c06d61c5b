"""Embedded PostgreSQL (the pgserver package) for running without DATABASE_URL."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

# Importing pgserver makes platformdirs warn when XDG_RUNTIME_DIR is unset (services, containers);
# pgserver copes without it, so the warning would only be noise in the start scripts' one-line errors.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def forget_dead_users(pgdata: Path) -> list[int]:
    """Drop pids of processes that died without saying so (SIGKILL, OOM) from pgserver's list of users.

    pgserver stops the server when the last process in `.handle_pids.json` exits cleanly; a dead pid
    left there would keep every later clean exit from stopping it. Returns the pids removed.
    """
    import psutil
    from pgserver.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the lock pgserver itself holds while it edits the list
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the PostgreSQL server kept under DATA_DIR/pgdata and return its URL."""
    import pgserver  # imported here: only needed when no DATABASE_URL is configured

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pgdata"
    if dead := forget_dead_users(pgdata):
        log.info("embedded PostgreSQL: forgot %d process(es) that exited uncleanly: %s", len(dead), dead)
    # cleanup_mode='stop': the server stops when the last process using it exits.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL running in %s", pgdata)
    return url
