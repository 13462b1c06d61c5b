"""Review end to end: a real Gunicorn session on a file camera showing two enrolled people and two strangers.

The strangers come and go again and again (the video loops); each must end up as one open review item.
Confirming one as a new student (with enrolment) records a recognition and delivers one callback with
source review, and a later session recognises them by themselves; rejecting the other keeps its impostor
pairs, which scripts/calibrate.py counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg2
import pytest
import requests
from devtools.receiver import Receiver
from devtools.shared import MODEL_PACK, REPO_ROOT
from devtools.streams import side_by_side, write_video
from session_helpers import FAST, get, people_shown, wait_for

SIZE = (640, 480)
LEFT, RIGHT = (90, 140, 230, 300), (410, 140, 550, 300)


@pytest.fixture
def classroom(gunicorn_servers, tmp_path):
    server = gunicorn_servers(**{**FAST, "WORKERS": 2, "CALLBACK_POLL_S": 0.5})
    people = people_shown(server.url, 4)
    enrolled, strangers = people[:2], people[2:]
    for name, photos, _, _ in enrolled:
        r = requests.post(f"{server.url}/api/v1/students/{name}/faces",
                          files=[("image", (p.name, p.read_bytes())) for p in photos[1:3]], timeout=60)
        assert r.status_code == 201, r.text
    a = side_by_side(enrolled[0][2:], strangers[0][2:], (LEFT, RIGHT), SIZE)
    b = side_by_side(enrolled[1][2:], strangers[1][2:], (LEFT, RIGHT), SIZE)
    video = write_video(tmp_path / "review.mp4", [(a, 25), (b, 25)])  # 2.5 s each, looping
    receiver = Receiver()
    yield server, video, enrolled, strangers, receiver
    receiver.close()


def _start(url: str, slot: int, video, callback_url: str) -> None:
    r = requests.post(url + "/api/v1/sessions", timeout=10, json={
        "slot_id": slot, "cameras": [{"camera_id": 1, "url": str(video)}], "callback_url": callback_url,
        "frame_interval_ms": 200})
    assert r.status_code == 201, r.text


def test_strangers_become_one_review_item_each_confirm_enrols_and_reject_feeds_calibration(classroom,
                                                                                            database_url):
    server, video, enrolled, strangers, receiver = classroom
    url = server.url
    _start(url, 601, video, receiver.url)
    wait_for(lambda: {r["student_id"] for r in get(url, 601)["recognized_students"]} >= {n for n, *_ in enrolled},
             40, "the two enrolled people")
    wait_for(lambda: len(requests.get(f"{url}/api/v1/sessions/601/review", timeout=10).json()["items"]) >= 2, 40,
             "review items for the two strangers")
    time.sleep(12)  # the strangers leave and come back a few more times: still one item each
    items = requests.get(f"{url}/api/v1/sessions/601/review", params={"status": "open"}, timeout=10).json()["items"]
    assert len(items) == 2, items
    assert all(i["tracks"] >= 2 for i in items), items  # they came back, and were merged into their item
    print(f"2 strangers: {len(items)} open items, from {[i['tracks'] for i in items]} unnamed tracks")
    assert all(i["evidence_id"] and i["reason"] in ("near_miss", "below_threshold", "ambiguous") for i in items), items
    assert all(1 <= len(i["candidates"]) <= 3 for i in items)
    threshold = requests.get(f"{url}/health", timeout=10).json()["recognition"]["threshold"]
    for i in items:  # the review band: near_miss exactly when the closest student is within 0.1 of the threshold
        if i["reason"] in ("near_miss", "below_threshold"):
            assert (i["reason"] == "near_miss") == (i["candidates"][0]["similarity"] >= threshold - 0.1), i
    first, second = items
    # hostile or wrong actions change nothing
    for body in ({"action": "confirm"}, {"action": "reject", "student_id": "x"}, {"action": "delete"},
                 {"action": "confirm", "student_id": "not ok!"}, [], {"action": "confirm", "student_id": "a",
                                                                       "extra": 1}):
        r = requests.post(f"{url}/api/v1/sessions/601/review/{first['item_id']}", json=body, timeout=10)
        assert r.status_code in (400, 422), (body, r.text)
    r = requests.post(f"{url}/api/v1/sessions/601/review/not-a-uuid", json={"action": "reject"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "review_item_not_found"

    confirmed_at = time.monotonic()
    r = requests.post(f"{url}/api/v1/sessions/601/review/{first['item_id']}", timeout=60,
                      json={"action": "confirm", "student_id": "new_kid", "name": "New Kid", "enrol": True})
    assert r.status_code == 200, r.text
    assert r.json()["recognition_created"] and r.json()["face_id"] and r.json()["item"]["status"] == "confirmed"
    student = requests.get(f"{url}/api/v1/students/new_kid", timeout=10).json()
    assert student["face_count"] == 1 and student["name"] == "New Kid"
    again = requests.post(f"{url}/api/v1/sessions/601/review/{first['item_id']}", json={"action": "reject"},
                          timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_item_resolved"
    reviewed = wait_for(lambda: [i for b in receiver.accepted() if b["type"] == "recognition"
                                 for i in b["recognitions"] if i.get("source") == "review"], 30,
                        "the review's recognition callback")
    delay = time.monotonic() - confirmed_at
    assert [i["student_id"] for i in reviewed] == ["new_kid"] and reviewed[0]["item_id"] == first["item_id"]
    print(f"confirm to callback: {delay:.2f} s")
    session = get(url, 601)
    assert "new_kid" in {r["student_id"] for r in session["recognized_students"]}

    r = requests.post(f"{url}/api/v1/sessions/601/review/{second['item_id']}", json={"action": "reject"},
                      timeout=10)
    assert r.status_code == 200 and r.json()["impostor_pairs"] == len(second["candidates"]), r.text
    requests.post(f"{url}/api/v1/sessions/601/stop", timeout=10)

    # a later session names the confirmed student by themselves, with no new item for them
    _start(url, 602, video, receiver.url)
    wait_for(lambda: "new_kid" in {r["student_id"] for r in get(url, 602)["recognized_students"]}, 40,
             "the confirmed student recognised by the camera")
    assert get(url, 602)["open_review_items"] <= 1  # only the rejected stranger is left to review
    requests.post(f"{url}/api/v1/sessions/602/stop", timeout=10)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT actor, action FROM audit_log WHERE action LIKE 'review.%' ORDER BY id")
        assert cur.fetchall() == [("anonymous", "review.confirm"), ("anonymous", "review.reject")]

    # erasing the student takes the item confirmed as them, and them out of other items' candidates
    assert requests.delete(f"{url}/api/v1/students/new_kid", timeout=30).status_code in (200, 204)
    assert requests.get(f"{url}/api/v1/sessions/601/review", params={"status": "confirmed"},
                        timeout=10).json()["items"] == []
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM review_items WHERE candidates::text LIKE '%new_kid%'")
        assert cur.fetchone()[0] == 0

    # calibrate.py counts the rejected item's impostor pairs
    env = {**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK)}
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "calibrate.py"), "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["reviewed_impostor_pairs"] == len(second["candidates"])
