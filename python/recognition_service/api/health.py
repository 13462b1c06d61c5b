"""Health endpoints: /health (details), /health/live and /health/ready."""

from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify

from recognition_service import metrics
from recognition_service._version import __version__
from recognition_service.api.context import get_db, service_state
from recognition_service.api.models import model_change_status
from recognition_service.errors import ServiceUnavailable
from recognition_service.recognition.thresholds import describe
from recognition_service.sessions import store as sessions_store
from recognition_service.sessions.camera_worker import SHORT_CHANGED
from recognition_service.students.store import enrollment_counts

bp = Blueprint("health", __name__)


def _check(with_model_change: bool = False) -> tuple[dict, list[str]]:
    state = service_state()
    reasons = []
    try:
        model = state.models.get()
    except ServiceUnavailable as exc:
        model = None
        reasons.append(exc.message)
    body = {"model": state.models.status()}
    if model is not None:
        body["recognition"] = {**describe(state.settings, model.info), "margin": state.settings.MATCH_MARGIN}
    try:
        with get_db() as conn:
            body["enrollments"] = enrollment_counts(conn, model.info.fingerprint if model else None)
            if with_model_change:  # /health only: readiness probes stay one cheap query
                body["model_change"] = model_change_status(conn)
                if model is not None:
                    body["enrollments"]["needs_reenrolment"] = body["model_change"]["needs_reenrolment"]["active"]
        body["database"] = "ok"
    except ServiceUnavailable as exc:
        body["database"] = f"unavailable: {exc.message}"
        reasons.append(f"database {exc.message}")
    return body, reasons


@bp.get("/health")
def health():
    result = health_report()
    return jsonify(result), 503 if result.get("reasons") else 200


def health_report() -> dict:
    """What /health says (the console's service page shows the same): status, reasons, warnings."""
    state = service_state()
    body, reasons = _check(with_model_change=True)
    zone = ZoneInfo(state.settings.TZ_NAME)
    result = {"status": "degraded" if reasons else "ok", **body,
              "time_zone": state.settings.TZ_NAME,  # of started_at and now; log lines are in UTC
              "started_at": state.started_at.astimezone(zone).isoformat(timespec="seconds"),
              "now": datetime.now(zone).isoformat(timespec="seconds"),
              "uptime_seconds": state.uptime_seconds, "version": __version__, "pid": os.getpid()}
    runner = state.sessions
    result["sessions"] = ({"runner_id": runner.runner_id, "runner_alive": runner.running,
                           "running_here": len(runner.handles)} if runner is not None else None)
    if runner is not None and not runner.running:
        reasons.append("the session runner thread of this process has stopped")
    if reasons:
        result["status"] = "degraded"
        result["reasons"] = reasons
    warnings = []
    missing = body.get("enrollments", {}).get("needs_reenrolment")
    if missing:
        warnings.append(f"{missing} enrolled photo(s) have no embedding of the current model and no kept crop to "
                        "make one: enrol those students again (GET /api/v1/models/needs-reenrolment?model=active)")
    change = body.get("model_change") or {}
    shadow = change.get("shadow")
    if shadow and not shadow.get("loaded"):
        warnings.append(f"the shadow model (SHADOW_MODEL_DIR) is not loaded: {shadow.get('error')}")
    elif shadow and shadow.get("fingerprint") == change["active"].get("fingerprint"):
        warnings.append("SHADOW_MODEL_DIR holds the model in use: nothing is being compared; "
                        "point it at the next model")
    short = _short_changed_cameras()
    if short:
        first = short[0]
        warnings.append(
            f"{len(short)} camera(s) get fewer frames per second than their session asked for (slot "
            f"{first['slot_id']} camera {first['camera_id']}: {first['delivered']:.2f} of {first['asked']:.2f}): "
            "the workers running them are over capacity; add a worker or a server (they share the database), "
            "or ask for fewer frames (frame_interval_ms)")
    offline = _offline_cameras()
    if offline:
        first = offline[0]
        since = f" since {first['offline_since'].isoformat(timespec='seconds')}" if first["offline_since"] else ""
        warnings.append(
            f"{len(offline)} camera(s) of running sessions are offline and being retried (slot {first['slot_id']} "
            f"camera {first['camera_id']}{since}: {first['last_error']}); a session fails when all its cameras "
            "stay offline for CAMERA_OFFLINE_GRACE_S")
    if warnings:
        result["warnings"] = warnings
    return result


def _offline_cameras() -> list[dict]:
    try:
        with get_db() as conn:
            return sessions_store.offline_cameras(conn)
    except ServiceUnavailable:
        return []


def _short_changed_cameras() -> list[dict]:
    """Cameras of every worker and server whose delivered frame rate is under SHORT_CHANGED of the asked."""
    try:
        with get_db() as conn:
            return sessions_store.short_changed_cameras(conn, SHORT_CHANGED)
    except ServiceUnavailable:
        return []  # the database is down: /health already says so


@bp.get("/health/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready():
    _, reasons = _check()
    if reasons:
        return jsonify({"status": "not_ready", "reasons": reasons}), 503
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
