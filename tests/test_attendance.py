"""What a teacher and an office read, end to end on a real Gunicorn with keys and their roles: a roster session
with its class name, room and teacher; absent students by name; an enrolled student from another class filed
for review as "not on this class's roster" (not as a stranger) and counted by a teacher's confirm, which says
who confirmed; the attendance as JSON, CSV (formula cells neutralised) and the stopped event's camera count;
a face enrolled again under another id refused, naming the student it already is."""

from __future__ import annotations

import csv
import io

import psycopg2
import pytest
import requests
from devtools.streams import side_by_side, write_video
from session_helpers import FAST, people_shown, status_events, wait_for

from recognition_service.security.api_keys import create_key

SIZE = (640, 480)
LEFT, RIGHT = (90, 140, 230, 300), (410, 140, 550, 300)
ADMIN_KEY = "attendance-admin-key"


@pytest.fixture
def school(gunicorn_servers, database_url):
    server = gunicorn_servers(**{**FAST, "WORKERS": 2, "API_KEYS": ADMIN_KEY, "TZ_NAME": "Asia/Bangkok"})
    with psycopg2.connect(database_url) as conn:
        _, teacher = create_key(conn, "Ms Tran (7B)", "teacher")
    return server, {"X-API-Key": ADMIN_KEY}, {"X-API-Key": teacher}


def _call(url, method, path, headers, **kwargs):
    return requests.request(method, url + path, headers=headers, timeout=60, **kwargs)


def test_a_roster_session_reads_in_names_counts_a_visitor_by_a_teachers_confirm_and_exports(school, tmp_path,
                                                                                          database_url):
    server, admin, teacher = school
    url = server.url
    (pupil, pupil_photos, pupil_img, pupil_box), (visitor, visitor_photos, visitor_img, visitor_box) = \
        people_shown(url, 2, headers=admin)
    for sid, photos in ((pupil, pupil_photos), (visitor, visitor_photos)):
        r = _call(url, "POST", f"/api/v1/students/{sid}/faces", admin, data={"name": f"{sid} Name"},
                  files=[("image", (p.name, p.read_bytes())) for p in photos[1:3]])
        assert r.status_code == 201, r.text
    assert _call(url, "PUT", "/api/v1/students/absent-kid", admin, json={"name": "Absent Kid"}).status_code == 201

    # the display fields are checked like every field: a control character is refused, nothing is started
    base = {"slot_id": 701, "callback_url": "http://127.0.0.1:9/cb", "frame_interval_ms": 200,
            "student_ids": [pupil, "absent-kid", "never-enrolled"]}
    r = _call(url, "POST", "/api/v1/sessions", admin, json={**base, "cameras": [{"camera_id": 1, "url": "x.mp4"}],
                                                           "class_name": "7B\nMaths"})
    assert r.status_code == 422 and "class_name" in r.text, r.text
    assert _call(url, "GET", "/api/v1/sessions/701", admin).status_code == 404

    both = side_by_side((pupil_img, pupil_box), (visitor_img, visitor_box), (LEFT, RIGHT), SIZE)
    alone = side_by_side((pupil_img, pupil_box), (pupil_img * 0 + 40, visitor_box), (LEFT, RIGHT), SIZE)
    video = write_video(tmp_path / "visitor.mp4", [(both, 30), (alone, 30)])
    r = _call(url, "POST", "/api/v1/sessions", admin, json={
        **base, "cameras": [{"camera_id": 3, "url": str(video)}],
        "class_name": "=HYPERLINK(\"http://x.example\")", "room": "R 12", "teacher": "Ms Tran"})
    assert r.status_code == 201, r.text
    assert r.json()["display"] == {"class_name": "=HYPERLINK(\"http://x.example\")", "room": "R 12",
                                   "teacher": "Ms Tran"}

    # the visitor is enrolled but not on the roster: one review item saying so, them first
    items = wait_for(lambda: [i for i in _call(url, "GET", "/api/v1/sessions/701/review", teacher).json()["items"]
                              if i["reason"] == "not_on_roster"], 60, "the visitor's review item")
    item = items[0]
    assert item["candidates"][0]["student_id"] == visitor and item["candidates"][0]["name"] == f"{visitor} Name"
    assert item["candidates"][0]["on_roster"] is False
    session = wait_for(lambda: (s := _call(url, "GET", "/api/v1/sessions/701", teacher).json())
                       ["recognition_count"] and s, 40, "the pupil recognised")
    assert [r["student_id"] for r in session["recognized_students"]] == [pupil]
    assert session["recognized_students"][0]["confirmed_by"] is None
    assert session["absent_students"] == [{"student_id": "absent-kid", "name": "Absent Kid"},
                                          {"student_id": "never-enrolled", "name": None}]

    # enrolling the visitor's face under another id is refused, naming them; the item stays open
    r = _call(url, "POST", f"/api/v1/sessions/701/review/{item['item_id']}", admin,
              json={"action": "confirm", "student_id": "someone-else", "name": "Someone Else", "enrol": True})
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_face", r.text
    assert r.json()["error"]["duplicate_of"][0]["student_id"] == visitor
    assert _call(url, "GET", "/api/v1/students/someone-else", admin).status_code == 404

    # a teacher counts the visitor: confirmed by them, flagged as not on the roster
    r = _call(url, "POST", f"/api/v1/sessions/701/review/{item['item_id']}", teacher,
              json={"action": "confirm", "student_id": visitor})
    assert r.status_code == 200, r.text
    assert r.json()["item"]["resolved_name"] == f"{visitor} Name"
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT key_id FROM api_keys WHERE name = 'Ms Tran (7B)'")
        teacher_actor = f"key:{cur.fetchone()[0]}"
        cur.execute("""SELECT e.payload FROM events e JOIN sessions s USING (session_id)
                       WHERE s.slot_id = 701 AND e.type = 'recognition' AND e.payload->>'source' = 'review'""")
        (event,) = [row[0] for row in cur.fetchall()]
    assert event["student_id"] == visitor and event["on_roster"] is False and event["confirmed_by"] == teacher_actor

    stopped = _call(url, "POST", "/api/v1/sessions/701/stop", admin).json()
    assert stopped["active_cameras"] == 0
    assert status_events(database_url, 701)[-1]["active_cameras"] == 0  # the event says what the session says

    report = _call(url, "GET", "/api/v1/sessions/701/attendance", teacher).json()
    assert report["time_zone"] == "Asia/Bangkok" and report["started_at"].endswith("+07:00")
    assert report["room"] == "R 12" and report["teacher"] == "Ms Tran" and report["roster"] is True
    present = {p["student_id"]: p for p in report["present"]}
    assert present[pupil]["named_by"] == "camera" and present[pupil]["on_roster"] is True
    assert present[pupil]["first_seen_at"].endswith("+07:00") and present[pupil]["camera_id"] == 3
    assert present[visitor]["named_by"] == "Ms Tran (7B)" and present[visitor]["on_roster"] is False
    assert [a["student_id"] for a in report["absent"]] == ["absent-kid", "never-enrolled"]

    r = _call(url, "GET", "/api/v1/sessions/701/attendance", teacher, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert f'filename="attendance-slot-701-{report["started_at"][:10]}.csv"' in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["status"], row["student_id"]) for row in rows] == [
        ("present", s) for s in present] + [("absent", "absent-kid"), ("absent", "never-enrolled")]
    assert all(row["class_name"].startswith("'=") for row in rows)  # never a live formula in a spreadsheet
    by_id = {row["student_id"]: row for row in rows}
    assert by_id[visitor]["named_by"] == "Ms Tran (7B)" and by_id[visitor]["on_roster"] == "no"
    assert by_id["absent-kid"]["name"] == "Absent Kid"

    bad = _call(url, "GET", "/api/v1/sessions/701/attendance", teacher, params={"format": "xlsx"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"
    assert _call(url, "GET", "/api/v1/sessions/7999/attendance", teacher).status_code == 404
    assert _call(url, "GET", "/api/v1/sessions/701/attendance", {}).status_code == 401


def test_a_face_already_enrolled_is_refused_under_another_id_unless_meant(school):
    server, admin, teacher = school
    url = server.url
    (person, photos, _, _), = people_shown(url, 1, headers=admin)
    files = [("image", (p.name, p.read_bytes())) for p in photos[1:3]]
    assert _call(url, "POST", f"/api/v1/students/{person}/faces", admin, files=files,
                 data={"name": "First Record"}).status_code == 201

    # the same person under a new id: refused, naming who they already are; nothing is created
    again = [("image", (photos[0].name, photos[0].read_bytes()))]
    r = _call(url, "POST", "/api/v1/students/new-id-77/faces", admin, files=again, data={"name": "Second Record"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "duplicate_face" and "First Record" in error["message"]
    rejected = error["rejected"][0]
    assert rejected["reason"] == "duplicate_face" and rejected["duplicate_of"][0]["student_id"] == person
    assert _call(url, "GET", "/api/v1/students/new-id-77", admin).status_code == 404

    # the same photo under its own student is no duplicate; a yes/no field is checked; twins are enrolled
    r = _call(url, "POST", f"/api/v1/students/{person}/faces", admin, files=again)
    assert r.status_code == 201 and r.json()["rejected"] == []  # their own new photo is not a duplicate
    r = _call(url, "POST", "/api/v1/students/new-id-77/faces", admin, files=again,
              data={"allow_duplicate": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "allow_duplicate"
    r = _call(url, "POST", "/api/v1/students/new-id-77/faces", admin, files=again, data={"allow_duplicate": "true"})
    assert r.status_code == 201, r.text  # twins: the caller says so
