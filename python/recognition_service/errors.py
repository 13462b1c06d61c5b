"""The service's errors: plain classes with a stable code and HTTP status (api/errors.py answers them as JSON)."""

from __future__ import annotations


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
