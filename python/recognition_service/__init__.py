"""Face-recognition attendance service: `create_app()` builds the Flask application."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from recognition_service.config import Settings

from recognition_service._version import __version__  # noqa: F401 - re-exported


def create_app(settings: Settings | None = None, *, warm_up: bool = False) -> Flask:
    """Application factory: validate settings once, attach per-process state and the API blueprints."""
    # Imported here, not at the top: the start scripts import this package (its preflight checks) before
    # they know whether Flask and the rest are installed, and must then say so in one line.
    from flask import Flask

    from recognition_service.api.auth import init_auth
    from recognition_service.api.errors import register_error_handlers
    from recognition_service.api.hooks import init_request_hooks
    from recognition_service.config import load_settings
    from recognition_service.serving.logging_setup import configure_logging
    from recognition_service.state import ServiceState

    settings = settings or load_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)

    app = Flask(__name__)
    if settings.TRUSTED_PROXY_COUNT:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # remote_addr becomes the client address the proxy saw (logs, failed-key throttling).
        n = settings.TRUSTED_PROXY_COUNT
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["MAX_UPLOAD_MB"] = settings.MAX_UPLOAD_MB
    app.json.sort_keys = False
    state = ServiceState(settings)
    app.extensions["recognition"] = state
    register_error_handlers(app)
    init_request_hooks(app, settings.REQUEST_TIMEOUT_S)
    init_auth(app, state)

    from recognition_service.api import docs, health, models, recognition, review, sessions, students
    from recognition_service.api.console import init_console

    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(students.bp, url_prefix="/api/v1")
    app.register_blueprint(recognition.bp, url_prefix="/api/v1")
    app.register_blueprint(sessions.bp, url_prefix="/api/v1")
    app.register_blueprint(review.bp, url_prefix="/api/v1")
    app.register_blueprint(models.bp, url_prefix="/api/v1")
    init_console(app)
    if warm_up:
        state.warm_up()
    return app
