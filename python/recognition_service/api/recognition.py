"""Recognition endpoints: embeddings of a photo, and who is in it."""

from __future__ import annotations

import time

import numpy as np
from flask import Blueprint, g, jsonify, request

from .. import metrics
from ..errors import ApiError
from ..pipeline import analyse_bytes
from ..state import service_state
from ..students import names_for
from ..thresholds import in_force
from .params import list_param, number_param, uploaded_images

bp = Blueprint("recognition", __name__)


def _injected_fault() -> None:
    """Tests only (FAULT_INJECTION=1): a real exception inside the model path, on request.

    Every real trigger found (such as a 1-pixel-high photo crashing the detector's resize) is
    handled, so this stand-in is the only way to prove an unexpected model error leaves the worker up.
    """
    if service_state().settings.FAULT_INJECTION and request.headers.get("X-Fault-Inject") == "model":
        raise RuntimeError("injected fault inside the model path")


def _one_image() -> bytes:
    images = uploaded_images()
    if len(images) != 1:
        raise ApiError("send exactly one image", code="too_many_images", status=400)
    return images[0]


@bp.post("/embeddings")
def embeddings():
    data = _one_image()
    state = service_state()
    model = state.models.get()
    faces, (width, height) = analyse_bytes(model, data, state.settings, deadline=g.deadline)
    g.faces = len(faces)
    return jsonify({
        "model": model.info.to_dict(),
        "image": {"width": width, "height": height},
        "faces": [{"bbox": f.bbox, "det_score": f.det_score, "landmarks": f.landmarks,
                   "embedding": [round(float(v), 6) for v in f.embedding]} for f in faces],
    })


@bp.post("/recognize")
def recognize():
    started = time.perf_counter()
    data = _one_image()
    state = service_state()
    settings = state.settings
    model = state.models.get()
    threshold = number_param("threshold", in_force(settings, model.info), -1.0, 1.0)
    roster = list_param("student_ids")
    timings: dict = {}
    _injected_fault()
    faces, (width, height) = analyse_bytes(model, data, settings, timings=timings, deadline=g.deadline)
    g.faces = len(faces)
    results = []
    if faces:
        g.deadline.check("match")
        t0 = time.perf_counter()
        state.ensure_schema()
        gallery = state.gallery(model)
        with state.db.get_db_conn() as conn:
            gallery.refresh(conn)
            matches = gallery.match(np.stack([f.embedding for f in faces]), threshold=threshold,
                                    margin=settings.MATCH_MARGIN, roster=roster)
            names = names_for(conn, {m.student_id for m in matches if m.student_id})
        timings["match_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        for face, match in zip(faces, matches, strict=True):
            item = {"bbox": face.bbox, "det_score": face.det_score, "student_id": match.student_id,
                    "name": names.get(match.student_id) if match.student_id else None,
                    "similarity": match.similarity}
            if match.reason:
                item["unrecognized_reason"] = match.reason
            results.append(item)
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    metrics.observe_recognition(timings, len(faces), sum(1 for r in results if r["student_id"]))
    return jsonify({"faces": results, "image": {"width": width, "height": height},
                    "model": model.info.to_dict(), "threshold": threshold, "timings_ms": timings})
