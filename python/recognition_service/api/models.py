"""Model endpoints: the model in use, the shadow model of a model change, re-embedding progress, agreement,
and the photos only a new enrolment can bring into a model."""

from __future__ import annotations

from flask import Blueprint, jsonify

from recognition_service.api.context import get_db, service_state
from recognition_service.api.params import number_param, param
from recognition_service.errors import ApiError, ServiceUnavailable, ValidationFailed
from recognition_service.model_change import store
from recognition_service.recognition.thresholds import describe

bp = Blueprint("models", __name__)


def _describe(provider, settings) -> dict:
    status = provider.status()
    if provider.loaded is not None:
        status["threshold"] = describe(settings, provider.loaded.info)["threshold"]
    return status


def _loaded(provider):
    try:
        return provider.get()
    except ServiceUnavailable:
        return None  # its status says why


def model_change_status(conn) -> dict:
    """Both models, how far each has embedded the kept crops, and how often the shadow agrees."""
    state = service_state()
    active, shadow = _loaded(state.models), _loaded(state.shadow_models) if state.shadow_models else None
    shadow_status = _describe(state.shadow_models, state.shadow_engine.settings) if state.shadow_models else None
    body: dict = {"active": _describe(state.models, state.settings), "shadow": shadow_status,
                  "keep_face_crops": state.settings.KEEP_FACE_CROPS, "reembedding": {}, "needs_reenrolment": {}}
    for role, model in (("active", active), ("shadow", shadow)):
        if model is not None:
            body["reembedding"][role] = store.progress(conn, model.info.fingerprint)
            body["needs_reenrolment"][role] = store.count_needs_reenrolment(conn, model.info.fingerprint)
    body["agreement"] = (store.agreement(conn, active.info.fingerprint, shadow.info.fingerprint)
                         if active is not None and shadow is not None else None)
    return body


@bp.get("/models")
def models():
    with get_db() as conn:
        return jsonify(model_change_status(conn))


@bp.get("/models/needs-reenrolment")
def needs_reenrolment():
    """Photos the chosen model (`model=active|shadow`; default: the shadow when there is one) has no embedding
    of and no kept crop to make one from."""
    state = service_state()
    role = param("model")
    if role is None:
        role = "shadow" if state.shadow_models else "active"
    elif role not in ("active", "shadow"):
        raise ValidationFailed("model must be active or shadow", details={"field": "model"})
    if role == "shadow" and state.shadow_models is None:
        raise ApiError("no shadow model is configured (SHADOW_MODEL_DIR)", code="no_shadow_model", status=409)
    provider = state.models if role == "active" else state.shadow_models
    limit = number_param("limit", 1000, 1, 100_000, int)
    model = provider.get()
    with get_db() as conn:
        photos = store.needs_reenrolment(conn, model.info.fingerprint, limit)
    return jsonify({"model": role, "fingerprint": model.info.fingerprint, "photos": photos})
