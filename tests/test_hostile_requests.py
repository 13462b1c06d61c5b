"""Requests built to break the API get a clear 4xx JSON answer and change nothing."""

from __future__ import annotations

import io
import socket

import pytest
import requests
from devtools.shared import sample
from PIL import Image


def _png(size=(1, 1)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_json_nested_ten_thousand_deep_is_400_on_every_json_route(client):
    deep = "[" * 10_000 + "]" * 10_000
    for method, path in [("put", "/api/v1/students/s1"), ("post", "/api/v1/sessions")]:
        r = getattr(client, method)(path, data=deep, content_type="application/json")
        assert r.status_code == 400 and r.json["error"]["code"] == "invalid_json", (path, r.status_code)
    nested: list = []
    for _ in range(40):
        nested = [nested]
    r = client.put("/api/v1/students/s1", json={"name": "Ann", "extra": nested})
    assert r.status_code == 400 and "deeper than" in r.json["error"]["message"]
    assert client.get("/api/v1/students").json["total"] == 0


def test_nul_characters_are_422_naming_the_field(client, tmp_path):
    r = client.put("/api/v1/students/s1", json={"name": "Ann\x00e"})
    assert r.status_code == 422 and r.json["error"]["field"] == "name"
    r = client.post("/api/v1/students/s1/faces", data={"image": (io.BytesIO(sample("obama.jpg")), "o.jpg"),
                                                       "name": "Ann\x00e"})
    assert r.status_code == 422 and r.json["error"]["field"] == "name"
    r = client.post("/api/v1/sessions", json={"slot_id": 1, "cameras": [{"camera_id": 1, "url": "rtsp://10.0.0.5/x"}],
                                              "callback_url": "http://8.8.8.8/cb", "mode": "a\x00b"})
    assert r.status_code == 422 and r.json["error"]["field"] == "mode"
    for method in ("get", "delete"):
        r = getattr(client, method)("/api/v1/students/a%00b")
        assert r.status_code == 422 and r.json["error"]["field"] == "student_id"
    assert client.delete("/api/v1/students/a%00b/faces/1").status_code == 422
    assert client.get("/api/v1/students/s1%0A").status_code == 422  # a trailing newline is not an id either
    assert client.get("/api/v1/students").json["total"] == 0


def test_blank_names_are_422_and_a_failed_enrolment_leaves_no_student(client):
    r = client.put("/api/v1/students/s1", json={"name": "   "})
    assert r.status_code == 422 and r.json["error"]["field"] == "name"
    r = client.post("/api/v1/students/s1/faces", data={"image": (io.BytesIO(sample("obama.jpg")), "o.jpg"),
                                                       "name": " \t "})
    assert r.status_code == 422
    r = client.post("/api/v1/students/s2/faces", data={"image": (io.BytesIO(sample("no_face.jpg")), "n.jpg"),
                                                       "name": "Nobody"})
    assert r.status_code == 422
    assert client.get("/api/v1/students").json["total"] == 0
    assert client.get("/api/v1/students/s2").status_code == 404


def test_too_many_images_in_one_enrolment_is_422_naming_the_setting(make_app):
    client = make_app(MAX_ENROL_IMAGES=3).test_client()
    r = client.post("/api/v1/students/s1/faces",
                    data={"image": [(io.BytesIO(sample("obama.jpg")), f"{i}.jpg") for i in range(4)]})
    assert r.status_code == 422 and "MAX_ENROL_IMAGES=3" in r.json["error"]["message"]
    assert client.get("/api/v1/students/s1").status_code == 404


def test_evidence_ids_in_other_uuid_spellings_are_404_not_500(client):
    for evidence_id in ("urn:uuid:12345678-1234-5678-1234-567812345678", "{12345678-1234-5678-1234-567812345678}",
                        "12345678123456781234567812345678", "not-a-uuid"):
        r = client.get(f"/api/v1/sessions/1/evidence/{evidence_id}")
        assert r.status_code == 404 and r.json["error"]["code"] == "evidence_not_found", evidence_id


def test_numbers_given_empty_or_twice_are_422(client):
    for query in ("limit=", "offset=", "limit=5&limit=6", "limit=abc"):
        for path in ("/api/v1/students", "/api/v1/sessions"):
            r = client.get(f"{path}?{query}")
            assert r.status_code == 422 and r.json["error"]["field"] in ("limit", "offset"), (path, query)
    assert client.get("/api/v1/sessions?status=running&status=stopped").status_code == 422


def test_405_names_the_allowed_methods(client):
    r = client.open("/health/live", method="TRACE")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    r = client.patch("/api/v1/students/s1")
    assert r.status_code == 405 and "PUT" in r.headers["Allow"]


def test_a_one_pixel_image_is_an_image_without_faces(client):
    r = client.post("/api/v1/recognize", data=_png(), content_type="image/png")
    assert r.status_code == 200 and r.json["faces"] == []
    r = client.post("/api/v1/embeddings", data=_png((3, 40)), content_type="image/png")
    assert r.status_code == 200 and r.json["faces"] == []


def test_form_limits_say_what_was_wrong(client):
    r = client.post("/api/v1/recognize", data={"x" * 600_000: "1", "image": (io.BytesIO(_png()), "a.png")})
    assert r.status_code == 413 and "field" in r.json["error"]["message"]
    assert "MAX_UPLOAD_MB" not in r.json["error"]["message"].split(";")[0]
    parts = {f"f{i}": "1" for i in range(1001)}
    r = client.post("/api/v1/recognize", data={**parts, "image": (io.BytesIO(_png()), "a.png")})
    assert r.status_code == 413 and "too many parts" in r.json["error"]["message"]


def _chunked_post(url: str, path: str, content_type: str, total: int) -> tuple[int, bytes]:
    """POST `total` bytes with Transfer-Encoding: chunked (no Content-Length), as a raw socket would."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        block = _png() + b"\0" * (1024 * 1024 - len(_png()))
        sent = 0
        try:
            while sent < total:
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sent += len(block)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the end: read its answer
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
def test_a_chunked_body_over_the_limit_is_413_through_gunicorn(gunicorn_servers, content_type):
    server = gunicorn_servers(WORKERS=1, MAX_UPLOAD_MB=2)
    status, answer = _chunked_post(server.url, "/api/v1/recognize", content_type, 8 * 1024 * 1024)
    assert status == 413, answer[:400]
    # within the limit, chunked still works
    status, answer = _chunked_post(server.url, "/api/v1/recognize", content_type, 1 * 1024 * 1024)
    assert status == 200, answer[:400]
    assert requests.get(server.url + "/health/ready", timeout=10).status_code == 200
