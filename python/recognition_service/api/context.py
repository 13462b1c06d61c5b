"""What a request borrows from its process, as flaskr's get_db(): the service state and a connection."""

from __future__ import annotations

from flask import current_app

from recognition_service.state import ServiceState


def service_state() -> ServiceState:
    """The current app's ServiceState."""
    return current_app.extensions["recognition"]


def get_db():
    """A pooled connection for this request: `with get_db() as conn:` commits, or rolls back on error.

    The schema is ensured here, once per process (a flag after the first call), not by each view.
    """
    state = service_state()
    state.ensure_schema()
    return state.db.get_db_conn()
