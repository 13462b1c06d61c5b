"""Prometheus metrics; in multiprocess mode (PROMETHEUS_MULTIPROC_DIR) figures add up across workers."""

from __future__ import annotations

import os

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("recognizer_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_LATENCY = Histogram("recognizer_http_request_duration_seconds", "HTTP request latency", ["route"],
                            buckets=_LATENCY_BUCKETS)
STAGE_LATENCY = Histogram("recognizer_stage_duration_seconds", "Time per pipeline stage", ["stage"],
                          buckets=_LATENCY_BUCKETS)
FACES_DETECTED = Counter("recognizer_faces_detected_total", "Faces detected in uploaded photos")
RECOGNITIONS = Counter("recognizer_recognitions_total", "Faces recognised as an enrolled student")
MODEL_LOAD_SECONDS = Gauge("recognizer_model_load_seconds", "Time the model took to load",
                           multiprocess_mode="max")
POOL_IN_USE = Gauge("recognizer_db_pool_connections_in_use", "Pooled database connections lent out",
                    multiprocess_mode="livesum")
POOL_WAITS = Counter("recognizer_db_pool_waits_total", "Requests that had to wait for a pooled connection")
SESSIONS_OWNED = Gauge("recognizer_sessions_running", "Sessions whose cameras run in this process",
                       multiprocess_mode="livesum")
CAMERA_FRAMES = Counter("recognizer_camera_frames_total", "Camera frames processed")
CAMERA_DETECTIONS_SKIPPED = Counter("recognizer_camera_detections_skipped_total",
                                    "Camera frames the detector skipped because the picture had not changed")
CAMERA_DETECTOR_PASSES = Counter("recognizer_camera_detector_passes_total",
                                 "Detector runs on camera frames: the whole frame at DET_SIZE (full), one native tile, "
                                 "or the padded retry of a frame where nothing was found (padded)",
                                 ["kind"])
CAMERAS_SHORT_CHANGED = Gauge("recognizer_cameras_short_changed",
                              "Cameras of this process processing under 80% of the frames per second asked for",
                              multiprocess_mode="livesum")
CAMERA_FACES = Counter("recognizer_camera_faces_total", "Faces in camera frames, detected and embedded", ["kind"])
CAMERA_TURN_WAIT = Histogram("recognizer_camera_model_wait_seconds",
                             "How long a camera waited for its turn on the model (sessions/scheduler.py)",
                             buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
CAMERA_PACKETS = Counter("recognizer_camera_packets_total", "Compressed camera frames read from streams")
CAMERA_DECODED = Counter("recognizer_camera_pictures_decoded_total",
                         "Camera frames decoded: keyframes decoded alone when asked, or every frame of the stream",
                         ["how"])
CAMERA_FAILURES = Counter("recognizer_camera_failures_total", "Failed camera opens and lost streams")
SESSION_RECOGNITIONS = Counter("recognizer_session_recognitions_total",
                               "Students recognised for the first time in a session")
EVIDENCE_SKIPPED = Counter("recognizer_evidence_skipped_total", "Recognitions recorded without evidence (disk full)")
REVIEW_ITEMS = Counter("recognizer_review_items_total", "Unnamed camera tracks filed for review", ["kind"])
REEMBEDDED = Counter("recognizer_reembedded_faces_total", "Kept face crops embedded with a model", ["model"])
REEMBED_REMAINING = Gauge("recognizer_reembedding_remaining", "Kept face crops still lacking the model's embedding",
                          ["model"], multiprocess_mode="livemax")
SHADOW_COMPARISONS = Counter("recognizer_shadow_comparisons_total",
                             "Faces matched by both the model in use and the shadow model, by outcome", ["outcome"])
SHADOW_AGREEMENT = Gauge("recognizer_shadow_agreement_ratio",
                         "Share of faces the shadow model named as the model in use did, since the shadow started",
                         multiprocess_mode="livemostrecent")
SHADOW_DROPPED = Counter("recognizer_shadow_samples_dropped_total",
                         "Shadow samples not compared: queue full, or the shadow model still re-embedding", ["reason"])
CALLBACKS = Counter("recognizer_callbacks_total", "Callback delivery attempts by outcome", ["outcome"])
CALLBACK_LATENCY = Histogram("recognizer_callback_delivery_seconds", "From event to delivered callback",
                             buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400))
CALLBACKS_PENDING = Gauge("recognizer_callbacks_pending", "Callback deliveries waiting (database-wide)",
                          multiprocess_mode="livemax")
RSS = Gauge("recognizer_process_rss_bytes", "Resident memory of each worker process", multiprocess_mode="liveall")

_process: psutil.Process | None = None


def observe_process() -> None:
    """Refresh the per-process gauges (cheap: one /proc read)."""
    global _process
    if _process is None or _process.pid != os.getpid():  # this module may be imported before a fork
        _process = psutil.Process(os.getpid())
    RSS.set(_process.memory_info().rss)


def observe_recognition(timings_ms: dict, faces: int, recognised: int) -> None:
    """Count one recognition request's faces and stage times."""
    for stage in ("decode", "detect", "embed", "match"):
        if f"{stage}_ms" in timings_ms:
            STAGE_LATENCY.labels(stage).observe(timings_ms[f"{stage}_ms"] / 1000)
    FACES_DETECTED.inc(faces)
    RECOGNITIONS.inc(recognised)


def render() -> tuple[bytes, str]:
    """The metrics page, merged across worker processes when running under Gunicorn."""
    observe_process()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

