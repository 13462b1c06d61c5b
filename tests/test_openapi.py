"""The OpenAPI document: served, describes real responses, and a bounded schemathesis run finds no 5xx."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import psutil
import pytest
from devtools.servers import Server
from devtools.shared import sample
from recognition_service.api.docs import openapi_document

DOC = openapi_document()
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def _operation(path: str, method: str) -> dict:
    for template, item in DOC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not in openapi.yaml")


def conforms(response, path: str, method: str) -> None:
    """Fail unless the response's status and JSON body are described by the document."""
    responses = _operation(path, method)["responses"]
    spec = responses.get(str(response.status_code)) or responses.get("default")
    assert spec is not None, f"{method} {path}: status {response.status_code} not documented"
    if "$ref" in spec:
        spec = DOC["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    content = spec.get("content")
    if not content or "application/json" not in content:
        return
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "allOf": [content["application/json"]["schema"]], "components": DOC["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(response.get_json())]
    assert not errors, f"{method} {path} {response.status_code}: {errors[:3]}"


def test_openapi_json_is_served_and_names_every_route(client, app):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.json["openapi"].startswith("3.1")
    documented = {(re.sub(r"\{[^}]+\}", "<>", p), m.upper()) for p, item in DOC["paths"].items() for m in item
                  if m in ("get", "post", "put", "delete")}
    routes = {(re.sub(r"<[^>]+>", "<>", rule.rule), method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static"
              and rule.rule != "/openapi.json" and not rule.rule.startswith("/console")}  # the console is HTML
    assert routes == documented


def test_real_responses_match_the_document(client, tmp_path):
    def call(method, path, **kw):
        response = getattr(client, method)(path, **kw)
        conforms(response, path.split("?")[0], method)
        return response

    call("get", "/health")
    call("get", "/health/live")
    call("get", "/health/ready")
    assert call("put", "/api/v1/students/s1", json={"name": "Barack Obama"}).status_code == 201
    call("put", "/api/v1/students/s1", json={})
    enrolled = call("post", "/api/v1/students/s1/faces",
                    data={"image": [(io.BytesIO(sample("obama.jpg")), "a.jpg"), (io.BytesIO(b"nope"), "b.jpg")]})
    assert enrolled.status_code == 201 and enrolled.json["rejected"]
    call("post", "/api/v1/students/s2/faces", data={"image": (io.BytesIO(sample("five_faces.jpg")), "f.jpg")})
    call("get", "/api/v1/students/s1")
    call("get", "/api/v1/students/nobody")
    call("get", "/api/v1/students?limit=5")
    call("get", "/api/v1/students?limit=0")
    assert call("post", "/api/v1/recognize", data=sample("obama2.jpg"), content_type="image/jpeg").json["faces"]
    call("post", "/api/v1/recognize", data={"image": (io.BytesIO(sample("five_faces.jpg")), "f.jpg")})
    call("post", "/api/v1/recognize", data=b"garbage", content_type="image/jpeg")
    call("post", "/api/v1/embeddings", data=sample("obama.jpg"), content_type="image/jpeg")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    body = {"slot_id": 3, "cameras": [{"camera_id": 1, "url": str(video)}], "callback_url": "http://127.0.0.1:9/cb",
            "student_ids": ["s1"], "mode": "attendance"}
    assert call("post", "/api/v1/sessions", json=body).status_code == 201
    assert call("post", "/api/v1/sessions", json=body).status_code == 409
    call("post", "/api/v1/sessions", json={**body, "slot_id": -1})
    call("get", "/api/v1/sessions")
    call("get", "/api/v1/sessions/3")
    call("get", "/api/v1/sessions/3/events")
    call("post", "/api/v1/sessions/3/events/redeliver")
    call("get", "/api/v1/sessions/3/evidence/00000000-0000-0000-0000-000000000000")
    call("post", "/api/v1/sessions/3/stop")
    call("post", "/api/v1/sessions/4/stop")
    face_id = enrolled.json["faces"][0]["face_id"]
    assert call("delete", f"/api/v1/students/s1/faces/{face_id}").status_code == 204
    assert call("delete", "/api/v1/students/s1").status_code == 204


@pytest.fixture
def make_app(make_app, tmp_path):
    """The in-process apps here may use files under tmp_path as cameras and call back to loopback."""
    def _make(**overrides):
        values = {"CAMERA_FILE_ROOT": str(tmp_path), "CALLBACK_ALLOWED_HOSTS": "127.0.0.1", **overrides}
        return make_app(**values)
    return _make


def test_schemathesis_every_check_and_phase_passes_and_kills_no_worker(database_url, tmp_path):
    """All of schemathesis' checks (status codes, headers, schema conformance, positive and negative data
    acceptance, stateful links) over its examples, coverage, fuzzing and stateful phases, in 90 s."""
    server = Server("gunicorn", database_url, tmp_path, API_KEYS="fuzz-key", RATE_LIMIT_PER_MINUTE=0,
                    LOG_LEVEL="WARNING").wait_ready(90)
    try:
        workers = sorted(p.pid for p in psutil.Process(server.proc.pid).children())
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(SCHEMATHESIS_CONFIG), "run",
             f"{server.url}/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
             "--max-examples", "10", "--max-time", "90", "--seed", "1", "--header", "X-API-Key: fuzz-key",
             "--request-timeout", "60", "--no-color", "--suppress-health-check", "all"],
            capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert sorted(p.pid for p in psutil.Process(server.proc.pid).children()) == workers  # none died
        assert '"status": 500' not in server.log_path.read_text()
    finally:
        server.kill()
