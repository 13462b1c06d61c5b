import threading
import time

import numpy as np
import psycopg2
import pytest
from devtools.shared import sample
from recognition_service.errors import DatabaseUnavailable
from recognition_service.storage.db import APPLICATION_NAME, Database
from recognition_service.storage.migrate import apply_migrations
from test_recognize_api import recognize
from test_students_api import enrol


def _terminate_service_connections(database_url) -> int:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND datname = current_database()", (APPLICATION_NAME,))
        return cur.rowcount


def test_killed_pooled_connection_is_replaced(client, app, database_url):
    enrol(client, "obama", "obama.jpg")
    assert client.get("/api/v1/students").status_code == 200
    state = app.extensions["recognition"]
    before = state.db.stats()
    assert before["idle"] >= 1
    assert _terminate_service_connections(database_url) >= 1
    time.sleep(0.2)
    r = client.get("/api/v1/students")
    assert r.status_code == 200 and r.json["total"] == 1
    assert recognize(client, sample("obama2.jpg")).json["faces"][0]["student_id"] == "obama"


def test_exhausted_pool_answers_503_within_the_timeout(make_app):
    app = make_app(DB_POOL_MIN=0, DB_POOL_MAX=1, DB_POOL_TIMEOUT_S=0.5)
    client = app.test_client()
    assert client.get("/api/v1/students").status_code == 200
    db = app.extensions["recognition"].db
    held, release = threading.Event(), threading.Event()

    def hold():
        with db.get_db_conn():
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        started = time.monotonic()
        r = client.get("/api/v1/students")
        elapsed = time.monotonic() - started
    finally:
        release.set()
        t.join()
    assert r.status_code == 503 and r.json["error"]["code"] == "database_busy"
    assert 0.4 <= elapsed < 3
    assert client.get("/api/v1/students").status_code == 200


def test_commit_on_success_rollback_on_error(database_url):
    db = Database(database_url, minconn=0, maxconn=2)
    with db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    with pytest.raises(ZeroDivisionError):
        with db.get_db_conn() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (1)")
            raise ZeroDivisionError("a failure inside the transaction")
    with db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2)")
    with db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("SELECT array_agg(x) FROM t")
        assert cur.fetchone()[0] == [2]
    assert db.stats()["in_use"] == 0
    db.close()


def test_unreachable_database_is_503_not_a_crash(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", DB_CONNECT_TIMEOUT_S=1)
    client = app.test_client()
    r = client.get("/api/v1/students")
    assert r.status_code == 503 and r.json["error"]["code"] == "database_unavailable"
    r = client.get("/health")
    assert r.status_code == 503 and r.json["database"].startswith("unavailable")
    with pytest.raises(DatabaseUnavailable):
        Database("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1).ping()


def test_pool_refuses_use_across_a_fork(database_url, monkeypatch):
    import os

    db = Database(database_url, minconn=0, maxconn=1)
    db.ping()
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # stands in for a forked child
    with pytest.raises(RuntimeError, match="fork"):
        db.ping()
    monkeypatch.undo()
    db.close()


def test_concurrent_migrations_apply_once(database_url):
    errors, applied = [], []

    def run():
        try:
            conn = psycopg2.connect(database_url)
            with conn:
                applied.append(apply_migrations(conn))
            conn.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(a) for a in applied) == len(max(applied, key=len)) >= 1
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT version) FROM schema_migrations")
        total, distinct = cur.fetchone()
        assert total == distinct >= 1


def test_gallery_follows_changes_made_by_another_process(make_app):
    a, b = make_app().test_client(), make_app().test_client()
    assert recognize(b, sample("obama2.jpg")).json["faces"][0]["student_id"] is None  # b's gallery is loaded
    enrol(a, "obama", "obama.jpg")
    assert recognize(b, sample("obama2.jpg")).json["faces"][0]["student_id"] == "obama"
    assert a.delete("/api/v1/students/obama").status_code == 204
    assert recognize(b, sample("obama2.jpg")).json["faces"][0]["student_id"] is None


def test_embeddings_of_another_model_are_ignored_and_reported(client, app, database_url):
    enrol(client, "obama", "obama.jpg")
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT embedding FROM faces")
        blob = cur.fetchone()[0]
        cur.execute("INSERT INTO students VALUES ('twin', 'Twin')")
        cur.execute("INSERT INTO faces (student_id, model_fingerprint, embedding, det_score, bbox, image_sha256) "
                    "VALUES ('twin', 'another-model', %s, 0.9, '{0,0,1,1}', 'x')", (blob,))
    r = client.get("/health").json
    assert r["enrollments"] == {"current_model": 1, "other_models": 1, "needs_reenrolment": 1}
    assert "twin" not in str(r["warnings"]) and "1 enrolled photo" in r["warnings"][0]
    face = recognize(client, sample("obama2.jpg")).json["faces"][0]
    assert face["student_id"] == "obama"  # the identical vector under another model is not a rival
    gallery = app.extensions["recognition"].gallery(app.extensions["recognition"].models.get())
    assert gallery.size == 1 and np.isfinite(face["similarity"])


def test_embedded_postgres_when_no_database_url(make_app, tmp_path):
    app = make_app(DATABASE_URL="", DATA_DIR=str(tmp_path / "embedded"))
    client = app.test_client()
    assert client.put("/api/v1/students/a1", json={"name": "A"}).status_code == 201
    assert (tmp_path / "embedded" / "pgdata" / "PG_VERSION").exists()
    assert client.get("/health").json["database"] == "ok"
