"""Callbacks end to end: a real HTTP receiver on loopback, real Gunicorn processes, real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from datetime import datetime

import psycopg2
import pytest
import requests
from devtools.receiver import Receiver
from devtools.streams import build_video
from session_helpers import FAST, cast_in_stills, enrol, get, start, wait_for

SECRET = "test-callback-secret"
QUICK = {**FAST, "CALLBACK_SECRET": SECRET, "CALLBACK_FLUSH_MS": 300, "CALLBACK_POLL_S": 0.2,
         "CALLBACK_RETRY_BASE_S": 0.5, "CALLBACK_RETRY_MAX_S": 2, "CALLBACK_READ_TIMEOUT_S": 3}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return build_video(tmp_path_factory.mktemp("video") / "classroom.mp4")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def servers(gunicorn_servers):
    return lambda **env: gunicorn_servers(**{**QUICK, **env})


def deliveries(database_url: str) -> list[tuple]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id::text, type, status, attempts FROM deliveries ORDER BY delivery_id")
        return cur.fetchall()


def recognised_items(bodies: list[dict]) -> list[dict]:
    return [item for b in bodies if b["type"] == "recognition" for item in b["recognitions"]]


def insert_recognition_events(database_url: str, slot: int, n: int) -> None:
    """Many recognition events at once, as a large class would produce (the outbox's input)."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT session_id FROM sessions WHERE slot_id = %s", (slot,))
        session_id = cur.fetchone()[0]
        for i in range(n):
            payload = {"student_id": f"s{i:04d}", "name": f"Student {i}", "similarity": 0.6, "camera_id": 1,
                       "recognized_at": datetime.now().astimezone().isoformat(), "evidence_id": None}
            cur.execute("INSERT INTO events (event_id, session_id, type, payload) VALUES (%s, %s, 'recognition', %s)",
                        (str(uuid.uuid4()), session_id, json.dumps(payload)))


def test_events_are_delivered_signed_and_batched(servers, receiver, video, database_url):
    server = servers(WORKERS=1)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    start(server.url, 11, [(1, str(video))], frame_interval_ms=200, callback_url=receiver.url, mode="attendance",
          callback_type="class")
    wait_for(lambda: len(recognised_items(receiver.accepted())) >= len(expected), 90, "recognition callbacks")
    requests.post(f"{server.url}/api/v1/sessions/11/stop", timeout=10)
    wait_for(lambda: any(b.get("event") == "stopped" for b in receiver.accepted()), 20, "the stopped callback")

    bodies = receiver.accepted()
    assert [b["event"] for b in bodies if b["type"] == "session_status"] == ["started", "stopped"]
    items = recognised_items(bodies)
    assert sorted(i["student_id"] for i in items) == sorted(expected)
    for _status, headers, body, raw in receiver.all():
        assert body["event_id"] == headers["X-Recognizer-Event-Id"]
        assert body["slot_id"] == 11 and body["mode"] == "attendance" and body["callback_type"] == "class"
        timestamp = headers["X-Recognizer-Timestamp"]
        assert datetime.fromisoformat(timestamp).tzinfo is not None
        assert datetime.fromisoformat(body["sent_at"]) == datetime.fromisoformat(timestamp)
        expected_sig = hmac.new(SECRET.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Recognizer-Signature"], "sha256=" + expected_sig)
    for item in items:
        assert datetime.fromisoformat(item["recognized_at"]).tzinfo is not None
        evidence = requests.get(item["evidence_url"], timeout=10)
        assert evidence.status_code == 200 and evidence.headers["Content-Type"] == "image/jpeg"
    session = get(server.url, 11)
    assert session["last_success_time"] is not None and session["callback_failures"] == 0
    listed = requests.get(f"{server.url}/api/v1/sessions/11/events?status=delivered", timeout=10).json()["events"]
    assert {e["event_id"] for e in listed} == {b["event_id"] for b in bodies}
    page = requests.get(f"{server.url}/metrics", timeout=10).text
    metric = 'recognizer_callbacks_total{outcome="delivered"}'
    delivered = [line for line in page.splitlines() if line.startswith(metric)]
    assert delivered and float(delivered[0].split()[-1]) == len(bodies)

    # a large class: 250 recognitions go out in POSTs of at most 100
    start(server.url, 12, [(1, "rtsp://127.0.0.1:9/none")], callback_url=receiver.url)
    insert_recognition_events(database_url, 12, 250)
    wait_for(lambda: len(recognised_items([b for b in receiver.accepted() if b["slot_id"] == 12])) == 250, 30,
             "250 recognitions")
    sizes = [len(b["recognitions"]) for b in receiver.accepted() if b["slot_id"] == 12 and b["type"] == "recognition"]
    assert max(sizes) == 100 and sum(sizes) == 250 and len(sizes) == 3, sizes


def test_receiver_failing_for_30_s_loses_nothing(servers, receiver, video, database_url):
    server = servers(WORKERS=2)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    receiver.status = 500
    start(server.url, 21, [(1, str(video))], frame_interval_ms=200, callback_url=receiver.url)
    failing_since = time.monotonic()
    wait_for(lambda: get(server.url, 21)["recognition_count"] == len(expected), 60, "recognitions during the outage")
    time.sleep(max(0.0, 30 - (time.monotonic() - failing_since)))
    assert get(server.url, 21)["callback_failures"] > 0
    receiver.status = 200
    wait_for(lambda: sorted(i["student_id"] for i in recognised_items(receiver.accepted())) == sorted(expected), 30,
             "every recognition after the receiver recovered")
    wait_for(lambda: all(d[2] == "delivered" for d in deliveries(database_url)), 10, "every delivery delivered")
    failed_ids = {b["event_id"] for s, _, b, _ in receiver.all() if s == 500}
    delivered = Counter(b["event_id"] for b in receiver.accepted())
    assert failed_ids and failed_ids <= set(delivered)  # each repeat carried the same event_id
    assert all(n == 1 for n in delivered.values())
    assert set(delivered) == {d[0] for d in deliveries(database_url)}


def test_events_wait_for_a_receiver_that_is_down_across_a_service_restart(servers, video, database_url, tmp_path):
    down = Receiver()
    port = down.port
    down.close()  # nothing listens: connection refused
    server = servers(WORKERS=1)
    enrol(server.url)
    start(server.url, 31, [(1, str(video))], frame_interval_ms=200, callback_url=f"http://127.0.0.1:{port}/callback")
    wait_for(lambda: get(server.url, 31)["recognition_count"] >= 3, 60, "recognitions")
    pending = wait_for(lambda: [d for d in deliveries(database_url) if d[2] == "pending"], 10, "pending deliveries")
    assert server.stop() == 0
    back = Receiver(port=port)
    try:
        again = servers(WORKERS=1)
        wait_for(lambda: {d[0] for d in pending} <= {b["event_id"] for b in back.accepted()}, 30,
                 "the events recorded before the restart")
        assert get(again.url, 31)["last_success_time"] is not None
    finally:
        back.close()


def test_a_400_is_a_dead_letter_at_once_and_redeliver_sends_it_again(servers, receiver, video, database_url):
    server = servers(WORKERS=1)
    receiver.status = 400
    start(server.url, 41, [(1, str(video))], frame_interval_ms=2000, callback_url=receiver.url)
    dead = wait_for(lambda: [d for d in deliveries(database_url) if d[2] == "dead"], 20, "a dead letter")
    assert dead[0][3] == 1  # one attempt, no retry storm
    time.sleep(2)
    assert len(receiver.all()) == 1
    listed = requests.get(f"{server.url}/api/v1/sessions/41/events?status=dead", timeout=10).json()["events"]
    assert [e["event_id"] for e in listed] == [dead[0][0]] and listed[0]["last_status"] == 400
    receiver.status = 200
    r = requests.post(f"{server.url}/api/v1/sessions/41/events/redeliver", timeout=10)
    assert r.status_code == 200 and r.json()["requeued"] == 1
    wait_for(lambda: receiver.accepted(), 10, "the redelivered event")
    assert receiver.accepted()[0]["event_id"] == dead[0][0]


def test_two_workers_and_a_second_server_never_deliver_an_event_twice(servers, receiver, video, database_url):
    a = servers(WORKERS=2)
    b = servers(WORKERS=2)
    for slot in range(51, 55):
        start((a if slot % 2 else b).url, slot, [(1, str(video))], frame_interval_ms=2000, callback_url=receiver.url)
        insert_recognition_events(database_url, slot, 150)
    wait_for(lambda: len(recognised_items(receiver.accepted())) >= 600, 60, "600 recognitions")
    total = wait_for(lambda: (d := deliveries(database_url)) and all(x[2] == "delivered" for x in d) and d, 30,
                     "every delivery delivered")
    time.sleep(1)  # anything sent twice would arrive now
    counts = Counter(b["event_id"] for b in receiver.accepted())
    assert len(counts) == len(total) and max(counts.values()) == 1, counts.most_common(3)
    items = Counter(i["event_id"] for i in recognised_items(receiver.accepted()))
    assert len(items) == 600 and max(items.values()) == 1


def test_recognition_keeps_its_speed_while_the_receiver_is_down(servers, video, database_url):
    server = servers(WORKERS=2)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    photo = (video.parent / "p.jpg")
    import cv2
    from devtools.streams import still_frames

    photo.write_bytes(cv2.imencode(".jpg", still_frames()[0])[1].tobytes())

    def latency() -> float:
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            requests.post(f"{server.url}/api/v1/recognize", files={"image": ("p.jpg", photo.read_bytes())}, timeout=60)
            times.append(time.perf_counter() - t0)
        return sorted(times)[5]

    before = latency()
    start(server.url, 61, [(1, str(video))], frame_interval_ms=200, callback_url="http://127.0.0.1:9/down")
    wait_for(lambda: get(server.url, 61)["recognition_count"] == len(expected), 60, "recognitions while down")
    during = latency()
    assert during < before * 2 + 0.1, (before, during)
    session = get(server.url, 61)
    assert session["callback_failures"] > 0 and session["last_success_time"] is None
    assert any(d[2] == "pending" for d in deliveries(database_url))
