"""API key checks on every /api/v1 route (and /metrics, /health when configured so)."""

from __future__ import annotations

from flask import Flask, g, request

from .api_keys import KeyChecker
from .errors import ApiError


class Unauthorized(ApiError):
    status, code = 401, "missing_api_key"


class Forbidden(ApiError):
    status, code = 403, "api_key_revoked"


def _protected(path: str, settings) -> bool:
    if path.startswith("/api/"):
        return True
    if path == "/metrics":
        return not settings.PUBLIC_METRICS
    if path == "/health":
        return not settings.PUBLIC_HEALTH_DETAILS
    return False  # /health/live and /health/ready stay open for load balancers


def init_auth(app: Flask, state) -> None:
    """Refuse requests without a valid X-API-Key once any key is configured (API_KEYS or the database)."""
    checker = KeyChecker(state.settings.api_keys, state.db)
    state.keys = checker

    @app.before_request
    def _require_key() -> None:
        g.actor = "anonymous"
        if not _protected(request.path, state.settings):
            return
        state.ensure_schema()
        result = checker.check(request.headers.get("X-API-Key"))
        g.actor = result.actor
        if result.status in ("ok", "open"):
            return
        if result.status == "missing":
            raise Unauthorized("this service requires an API key in the X-API-Key header")
        if result.status == "revoked":
            raise Forbidden("this API key has been revoked")
        raise Unauthorized("unknown API key", code="invalid_api_key")
