"""Recognition endpoints: embeddings of a photo, and who is in it."""

from __future__ import annotations

import time

import numpy as np
from flask import Blueprint, g, jsonify, request

from recognition_service import metrics
from recognition_service.api.context import service_state
from recognition_service.api.params import list_param, number_param, param, uploaded_images
from recognition_service.errors import ApiError, ValidationFailed
from recognition_service.recognition.detection import MODES
from recognition_service.model_change.shadow import Sample

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


def _detection() -> str | None:
    """?detection=auto|full_frame|tiled: where faces are looked for (default DETECTION_MODE)."""
    mode = param("detection")
    if mode is not None and mode not in MODES:
        raise ValidationFailed(f"detection must be one of {', '.join(MODES)}", details={"field": "detection"})
    return mode


@bp.post("/embeddings")
def embeddings():
    data = _one_image()
    engine = service_state().engine
    model = engine.model()
    faces, (width, height) = engine.photo(model, data, deadline=g.deadline, detection=_detection())
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
    engine = state.engine
    model = engine.model()
    threshold = number_param("threshold", engine.threshold(model), -1.0, 1.0)
    roster = list_param("student_ids")
    timings: dict = {}
    _injected_fault()
    shadow = state.shadow
    sampled = shadow is not None and shadow.wants_sample()
    faces, (width, height) = engine.photo(model, data, timings=timings, deadline=g.deadline, keep_crops=sampled,
                                          detection=_detection())
    g.faces = len(faces)
    results = []
    if faces:
        g.deadline.check("match")
        t0 = time.perf_counter()
        identities = engine.identify(model, np.stack([f.embedding for f in faces]), threshold=threshold,
                                     roster=roster, face_px=[f.min_side for f in faces])
        timings["match_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        for face, who in zip(faces, identities, strict=True):
            item = {"bbox": face.bbox, "det_score": face.det_score, "student_id": who.student_id,
                    "name": who.name, "similarity": who.similarity}
            if who.reason:
                item["unrecognized_reason"] = who.reason
            results.append(item)
        if sampled:
            shadow.offer(Sample(model.info.fingerprint, [f.crop for f in faces],
                                [who.student_id for who in identities], roster))
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    metrics.observe_recognition(timings, len(faces), sum(1 for r in results if r["student_id"]))
    return jsonify({"faces": results, "image": {"width": width, "height": height},
                    "model": model.info.to_dict(), "threshold": threshold, "timings_ms": timings})
