"""API key checks on every /api/v1 route (and /metrics, /health when configured so)."""

from __future__ import annotations

from flask import Flask, g, request

from recognition_service.api.context import get_db
from recognition_service.errors import ApiError
from recognition_service.security import rate_limit
from recognition_service.security import roles
from recognition_service.security.api_keys import KeyChecker, shared_secret


class Unauthorized(ApiError):
    status, code = 401, "missing_api_key"


class Forbidden(ApiError):
    status, code = 403, "api_key_revoked"


class RoleForbidden(ApiError):
    """The key is valid but its role does not allow this (security/roles.py)."""

    status, code = 403, "forbidden_for_role"


def authorize(permission: str | None = None) -> None:
    """403 unless the signed-in key's role (g.role) allows `permission`, by default the one the matched
    route needs (roles.ROUTES). Called for every API request and console page, and by actions whose
    permission depends on what is asked (a review confirm that also enrols)."""
    role = g.get("role")
    if permission is None:
        if roles.may(role, request.endpoint):
            return
        permission = roles.needed(request.endpoint)
    elif roles.allowed(role, permission):
        return
    raise RoleForbidden(roles.refusal(role, permission), details={"role": role, "permission": permission})


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
    checker = KeyChecker(state.settings.api_keys, state.db, secret=lambda: shared_secret(state.db))
    state.keys = checker

    @app.before_request
    def _require_key() -> None:
        g.actor, g.role = "anonymous", None
        if not _protected(request.path, state.settings):
            return
        state.ensure_schema()  # the keys live in the database: its tables first (a flag after the first time)
        key = request.headers.get("X-API-Key")
        guessing = f"failed-key:{request.remote_addr}"
        if key is not None and checker.keys_configured():
            refuse_while_blocked(state, guessing)
        result = checker.check(key)
        g.actor, g.role = result.actor, result.role
        if result.status in ("ok", "open"):
            if result.status == "ok" and request.path.startswith("/api/"):
                limit_actor(state, result.actor)
            if result.status == "ok":
                checker.used(result.actor)
            authorize()
            return
        if result.status == "missing":
            raise Unauthorized("this service requires an API key in the X-API-Key header")
        count_failure(state, guessing)
        if result.status == "revoked":
            raise Forbidden("this API key has been revoked")
        raise Unauthorized("unknown API key", code="invalid_api_key")


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


def _too_many(message: str, retry_after: float) -> TooManyRequests:
    error = TooManyRequests(f"{message}; retry after {int(retry_after)} s", details={"retry_after_s": int(retry_after)})
    error.headers = {"Retry-After": str(int(retry_after))}
    return error


def refuse_while_blocked(state, bucket: str) -> None:
    """A client address past FAILED_KEY_ATTEMPTS_PER_MINUTE wrong keys gets 429 without a key lookup."""
    limit = state.settings.FAILED_KEY_ATTEMPTS_PER_MINUTE
    if not limit:
        return
    with get_db() as conn:
        retry_after = rate_limit.blocked(conn, bucket, limit, 60)
    if retry_after is not None:
        raise _too_many(f"more than {limit} wrong API keys from this address in a minute", retry_after)


def count_failure(state, bucket: str) -> None:
    if state.settings.FAILED_KEY_ATTEMPTS_PER_MINUTE:
        with get_db() as conn:
            rate_limit.hit(conn, bucket, state.settings.FAILED_KEY_ATTEMPTS_PER_MINUTE, 60)


def limit_actor(state, bucket: str) -> None:
    """RATE_LIMIT_PER_MINUTE requests per API key (API and console), across every worker and server; 0: off."""
    limit = state.settings.RATE_LIMIT_PER_MINUTE
    if not limit:
        return
    with get_db() as conn:
        retry_after = rate_limit.hit(conn, bucket, limit, 60)
    if retry_after is not None:
        raise _too_many(f"more than {limit} requests per minute", retry_after)
