"""Session endpoints: start, read, list and stop recognition sessions; fetch evidence images."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify, send_file
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recognition_service.api.context import get_db, service_state
from recognition_service.api.params import json_body, number_param, param
from recognition_service.callbacks import outbox
from recognition_service.errors import ApiError, NotFound, ValidationFailed
from recognition_service.security.egress import check_callback_url, check_camera_url
from recognition_service.sessions import attendance, store
from recognition_service.sessions.evidence import resolve
from recognition_service.students.store import STUDENT_ID_RE

bp = Blueprint("sessions", __name__)

_CAMERA_SCHEMES = {"rtsp", "rtsps", "http", "https", "file"}
_BIGINT = 2**63 - 1


DetectionMode = Literal["auto", "full_frame", "tiled"]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
MIN_ROI_AREA = 0.001  # of the frame: a polygon smaller than this (about 3% x 3%) is a mistake, not a seat


class CameraIn(BaseModel):
    camera_id: int = Field(ge=0, le=_BIGINT)
    url: str = Field(min_length=1, max_length=2048)
    # where this camera looks for faces (README "Placing a classroom camera"); the session's, else DETECTION_MODE
    detection: DetectionMode | None = None
    min_face_px: int | None = Field(None, ge=0, le=1000)  # faces smaller than this are ignored
    roi: list[tuple[Fraction, Fraction]] | None = Field(None, min_length=3, max_length=64)

    @field_validator("roi")
    @classmethod
    def _a_real_polygon(cls, value):
        if value is None:
            return None
        area = 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(value, value[1:] + value[:1])))
        if area < MIN_ROI_AREA:
            raise ValueError(f"the polygon encloses {area:.4f} of the frame; points are (x, y) fractions of the "
                             "frame's width and height, from 0 to 1, in order around the region")
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        value = value.strip()
        if "://" in value:
            parts = urlsplit(value)
            if parts.scheme.lower() not in _CAMERA_SCHEMES:
                raise ValueError("must be an rtsp://, rtsps://, http://, https:// URL or a file path")
            if parts.scheme.lower() != "file" and not parts.hostname:
                raise ValueError("has no host")
        return value


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    slot_id: int = Field(ge=0, le=_BIGINT)
    cameras: list[CameraIn] = Field(min_length=1)
    callback_url: str = Field(min_length=1, max_length=2048)
    student_ids: list[str] | None = None
    threshold: float | None = Field(None, ge=-1, le=1)
    mode: str | None = Field(None, max_length=64)
    callback_type: str | None = Field(None, max_length=64)
    frame_interval_ms: int | None = Field(None, ge=0, le=600_000)
    detection: DetectionMode | None = None  # every camera's, unless a camera says otherwise
    # the planned end (one of them; neither: SESSION_MAX_DURATION_S): the session then stops by itself
    ends_at: datetime | None = None
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    # optional words for people (the console, the export); never used for a decision
    class_name: str | None = Field(None, min_length=1, max_length=200)
    room: str | None = Field(None, min_length=1, max_length=200)
    teacher: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("class_name", "room", "teacher")
    @classmethod
    def _one_printable_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must be one line of printable text")
        return value

    @field_validator("ends_at")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must say its time zone: ISO 8601 with an offset, e.g. 2026-12-02T15:00:00+07:00 "
                             "or 2026-12-02T08:00:00Z")
        return value

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.strip()

    @field_validator("student_ids")
    @classmethod
    def _valid_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty; leave it out to match every enrolled student")
        for sid in value:
            if not isinstance(sid, str) or not STUDENT_ID_RE.fullmatch(sid):
                raise ValueError(f"{sid[:40]!r} is not a valid student id")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_cameras(self) -> "SessionIn":
        ids = [c.camera_id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("cameras: camera_id values must be unique")
        if self.ends_at is not None and self.duration_s is not None:
            raise ValueError("give ends_at or duration_s, not both")
        return self


DISPLAY_FIELDS = ("class_name", "room", "teacher")


def _ends_in_s(body: SessionIn, max_s: float) -> float:
    """Seconds from now to the session's planned end; a 422 for an end passed or beyond the maximum."""
    if body.ends_at is not None:
        seconds = (body.ends_at - datetime.now(timezone.utc)).total_seconds()
        field = "ends_at"
    elif body.duration_s is not None:
        seconds, field = body.duration_s, "duration_s"
    else:
        return max_s
    if seconds <= 0:
        raise ValidationFailed("ends_at: that time has passed", details={"field": field})
    if seconds > max_s:
        raise ValidationFailed(f"{field}: a session may last at most {max_s:.0f} s (SESSION_MAX_DURATION_S); "
                               "start a new session for the next slot, or raise the setting",
                               details={"field": field})
    return seconds


@bp.post("/sessions")
def start_session():
    body = json_body(SessionIn)
    state = service_state()
    settings = state.settings
    if len(body.cameras) > settings.MAX_CAMERAS_PER_SESSION:
        raise ValidationFailed(f"cameras: at most {settings.MAX_CAMERAS_PER_SESSION} per session",
                               details={"field": "cameras"})
    ends_in_s = _ends_in_s(body, settings.SESSION_MAX_DURATION_S)
    check_callback_url(body.callback_url, settings.CALLBACK_ALLOWED_HOSTS)
    for i, camera in enumerate(body.cameras):
        camera.url = check_camera_url(camera.url, settings.CAMERA_ALLOWED_NETWORKS, settings.CAMERA_FILE_ROOT,
                                      field=f"cameras.{i}.url")
    try:
        with get_db() as conn:
            store.create_session(conn, slot_id=body.slot_id, cameras=[_camera_row(c, body) for c in body.cameras],
                                 callback_url=body.callback_url, student_ids=body.student_ids,
                                 threshold=body.threshold, mode=body.mode, callback_type=body.callback_type,
                                 frame_interval_ms=body.frame_interval_ms if body.frame_interval_ms is not None
                                 else settings.FRAME_INTERVAL_MS, ends_in_s=ends_in_s, ends_at=body.ends_at,
                                 display={k: v for k in DISPLAY_FIELDS if (v := getattr(body, k)) is not None})
    except store.SessionExists as exc:
        raise ApiError(str(exc), code="session_exists", status=409, details={"field": "slot_id"}) from None
    state.wake_sessions()
    with get_db() as conn:
        session = store.get_session(conn, body.slot_id)
    return jsonify(session), 201


def _camera_row(camera: CameraIn, body: SessionIn) -> dict:
    """A camera as stored: its URL and only the detection settings asked for (the rest stay defaults)."""
    detection = {"mode": camera.detection or body.detection, "min_face_px": camera.min_face_px,
                 "roi": [list(p) for p in camera.roi] if camera.roi else None}
    return {"camera_id": camera.camera_id, "url": camera.url,
            "detection": {k: v for k, v in detection.items() if v is not None} or None}


@bp.get("/sessions")
def list_sessions():
    status = param("status")
    if status is not None and status not in ("starting", "running", "stopping", "stopped", "failed"):
        raise ValidationFailed("status must be starting, running, stopping, stopped or failed",
                               details={"field": "status"})
    limit = number_param("limit", 100, 1, 1000, int)
    offset = number_param("offset", 0, 0, 10**9, int)
    with get_db() as conn:
        items, total = store.list_sessions(conn, status=status, limit=limit, offset=offset)
    return jsonify({"sessions": items, "total": total, "limit": limit, "offset": offset})


def _session_or_404(conn, slot_id: int) -> dict:
    session = store.get_session(conn, slot_id)
    if session is None:
        raise NotFound(f"no session for slot {slot_id}", code="session_not_found")
    return session


@bp.get("/sessions/<int:slot_id>")
def get_session(slot_id: int):
    with get_db() as conn:
        return jsonify(_session_or_404(conn, slot_id))


@bp.get("/sessions/<int:slot_id>/attendance")
def get_attendance(slot_id: int):
    """The slot's latest attendance: JSON, or a CSV file with format=csv (the console's export too)."""
    fmt = param("format") or "json"
    if fmt not in ("json", "csv"):
        raise ValidationFailed("format must be json or csv", details={"field": "format"})
    found = attendance_of(slot_id)
    return csv_response(found) if fmt == "csv" else jsonify(found)


def attendance_of(slot_id: int) -> dict:
    with get_db() as conn:
        return attendance.report(conn, _session_or_404(conn, slot_id), ZoneInfo(service_state().settings.TZ_NAME))


def csv_response(found: dict) -> Response:
    return Response(attendance.to_csv(found), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{attendance.file_name(found)}"',
        "Cache-Control": "private, no-store"})


@bp.post("/sessions/<int:slot_id>/stop")
def stop_session(slot_id: int):
    """Stop the slot's session wherever its cameras run: the owner sees it within SESSION_POLL_S."""
    state = service_state()
    with get_db() as conn:
        _session_or_404(conn, slot_id)
        store.stop_session(conn, slot_id)
    state.wake_sessions()
    with get_db() as conn:
        return jsonify(_session_or_404(conn, slot_id))


@bp.get("/sessions/<int:slot_id>/cameras/<int:camera_id>/preview")
def camera_preview(slot_id: int, camera_id: int):
    """The camera's newest frame with the faces found and their sizes (renewed every CAMERA_PREVIEW_S)."""
    with get_db() as conn:
        _session_or_404(conn, slot_id)
        jpeg = store.get_preview(conn, slot_id, camera_id)
    if jpeg is None:
        raise NotFound(f"no preview of camera {camera_id} in slot {slot_id}'s session yet (or it has ended)",
                       code="preview_not_found")
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@bp.get("/sessions/<int:slot_id>/evidence/<evidence_id>")
def get_evidence(slot_id: int, evidence_id: str):
    kind = param("kind") or "face"
    if kind not in ("face", "frame"):
        raise ValidationFailed("kind must be face or frame", details={"field": "kind"})
    return send_evidence(slot_id, evidence_id, kind)


def send_evidence(slot_id: int, evidence_id: str, kind: str = "face"):
    """An evidence JPEG of the slot (the API and the console), never kept by a shared cache."""
    with get_db() as conn:
        paths = store.evidence_paths(conn, slot_id, evidence_id)
    path = resolve(service_state().settings.evidence_dir, paths[0 if kind == "face" else 1]) if paths else None
    if path is None:
        raise NotFound("no such evidence for this slot (it may have expired)", code="evidence_not_found")
    response = send_file(path, mimetype="image/jpeg", conditional=False, etag=False)
    response.headers["Cache-Control"] = "private, no-store"  # faces of children: never in a shared cache
    return response


@bp.get("/sessions/<int:slot_id>/events")
def list_events(slot_id: int):
    """The slot's callback deliveries: pending, delivered or dead (newest first)."""
    status = param("status")
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise ValidationFailed("status must be pending, delivered or dead", details={"field": "status"})
    limit = number_param("limit", 100, 1, 1000, int)
    with get_db() as conn:
        _session_or_404(conn, slot_id)
        items = outbox.list_deliveries(conn, slot_id, status, limit)
    return jsonify({"slot_id": slot_id, "events": items})


@bp.post("/sessions/<int:slot_id>/events/redeliver")
def redeliver(slot_id: int):
    """Send the slot's dead letters again, with their original event_id."""
    state = service_state()
    with get_db() as conn:
        _session_or_404(conn, slot_id)
        count = outbox.redeliver_dead(conn, slot_id)
    if state.callbacks is not None:
        state.callbacks.wake()
    return jsonify({"slot_id": slot_id, "requeued": count})
