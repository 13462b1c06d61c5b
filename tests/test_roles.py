"""Key roles (security/roles.py): every route's permission, what each role may do through the API and the
console, and environment keys named by a fingerprint. Real app, real PostgreSQL, real model."""

from __future__ import annotations

import io
import re

import psycopg2
import pytest
from devtools.shared import sample
from recognition_service.security import api_keys, roles


@pytest.fixture
def school(make_app, database_url):
    """An app with one database key per role, an enrolled student and a running session."""
    app = make_app(CALLBACK_ALLOWED_HOSTS="127.0.0.1", SESSIONS_ENABLED=False)
    state = app.extensions["recognition"]
    state.ensure_schema()
    keys = {}
    with state.db.get_db_conn() as conn:
        for role in roles.ROLES:
            keys[role] = api_keys.create_key(conn, f"{role} key", role)[1]
    client = app.test_client()
    backend = {"X-API-Key": keys["backend"]}
    r = client.post("/api/v1/students/obama/faces", data={"image": (io.BytesIO(sample("obama.jpg")), "o.jpg")},
                    headers=backend)
    assert r.status_code == 201, r.get_json()
    r = client.post("/api/v1/sessions", json={"slot_id": 9, "cameras": [{"camera_id": 1, "url": "rtsp://10.0.0.9/s"}],
                                              "callback_url": "http://127.0.0.1:9/cb"}, headers=backend)
    assert r.status_code == 201, r.get_json()
    return app, client, keys


def test_every_route_says_which_permission_it_needs(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints <= set(roles.ROUTES), sorted(endpoints - set(roles.ROUTES))
    assert all(p is None or p in roles.PERMISSIONS for p in roles.ROUTES.values())
    assert roles.needed("not.a.listed.route") == roles.ADMIN_ONLY  # a forgotten route stays closed


CALLS = [  # (method, path, body, the permission it needs)
    ("get", "/api/v1/students", None, "students.read"),
    ("put", "/api/v1/students/obama", {"name": "Someone Else"}, "students.write"),
    ("post", "/api/v1/students/obama/faces", "photo", "students.enrol"),
    ("delete", "/api/v1/students/obama", None, "students.erase"),
    ("post", "/api/v1/recognize", "photo", "recognize"),
    ("get", "/api/v1/sessions/9", None, "sessions.read"),
    ("post", "/api/v1/sessions/9/stop", None, "sessions.run"),
    ("get", "/api/v1/sessions/9/review", None, "review.read"),
    ("get", "/api/v1/models", None, "models.read"),
]


@pytest.mark.parametrize("role", ["teacher", "viewer"])
def test_a_narrow_key_is_refused_what_its_role_does_not_allow_and_nothing_changes(school, role):
    app, client, keys = school
    headers = {"X-API-Key": keys[role]}
    for method, path, body, permission in CALLS:
        kwargs = {"headers": headers}
        if body == "photo":
            kwargs["data"] = {"image": (io.BytesIO(sample("obama2.jpg")), "o.jpg")}
        elif body is not None:
            kwargs["json"] = body
        r = getattr(client, method)(path, **kwargs)
        if roles.allowed(role, permission):
            assert r.status_code < 400, (role, path, r.get_json())
        else:
            assert r.status_code == 403, (role, path, r.status_code)
            error = r.get_json()["error"]
            assert error["code"] == "forbidden_for_role" and f"({role})" in error["message"], error
            assert "backend" in error["message"]  # says which key would do
    backend = {"X-API-Key": keys["backend"]}
    student = client.get("/api/v1/students/obama", headers=backend).get_json()
    assert student["name"] != "Someone Else" and student["face_count"] == 1  # nothing changed
    assert client.get("/api/v1/sessions/9", headers=backend).get_json()["status"] in ("starting", "running")


def test_the_backend_key_runs_the_school_and_only_admin_has_unlisted_routes(school):
    _, client, keys = school
    backend = {"X-API-Key": keys["backend"]}
    assert client.put("/api/v1/students/obama", json={"name": "Barack Obama"}, headers=backend).status_code == 200
    assert client.post("/api/v1/sessions/9/stop", headers=backend).status_code == 200
    assert client.delete("/api/v1/students/obama", headers=backend).status_code == 204
    assert roles.may("admin", "some.future_route") and not roles.may("backend", "some.future_route")


def _review_item(database_url: str) -> str:
    """A review item as a camera files it (the camera path is tested elsewhere: here only who may act)."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT session_id FROM sessions WHERE slot_id = 9")
        session_id = cur.fetchone()[0]
        cur.execute("""INSERT INTO review_items (item_id, session_id, camera_id, model_fingerprint, embedding, weight,
                                                 reason, candidates)
                       VALUES (gen_random_uuid(), %s, 1, 'x', %s, 1.0, 'near_miss',
                               '[{"student_id": "obama", "similarity": 0.3}]')
                       RETURNING item_id""", (session_id, psycopg2.Binary(b"\0" * 2048)))
        return str(cur.fetchone()[0])


def test_a_teacher_confirms_a_review_but_may_not_enrol_its_face_or_create_a_student(school, database_url):
    _, client, keys = school
    item = _review_item(database_url)
    teacher = {"X-API-Key": keys["teacher"]}
    url = f"/api/v1/sessions/9/review/{item}"
    for body in ({"action": "confirm", "student_id": "obama", "enrol": True},
                 {"action": "confirm", "student_id": "new-kid"},
                 {"action": "confirm", "student_id": "obama", "name": "Renamed"}):
        r = client.post(url, json=body, headers=teacher)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden_for_role", (body, r.get_json())
    assert client.get("/api/v1/sessions/9/review", headers=teacher).get_json()["items"][0]["status"] == "open"
    r = client.post(url, json={"action": "confirm", "student_id": "obama"}, headers=teacher)
    assert r.status_code == 200 and r.get_json()["item"]["status"] == "confirmed", r.get_json()
    viewer = client.post(url, json={"action": "reject"}, headers={"X-API-Key": keys["viewer"]})
    assert viewer.status_code == 403


def _console_sign_in(client, key: str) -> None:
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/console/login", data={"api_key": key, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)


def _csrf(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def test_a_teacher_at_the_console_sees_no_erase_and_cannot_erase(school):
    app, _, keys = school
    teacher = app.test_client()
    _console_sign_in(teacher, keys["teacher"])
    page = teacher.get("/console/students/obama")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Erase student" not in html and "Enrol photos" not in html and "Sign out (teacher key, teacher)" in html
    token = _csrf(teacher, "/console/students/obama")
    r = teacher.post("/console/students/obama/delete", data={"confirmed": "yes", "csrf_token": token})
    assert r.status_code == 403
    assert teacher.post("/console/sessions/9/stop", data={"csrf_token": token}).status_code == 403
    assert teacher.get("/console/service").status_code == 403
    admin = app.test_client()
    _console_sign_in(admin, keys["admin"])
    assert "Erase student" in admin.get("/console/students/obama").get_data(as_text=True)
    backend = {"X-API-Key": keys["backend"]}
    assert app.test_client().get("/api/v1/students/obama", headers=backend).status_code == 200  # still there


def test_environment_keys_are_admin_and_named_by_a_fingerprint_not_their_place(make_app, database_url):
    both = make_app(API_KEYS="first-key-1234567, second-key-1234567")
    client = both.test_client()
    r = client.put("/api/v1/students/s1", json={"name": "One"}, headers={"X-API-Key": "second-key-1234567"})
    assert r.status_code == 201
    console = both.test_client()
    _console_sign_in(console, "first-key-1234567")
    assert console.get("/console/").status_code == 200
    # the first key is removed: its console session ends, and the second is still named as before
    only_second = make_app(API_KEYS="second-key-1234567")
    assert only_second.test_client().put("/api/v1/students/s2", json={"name": "Two"},
                                         headers={"X-API-Key": "second-key-1234567"}).status_code == 201
    cookie = console.get_cookie("console_session", path="/console")
    moved = only_second.test_client()
    moved.set_cookie("console_session", cookie.value, path="/console")
    assert moved.get("/console/").status_code == 302  # back to sign-in
    again = both.test_client()  # ended for good (server side), even where the old list is still in force
    again.set_cookie("console_session", cookie.value, path="/console")
    assert again.get("/console/").status_code == 302
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT actor FROM audit_log WHERE action = 'student.create' OR action LIKE 'student.%'")
        actors = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT actor, end_reason FROM console_sessions")
        sessions = cur.fetchall()
    assert len(actors) == 1 and re.fullmatch(r"env-key:[0-9a-f]{12}", next(iter(actors))), actors
    assert "second-key" not in str(actors)
    assert len(sessions) == 1 and sessions[0][1] == "key_gone" and sessions[0][0].startswith("env-key:"), sessions
