"""The API's error handlers: every error answered as JSON (the error classes live in errors.py)."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from recognition_service.errors import ApiError

log = logging.getLogger("recognition_service.errors")

_HTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type",
}


def _too_large_message(app: Flask) -> str:
    """Werkzeug raises one bare 413 for three limits: say which one the request broke."""
    limit = f"MAX_UPLOAD_MB ({app.config['MAX_UPLOAD_MB']} MB)"
    length = request.content_length
    if request.mimetype == "multipart/form-data" and (length is None or length <= app.config["MAX_CONTENT_LENGTH"]):
        return (f"the multipart form has too many parts (at most {request.max_form_parts}) or a field whose name "
                f"or value exceeds {request.max_form_memory_size // 1000} kB; send photos as 'image' file parts, "
                f"the whole request within {limit}")
    return f"request body exceeds {limit}"


def register_error_handlers(app: Flask) -> None:
    """Answer every error as JSON; unexpected exceptions become 500 without killing the worker."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return jsonify(exc.to_dict()), exc.status, getattr(exc, "headers", None) or {}

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            message = _too_large_message(app)
        # Keep what the exception says in headers (the Allow list of a 405), but answer JSON.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return jsonify({"error": {"code": code, "message": message}}), status, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return jsonify({"error": {"code": "internal_error", "message": "internal server error; quote the request id",
                                  "request_id": g.get("request_id")}}), 500
