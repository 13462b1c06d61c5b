"""Review endpoints: the faces a session could not name, confirmed as a student or rejected as a stranger."""

from __future__ import annotations

import hashlib
from typing import Literal

from flask import Blueprint, g, jsonify
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recognition_service.api.auth import authorize
from recognition_service.api.context import get_db, service_state
from recognition_service.api.params import json_body, param
from recognition_service.api.students import duplicate_refusal, kept_crop
from recognition_service.errors import ApiError, NotFound, ValidationFailed
from recognition_service.recognition import quality
from recognition_service.review import store
from recognition_service.security.audit import audit
from recognition_service.sessions import store as sessions_store
from recognition_service.sessions.evidence import resolve
from recognition_service.students import store as students

bp = Blueprint("review", __name__)


class ReviewAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["confirm", "reject"]
    student_id: str | None = Field(None, pattern=students.STUDENT_ID_RE.pattern)
    name: str | None = Field(None, min_length=1, max_length=200)
    enrol: bool = False
    allow_duplicate: bool = False  # enrol even when the face matches another student (twins)

    @model_validator(mode="after")
    def _confirm_names_a_student(self):
        if self.action == "confirm" and not self.student_id:
            raise ValueError("confirm needs student_id")
        if self.action == "reject" and (self.student_id or self.enrol or self.name or self.allow_duplicate):
            raise ValueError("reject takes no student_id, name or enrol")
        if self.name is not None and not self.name.strip():
            raise ValueError("name must not be blank")
        return self


@bp.get("/sessions/<int:slot_id>/review")
def list_review(slot_id: int):
    status = param("status")
    if status not in (None, "open", "confirmed", "rejected"):
        raise ValidationFailed("status must be open, confirmed or rejected", details={"field": "status"})
    with get_db() as conn:
        items = store.list_items(conn, slot_id, status)
    if items is None:
        raise NotFound(f"no session for slot {slot_id}", code="session_not_found")
    return jsonify({"items": items})


def _item_or_404(conn, slot_id: int, item_id: str, lock: bool = False) -> dict:
    item = store.get_item(conn, slot_id, item_id, lock=lock)
    if item is None:
        raise NotFound(f"no review item {item_id} in slot {slot_id}", code="review_item_not_found")
    return item


def _enrolment_face(slot_id: int, item: dict, student_id: str, allow_duplicate: bool):
    """The item's best face through the enrolment gate: (model, face, sha256), or 422 saying why not."""
    state = service_state()
    with get_db() as conn:
        paths = sessions_store.evidence_paths(conn, slot_id, item["evidence_id"]) if item["evidence_id"] else None
    path = resolve(state.settings.evidence_dir, paths[0]) if paths else None
    if path is None:
        raise ApiError("this item has no face image to enrol (the disk was full or it expired)",
                       code="no_evidence", status=422)
    data = path.read_bytes()
    model = state.engine.model()
    if model.info.fingerprint != item["model_fingerprint"]:
        raise ApiError("the item was seen with another model; enrol a photo instead", code="model_changed", status=409)
    faces, _ = state.engine.photo(model, data, deadline=g.deadline, with_quality=True, detection="full_frame",
                                  keep_crops=state.settings.KEEP_FACE_CROPS)
    face, refusal = quality.enrolment_face(faces, state.settings)
    if refusal is not None:
        details = {"reason": refusal.reason}
        if refusal.problems:
            details.update(problems=refusal.problems, quality=refusal.quality.to_dict())
        raise ApiError(f"the item's face cannot be enrolled: {refusal.message}", code=refusal.reason, status=422,
                       details=details)
    twin = None if allow_duplicate else duplicate_refusal(model, face, student_id)
    if twin is not None:
        raise ApiError(f"the item's face cannot be enrolled under {student_id}: {twin['message']}",
                       code="duplicate_face", status=409, details={"duplicate_of": twin["duplicate_of"]})
    return model, face, hashlib.sha256(data).hexdigest()


@bp.post("/sessions/<int:slot_id>/review/<item_id>")
def act_on_review(slot_id: int, item_id: str):
    return jsonify(act(slot_id, item_id, json_body(ReviewAction)))


def act(slot_id: int, item_id: str, body: ReviewAction) -> dict:
    """Confirm or reject one item (the API and the console)."""
    with get_db() as conn:
        item = _item_or_404(conn, slot_id, item_id)
    if item["status"] != "open":
        raise ApiError(f"the item is already {item['status']}", code="review_item_resolved", status=409)
    if body.action == "confirm" and body.enrol:
        authorize("students.enrol")  # a teacher confirms; enrolling the face into the gallery is the backend's
    if body.action == "confirm" and body.name:
        authorize("students.write")  # naming (or renaming) a student
    enrolment = (_enrolment_face(slot_id, item, body.student_id, body.allow_duplicate)
                 if body.action == "confirm" and body.enrol else None)
    result = {"item_id": item_id, "action": body.action}
    try:
        with get_db() as conn:
            item = _item_or_404(conn, slot_id, item_id, lock=True)
            if body.action == "reject":
                result["impostor_pairs"] = store.reject(conn, item, actor=g.actor)
                audit(conn, g.actor, "review.reject", item_id, {"slot_id": slot_id})
            else:
                if students.get_student(conn, body.student_id) is None:
                    authorize("students.write")  # confirming as a new student creates them
                students.ensure_student(conn, body.student_id, body.name.strip() if body.name else None)
                if enrolment is not None:
                    model, face, sha = enrolment
                    face_id, _ = students.add_face(conn, body.student_id, fingerprint=model.info.fingerprint,
                                                   embedding=face.embedding, det_score=face.det_score,
                                                   bbox=face.bbox, image_sha256=sha,
                                                   quality=face.quality.to_dict(), crop_png=kept_crop(face))
                    result["face_id"] = face_id
                name = students.names_for(conn, {body.student_id}).get(body.student_id, body.student_id)
                roster = item["roster"]
                result["recognition_created"] = store.confirm(
                    conn, item, student_id=body.student_id, name=name, actor=g.actor,
                    on_roster=None if roster is None else body.student_id in roster)
                audit(conn, g.actor, "review.confirm", body.student_id,
                      {"slot_id": slot_id, "item_id": item_id, "enrolled_face_id": result.get("face_id")})
    except store.ItemResolved:
        raise ApiError("the item was resolved meanwhile", code="review_item_resolved", status=409) from None
    service_state().wake_callbacks()
    with get_db() as conn:
        result["item"] = _item_or_404(conn, slot_id, item_id)
    result["item"].pop("embedding", None)
    result["item"].pop("session_id", None)
    result["item"].pop("model_fingerprint", None)
    result["item"].pop("roster", None)
    return result
