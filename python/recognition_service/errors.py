"""API errors and the handlers that turn every failure into `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client with its HTTP status and a stable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body.update(self.details)
        return {"error": body}


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"


class NotFound(ApiError):
    status, code = 404, "not_found"


class InvalidImage(ApiError):
    status, code = 422, "invalid_image"


class ImageTooLarge(ApiError):
    status, code = 413, "image_too_large"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class DatabaseBusy(ServiceUnavailable):
    code = "database_busy"


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
