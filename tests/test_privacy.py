"""Erasure: deleting a student leaves no file or row that names them; retention removes delivered callbacks."""

from __future__ import annotations

import psycopg2
import pytest
import requests
from devtools.receiver import Receiver
from devtools.servers import Server
from devtools.streams import build_video
from session_helpers import FAST, enrol, get, start, wait_for


@pytest.fixture
def video(tmp_path):
    return build_video(tmp_path / "classroom.mp4")


def rows_naming(database_url: str, *needles: str) -> dict[str, int]:
    """Rows of every table whose text contains any needle."""
    found = {}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT count(*) FROM "{table}" t WHERE ' + " OR ".join(["t::text LIKE %s"] * len(needles)),
                        [f"%{n}%" for n in needles])
            if n := cur.fetchone()[0]:
                found[table] = n
    return found


def test_deleting_a_student_erases_every_trace(database_url, tmp_path, video):
    receiver = Receiver(status=500)  # keep some deliveries pending, others get delivered later
    server = Server("gunicorn", database_url, tmp_path, **{**FAST, "WORKERS": 1, "CALLBACK_POLL_S": 0.2,
                                                          "CALLBACK_RETRY_BASE_S": 0.5}).wait_ready(90)
    try:
        enrol(server.url)
        start(server.url, 1, [(1, str(video))], frame_interval_ms=200, callback_url=receiver.url)
        session = wait_for(lambda: (s := get(server.url, 1))["recognition_count"] >= 4 and s, 60, "recognitions")
        victim = session["recognized_students"][0]
        sid, name = victim["student_id"], victim["name"]
        evidence = sorted((tmp_path / "data" / "evidence").rglob(f"{victim['evidence_id']}*"))
        assert len(evidence) == 2
        assert rows_naming(database_url, sid, name)  # before: students, faces, recognitions, events, ...

        assert requests.delete(f"{server.url}/api/v1/students/{sid}", timeout=10).status_code == 204
        assert rows_naming(database_url, sid, name) == {}
        assert not any(p.exists() for p in evidence)
        others = {r["student_id"] for r in session["recognized_students"]} - {sid}
        assert others <= {r["student_id"] for r in get(server.url, 1)["recognized_students"]}
        receiver.status = 200  # what is still pending goes out without the erased student
        wait_for(lambda: {i["student_id"] for b in receiver.accepted() if b["type"] == "recognition"
                          for i in b["recognitions"]} >= others, 30, "the other students' callbacks")
        sent = [i["student_id"] for b in receiver.accepted() if b["type"] == "recognition" for i in b["recognitions"]]
        assert sid not in sent
        # the log named students by a keyed hash only; the deleted row versions were vacuumed right away
        log_text = server.log_path.read_text()
        assert "recognised on camera" in log_text and "student#" in log_text
        assert sid not in log_text and name not in log_text
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL")
            assert {"students", "faces", "face_crops", "events", "deliveries"} <= {r[0] for r in cur.fetchall()}
    finally:
        server.kill()
        receiver.close()


def test_delivered_callbacks_are_removed_after_their_retention(database_url, tmp_path, video):
    receiver = Receiver()
    server = Server("gunicorn", database_url, tmp_path, **{**FAST, "WORKERS": 1, "CALLBACK_POLL_S": 0.2,
                                                          "EVIDENCE_SWEEP_S": 1}).wait_ready(90)
    try:
        start(server.url, 2, [(1, str(video))], frame_interval_ms=1000, callback_url=receiver.url)
        wait_for(lambda: receiver.accepted(), 20, "the started callback")
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE deliveries SET delivered_at = now() - interval '31 days' WHERE status = 'delivered'")
            aged = cur.rowcount
        assert aged >= 1

        def remaining():
            with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM deliveries WHERE delivered_at < now() - interval '30 days'")
                return cur.fetchone()[0]

        wait_for(lambda: remaining() == 0, 15, "the sweep")
    finally:
        server.kill()
        receiver.close()
