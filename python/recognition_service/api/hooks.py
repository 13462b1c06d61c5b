"""Per-request plumbing: request id, time budget, one log line and the HTTP metrics per request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from recognition_service import metrics
from recognition_service.api.deadline import Deadline

log = logging.getLogger("recognition_service.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_OPENAPI_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # Flask's <int:slot_id> -> OpenAPI's {slot_id}


def init_request_hooks(app: Flask, request_timeout_s: float) -> None:
    """Give every request an id (the client's X-Request-ID when sane) and a deadline; log and count it."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.deadline = Deadline(request_timeout_s)

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        latency = time.perf_counter() - g.get("started", time.perf_counter())
        route = _OPENAPI_PARAM.sub(r"{\1}", request.url_rule.rule) if request.url_rule else "<unmatched>"
        metrics.REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        metrics.REQUEST_LATENCY.labels(route).observe(latency)
        metrics.observe_process()
        fields = {"request_id": request_id, "client": request.remote_addr, "method": request.method, "route": route,
                  "status": response.status_code, "latency_ms": round(latency * 1000, 1)}
        if "faces" in g:
            fields["faces"] = g.faces
        log.info("%s %s %s", request.method, route, response.status_code, extra=fields)
        return response
