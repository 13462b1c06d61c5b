"""Reading request inputs: uploaded images, JSON bodies and query/form parameters."""

from __future__ import annotations

from flask import request
from pydantic import BaseModel, ValidationError

from ..errors import ApiError, ValidationFailed

IMAGE_FIELD = "image"


def uploaded_images() -> list[bytes]:
    """Images from multipart fields named `image`, or the raw body when it has an image content type."""
    if request.mimetype == "multipart/form-data":
        files = request.files.getlist(IMAGE_FIELD)
        if not files:
            raise ApiError(f"missing multipart field '{IMAGE_FIELD}'", code="missing_image", status=400)
        return [f.read() for f in files]
    if request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        return [request.get_data(cache=False)]
    raise ApiError(f"send the photo as multipart field '{IMAGE_FIELD}' or as a raw body with an image/* "
                   "content type", code="missing_image", status=400)


def json_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body validated by a pydantic model (400 when not JSON, 422 naming the field)."""
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError("the body must be a JSON object", code="invalid_json", status=400)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_failed(exc) from None


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return ValidationFailed(f"{field}: {err['msg']}", details={"field": field})


def param(name: str) -> str | None:
    """A parameter from the form fields or the query string."""
    value = request.form.get(name) if request.mimetype == "multipart/form-data" else None
    return value if value is not None else request.args.get(name)


def number_param(name: str, default, lo, hi, kind=float):
    """A number parameter of the given kind, within [lo, hi] (422 naming the field otherwise)."""
    raw = param(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be {'an integer' if kind is int else 'a number'}",
                               details={"field": name}) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be between {lo} and {hi}", details={"field": name})
    return value


def list_param(name: str) -> list[str] | None:
    """A comma-separated list (None when absent)."""
    raw = param(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]
