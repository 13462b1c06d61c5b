"""Console sign-ins kept server side: sign-out, idle timeout and revocation end them for good; pages are
never framed or cached; odd input is a 4xx. Real app and PostgreSQL (the browser flows are in test_console)."""

from __future__ import annotations

import re
import time

import pytest
from recognition_service.security import api_keys


@pytest.fixture
def keyed(make_app):
    def build(**settings):
        app = make_app(**settings)
        state = app.extensions["recognition"]
        state.ensure_schema()
        with state.db.get_db_conn() as conn:
            key_id, key = api_keys.create_key(conn, "office", "admin")
        return app, key_id, key
    return build


def sign_in(client, key: str):
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/console/login", data={"api_key": key, "csrf_token": token, "next": "/console/students"})


def csrf(client, path: str = "/console/") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def test_a_cookie_replayed_after_sign_out_opens_nothing(keyed):
    app, _, key = keyed()
    client = app.test_client()
    assert sign_in(client, key).headers["Location"].endswith("/console/students")
    cookie = client.get_cookie("console_session", path="/console").value
    assert client.get("/console/").status_code == 200
    assert client.post("/console/logout", data={"csrf_token": csrf(client)}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("console_session", cookie, path="/console")
    assert replay.get("/console/").status_code == 302  # to sign-in: the session ended server side
    assert replay.post("/console/students/x/delete", data={"confirmed": "yes"}).status_code == 401


def test_an_idle_console_session_ends(keyed):
    app, _, key = keyed(CONSOLE_IDLE_TIMEOUT_S=30)
    client = app.test_client()
    sign_in(client, key)
    assert client.get("/console/").status_code == 200
    state = app.extensions["recognition"]
    with state.db.get_db_conn() as conn, conn.cursor() as cur:  # 31 s pass without a request
        cur.execute("UPDATE console_sessions SET last_seen_at = last_seen_at - interval '31 seconds'")
    assert client.get("/console/").status_code == 302
    with state.db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("SELECT end_reason FROM console_sessions")
        assert cur.fetchall() == [("idle",)]


def test_revoking_a_key_ends_its_console_sessions(keyed):
    app, key_id, key = keyed()
    client = app.test_client()
    sign_in(client, key)
    assert client.get("/console/").status_code == 200
    state = app.extensions["recognition"]
    with state.db.get_db_conn() as conn:
        assert api_keys.revoke_key(conn, key_id)
    deadline = time.monotonic() + 1
    assert client.get("/console/").status_code == 302 and time.monotonic() < deadline  # at once, not cached


def test_console_pages_cannot_be_framed_or_cached_and_odd_input_is_a_4xx(keyed):
    app, _, key = keyed()
    client = app.test_client()
    login = client.get("/console/login")
    assert "console_session" not in str(login.headers.getlist("Set-Cookie"))  # the sign-in page leaves it be
    sign_in(client, key)
    for path in ("/console/", "/console/students", "/console/login"):
        r = client.get(path)
        assert r.headers["X-Frame-Options"] == "DENY", path
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert r.headers["Cache-Control"] == "no-store", path
    assert client.get("/console/static/console.css").headers.get("Cache-Control") != "no-store"
    assert client.get("/console/students?q=%00").status_code == 400
    assert client.get("/console/students?q=a%0d%0ab").status_code == 400
    fresh = app.test_client()
    page = fresh.get("/console/login?next=/console/%0d%0aSet-Cookie:x=1")
    assert page.status_code == 200 and "Set-Cookie:x" not in page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    r = fresh.post("/console/login", data={"api_key": key, "csrf_token": token,
                                           "next": "/console/\r\nLocation: https://evil.example/"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")  # the bad next is dropped
    other = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', other.get("/console/login").get_data(as_text=True)).group(1)
    r = other.post("/console/login", data={"api_key": key, "csrf_token": token, "next": "//evil.example/x"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")


def test_a_request_without_the_cookie_does_not_clear_a_valid_session(keyed):
    """A cross-site link arrives without the SameSite=Strict cookie: the answer must not delete it."""
    app, _, key = keyed()
    client = app.test_client()
    sign_in(client, key)
    bare = app.test_client()  # what the cross-site navigation looks like to the server
    r = bare.get("/console/students/obama")
    assert r.status_code == 302
    assert not any("console_session" in c for c in r.headers.getlist("Set-Cookie"))
    assert client.get("/console/").status_code == 200
