"""Embedded PostgreSQL (the pgserver package) for running without DATABASE_URL."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

# Importing pgserver makes platformdirs warn when XDG_RUNTIME_DIR is unset (services, containers);
# pgserver copes without it, so the warning would only be noise in the start scripts' one-line errors.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the PostgreSQL server kept under DATA_DIR/pgdata and return its URL."""
    import pgserver  # imported here: only needed when no DATABASE_URL is configured

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pgdata"
    # cleanup_mode='stop': the server stops when the last process using it exits.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL running in %s", pgdata)
    return url
