"""Student endpoints: create, read, list, delete, and enrol faces."""

from __future__ import annotations

import hashlib
import logging

import psycopg2
from flask import Blueprint, g, jsonify
from pydantic import BaseModel, Field, field_validator

from recognition_service.api.context import get_db, service_state
from recognition_service.api.params import bool_param, json_body, number_param, param, uploaded_images
from recognition_service.errors import ApiError, NotFound, ServiceUnavailable, ValidationFailed
from recognition_service.recognition import quality
from recognition_service.recognition.images import encode_crop
from recognition_service.security.audit import audit, pseudonym
from recognition_service.sessions.evidence import remove_files
from recognition_service.students import store
from recognition_service.students.erasure import erase_student, vacuum_after_erasure

bp = Blueprint("students", __name__)
log = logging.getLogger(__name__)


class StudentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


@bp.put("/students/<student_id>")
def put_student(student_id: str):
    store.check_student_id(student_id)
    body = json_body(StudentIn)
    with get_db() as conn:
        student, created = store.upsert_student(conn, student_id, body.name)
        audit(conn, g.actor, "student.create" if created else "student.rename", student_id)
    return jsonify(student), 201 if created else 200


@bp.get("/students/<student_id>")
def get_student(student_id: str):
    store.check_student_id(student_id)
    with get_db() as conn:
        student = store.get_student(conn, student_id)
    if student is None:
        raise NotFound(f"student {student_id} not found")
    return jsonify(student)


@bp.get("/students/<student_id>/faces")
def list_faces(student_id: str):
    """The student's enrolled faces (no embeddings): scores, size, the photo's sha256, when."""
    store.check_student_id(student_id)
    with get_db() as conn:
        if store.get_student(conn, student_id) is None:
            raise NotFound(f"student {student_id} not found")
        faces = store.list_faces(conn, student_id)
    return jsonify({"student_id": student_id, "faces": faces})


@bp.get("/students")
def list_students():
    limit = number_param("limit", 100, 1, 1000, int)
    offset = number_param("offset", 0, 0, 10**9, int)
    with get_db() as conn:
        items, total = store.list_students(conn, limit, offset)
    return jsonify({"students": items, "total": total, "limit": limit, "offset": offset})


@bp.delete("/students/<student_id>")
def delete_student(student_id: str):
    erase(student_id)
    return "", 204


def erase(student_id: str) -> None:
    """Erase a student everywhere (the API and the console); NotFound when there is none."""
    store.check_student_id(student_id)
    state = service_state()
    with get_db() as conn:
        existed, files = erase_student(conn, student_id)
        if not existed:
            raise NotFound(f"student {student_id} not found")
        audit(conn, g.actor, "student.delete", pseudonym(student_id), {"evidence_items": len(files)})
    remove_files(state.settings.evidence_dir, files)
    try:
        vacuum_after_erasure(state.db)
    except (ServiceUnavailable, psycopg2.Error) as exc:  # erased already; autovacuum prunes the rows later
        log.warning("VACUUM after an erasure failed: %s", exc)


@bp.post("/students/<student_id>/faces")
def enrol_faces(student_id: str):
    enrolled, rejected = enrol(student_id, uploaded_images(), param("name"),
                               allow_duplicate=bool_param("allow_duplicate"))
    return jsonify({"student_id": student_id, "faces": enrolled, "rejected": rejected}), 201


def enrol(student_id: str, images: list[bytes], name: str | None, *,
          allow_duplicate: bool = False) -> tuple[list[dict], list[dict]]:
    """Enrol photos through the quality gate (the API and the console): (enrolled faces, rejected photos);
    an ApiError when none was enrolled. A face that already matches another student is refused
    (`duplicate_face`, naming them) unless `allow_duplicate` says the caller means it (twins)."""
    store.check_student_id(student_id)
    state = service_state()
    settings = state.settings
    if len(images) > settings.MAX_ENROL_IMAGES:
        raise ApiError(f"{len(images)} images in one request; send at most MAX_ENROL_IMAGES="
                       f"{settings.MAX_ENROL_IMAGES} at a time", code="too_many_images", status=422)
    if name is not None and not name.strip():
        raise ValidationFailed("name: must not be blank (leave it out to keep the name)", details={"field": "name"})
    name = name.strip()[:200] if name else None
    model = state.engine.model()
    accepted, rejected = [], []
    for index, data in enumerate(images):
        try:
            faces, _ = state.engine.photo(model, data, deadline=g.deadline, with_quality=True, detection="full_frame",
                                          keep_crops=settings.KEEP_FACE_CROPS)
        except ApiError as exc:
            rejected.append({"index": index, "reason": exc.code, "message": exc.message, "_status": exc.status})
            continue
        face, refusal = quality.enrolment_face(faces, settings)
        if refusal is not None:
            item = {"index": index, "reason": refusal.reason, "message": refusal.message, "_status": 422}
            if refusal.problems:
                item.update(problems=refusal.problems, quality=refusal.quality.to_dict())
            rejected.append(item)
            continue
        twin = duplicate_refusal(model, face, student_id, index) if not allow_duplicate else None
        if twin is not None:
            rejected.append(twin)
            continue
        accepted.append((face, hashlib.sha256(data).hexdigest()))
    g.faces = len(accepted)
    statuses = {r.pop("_status") for r in rejected}
    if not accepted:
        reasons = {r["reason"] for r in rejected}
        code = reasons.pop() if len(reasons) == 1 else "no_face_enrolled"
        status = statuses.pop() if len(statuses) == 1 else 422
        why = f": {rejected[0]['message']}" if len(rejected) == 1 else ""
        raise ApiError(f"no photo was enrolled{why}", code=code, status=status, details={"rejected": rejected})

    enrolled = []
    with get_db() as conn:
        store.ensure_student(conn, student_id, name)
        for face, sha in accepted:
            face_id, _ = store.add_face(conn, student_id, fingerprint=model.info.fingerprint,
                                      embedding=face.embedding, det_score=face.det_score,
                                      bbox=face.bbox, image_sha256=sha,
                                      quality=face.quality.to_dict(), crop_png=kept_crop(face))
            enrolled.append({"face_id": face_id, "det_score": face.det_score, "bbox": face.bbox,
                             "quality": face.quality.to_dict()})
        audit(conn, g.actor, "student.enrol", student_id, {"face_ids": [f["face_id"] for f in enrolled]})
    if state.shadow_models is not None and state.reembedder is not None:
        state.reembedder.wake()  # the shadow model's embedding of the new photos, now rather than at the next poll
    return enrolled, rejected


def duplicate_refusal(model, face, student_id: str, index: int | None = None) -> dict | None:
    """The rejection of a face that already belongs to another student, else None."""
    alikes = service_state().engine.look_alikes(model, face.embedding, student_id=student_id)
    if not alikes:
        return None
    other = alikes[0]
    refusal = {"reason": "duplicate_face", "_status": 409,
               "message": (f"this face matches {other['name']} ({other['student_id']}) at {other['similarity']:.2f}, "
                           "at or above the threshold: it is probably the same person. Enrol it under "
                           f"{other['student_id']}, or send allow_duplicate=true if they are two people "
                           "(twins)"),
               "duplicate_of": alikes}
    if index is not None:
        refusal["index"] = index
    return refusal


def kept_crop(face) -> bytes | None:
    """The PNG of an enrolled face's aligned crop, kept with KEEP_FACE_CROPS for a later model change."""
    return encode_crop(face.crop) if face.crop is not None else None


@bp.delete("/students/<student_id>/faces/<int:face_id>")
def delete_face(student_id: str, face_id: int):
    remove_face(student_id, face_id)
    return "", 204


def remove_face(student_id: str, face_id: int) -> None:
    """Delete one enrolled face (the API and the console); NotFound when there is none."""
    store.check_student_id(student_id)
    with get_db() as conn:
        if not store.delete_face(conn, student_id, face_id):
            raise NotFound(f"face {face_id} of student {student_id} not found")
        audit(conn, g.actor, "face.delete", student_id, {"face_id": face_id})
