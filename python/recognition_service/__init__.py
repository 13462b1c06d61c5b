"""Face-recognition attendance service: `create_app()` builds the Flask application."""

from __future__ import annotations

import logging

from flask import Flask

from .config import Settings, load_settings
from .errors import register_error_handlers
from .state import ServiceState

__version__ = "0.1.0"


def create_app(settings: Settings | None = None, *, warm_up: bool = False) -> Flask:
    """Application factory: validate settings once, attach per-process state and the API blueprints."""
    settings = settings or load_settings()
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.LOG_LEVEL)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["MAX_UPLOAD_MB"] = settings.MAX_UPLOAD_MB
    app.json.sort_keys = False
    state = ServiceState(settings)
    app.extensions["recognition"] = state
    register_error_handlers(app)

    from .api import health, recognition, students

    app.register_blueprint(health.bp)
    app.register_blueprint(students.bp, url_prefix="/api/v1")
    app.register_blueprint(recognition.bp, url_prefix="/api/v1")
    if warm_up:
        state.warm_up()
    return app
