"""The API description: the hand-checked OpenAPI document, served at /openapi.json."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml
from flask import Blueprint, jsonify

from recognition_service._version import __version__

bp = Blueprint("docs", __name__)


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    """openapi.yaml of this package, with the service's version and the HTTP server's 414 on every operation."""
    text = resources.files("recognition_service.api").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = __version__
    for path in document["paths"].values():
        for operation in path.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("414", {"$ref": "#/components/responses/UriTooLong"})
    return document


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
