"""Reading request inputs: uploaded images, JSON bodies and query/form parameters."""

from __future__ import annotations

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from recognition_service.errors import ApiError, ValidationFailed

IMAGE_FIELD = "image"


def uploaded_images() -> list[bytes]:
    """Images from multipart fields named `image`, or the raw body when it has an image content type."""
    if request.mimetype == "multipart/form-data":
        files = request.files.getlist(IMAGE_FIELD)
        if not files:
            raise ApiError(f"missing multipart field '{IMAGE_FIELD}'", code="missing_image", status=400)
        return [f.read() for f in files]
    if request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        data = request.get_data(cache=False)
        if request.content_length is None and len(data) >= current_app.config["MAX_CONTENT_LENGTH"]:
            # A chunked body is cut at the limit without an error; reading on past it raises the 413.
            request.stream.read(1)
        return [data]
    raise ApiError(f"send the photo as multipart field '{IMAGE_FIELD}' or as a raw body with an image/* "
                   "content type", code="missing_image", status=400)


MAX_JSON_DEPTH = 32  # no request body of this API nests deeper than 4


def json_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body validated by a pydantic model (400 when not JSON, 422 naming the field)."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder recurses per level: 10,000 nested arrays exhaust the stack
        data = None
    if data is None and not request.is_json:
        raise ApiError(f"the body must be JSON sent with Content-Type: application/json (got "
                       f"{request.mimetype or 'no content type'})", code="invalid_json", status=400)
    if data is None:
        raise ApiError("the body must be a JSON object", code="invalid_json", status=400)
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json", status=400)
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise _validation_failed(exc) from None
    _refuse_nul(body.model_dump())  # only what is kept: ignored extra fields may hold anything
    return body


def _depth(data) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH and isinstance(value, (dict, list)):
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _refuse_nul(value, path: str = "") -> None:
    """PostgreSQL text cannot hold a NUL character: 422 naming the field rather than a 500 from the driver."""
    if isinstance(value, str) and "\x00" in value:
        field = path or "body"
        raise ValidationFailed(f"{field}: must not contain NUL characters", details={"field": field})
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _refuse_nul(item, f"{path}.{key}" if path else str(key))


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return ValidationFailed(f"{field}: {err['msg']}", details={"field": field})


def param(name: str) -> str | None:
    """A parameter from the form fields or the query string, given at most once and without NUL characters."""
    values = request.form.getlist(name) if request.mimetype == "multipart/form-data" else []
    values = values or request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValidationFailed(f"{name} is given {len(values)} times; give it once", details={"field": name})
    if "\x00" in values[0]:
        raise ValidationFailed(f"{name}: must not contain NUL characters", details={"field": name})
    return values[0]


def number_param(name: str, default, lo, hi, kind=float):
    """A number parameter of the given kind, within [lo, hi] (422 naming the field otherwise)."""
    raw = param(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be {'an integer' if kind is int else 'a number'} (leave it out "
                               "for the default)",
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


def bool_param(name: str) -> bool:
    """A yes/no parameter: true/1/yes/on or false/0/no/off (422 naming the field otherwise); absent: False."""
    raw = param(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValidationFailed(f"{name} must be true or false", details={"field": name})
