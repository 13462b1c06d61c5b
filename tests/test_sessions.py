"""Recognition sessions end to end: real RTSP/MJPEG/file cameras, real Gunicorn processes, real PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

import psutil
import psycopg2
import pytest
import requests
from devtools.receiver import Receiver
from devtools.servers import Server
from devtools.streams import MjpegCamera, RtspCamera, build_video, free_port
from PIL import Image
from session_helpers import (
    FAST,
    cast_in_stills,
    enrol,
    get,
    owner_pid,
    recognition_events,
    start,
    status_events,
    wait_for,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return build_video(tmp_path_factory.mktemp("video") / "classroom.mp4")


@pytest.fixture
def rtsp(video):
    camera = RtspCamera(video).start()
    yield camera
    camera.stop()


@pytest.fixture
def servers(gunicorn_servers):
    return lambda **env: gunicorn_servers(**{**FAST, **env})


def test_session_recognises_the_cast_once_from_rtsp_mjpeg_and_file_cameras(servers, rtsp, video, database_url):
    server = servers(WORKERS=1)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    assert len(expected) >= 5, expected  # the stills show most of the cast
    mjpeg = MjpegCamera()
    try:
        created = start(server.url, 101, [(1, rtsp.url), (2, mjpeg.url), (3, str(video))], frame_interval_ms=200,
                        mode="attendance", callback_type="class")
        assert created["status"] in ("starting", "running") and created["mode"] == "attendance"
        dup = requests.post(f"{server.url}/api/v1/sessions", timeout=10,
                            json={"slot_id": 101, "cameras": [{"camera_id": 1, "url": rtsp.url}],
                                  "callback_url": "http://127.0.0.1:9/cb"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "session_exists"

        session = wait_for(lambda: (s := get(server.url, 101))["recognition_count"] >= len(expected) and s,
                           90, "every cast member seen in the stills to be recognised")
        time.sleep(3)  # more frames of the same people must not add recognitions
        session = get(server.url, 101)
        runner = requests.get(f"{server.url}/health", timeout=10).json()["sessions"]
        assert runner["runner_alive"] and runner["running_here"] == 1 and session["owner"] == runner["runner_id"]
    finally:
        mjpeg.stop()
    recognised = [r["student_id"] for r in session["recognized_students"]]
    assert set(recognised) == expected
    assert len(recognised) == len(set(recognised))
    assert sorted(recognition_events(database_url, 101)) == sorted(expected)  # one event per student
    assert session["status"] == "running" and session["active_camera_ids"] == [1, 2, 3]
    for camera in session["cameras"]:
        assert camera["frames"] > 0 and camera["faces_detected"] > 0, camera
        # the motion gate: each still is held 2 s (10 frames), the detector runs when the picture changes
        assert camera["detector_runs"] < camera["frames"] / 2, camera
        assert camera["faces_embedded"] <= camera["faces_detected"], camera
    for item in session["recognized_students"]:
        assert item["name"] == item["student_id"].replace("_", " ")
        for kind in ("face", "frame"):
            r = requests.get(f"{server.url}/api/v1/sessions/101/evidence/{item['evidence_id']}",
                             params={"kind": kind}, timeout=10)
            assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
            assert Image.open(io.BytesIO(r.content)).format == "JPEG"
            # faces of children: never kept by a shared cache, never sniffed as something else
            assert r.headers["Cache-Control"] == "private, no-store"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    evidence_dir = server.log_path.parent / "data" / "evidence"
    assert evidence_dir.stat().st_mode & 0o777 == 0o700
    for path in evidence_dir.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    missing = requests.get(f"{server.url}/api/v1/sessions/101/evidence/{uuid.uuid4()}", timeout=10)
    assert missing.status_code == 404

    stopped = requests.post(f"{server.url}/api/v1/sessions/101/stop", timeout=10)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert requests.post(f"{server.url}/api/v1/sessions/999/stop", timeout=10).status_code == 404
    events = [e["event"] for e in status_events(database_url, 101)]
    assert events[0] == "started" and events[-1] == "stopped"
    # the slot can run again once stopped
    assert start(server.url, 101, [(1, str(video))])["status"] in ("starting", "running")


def test_invalid_session_requests_are_refused_and_change_nothing(servers):
    server = servers(WORKERS=1)
    url = server.url + "/api/v1/sessions"
    good = {"slot_id": 5, "cameras": [{"camera_id": 1, "url": "rtsp://10.0.0.5/stream"}],
            "callback_url": "https://backend.example/cb"}
    cases = {
        "slot_id": {**good, "slot_id": "five"},
        "cameras": {**good, "cameras": []},
        "cameras.0.url": {**good, "cameras": [{"camera_id": 1, "url": "ftp://x/y"}]},
        "callback_url": {**good, "callback_url": "javascript:alert(1)"},
        "student_ids": {**good, "student_ids": ["ok", "not ok!"]},
        "threshold": {**good, "threshold": 3},
        "frame_interval_ms": {**good, "frame_interval_ms": -1},
        "detection": {**good, "detection": "sideways"},
        "cameras.0.detection": {**good, "cameras": [{**good["cameras"][0], "detection": "everywhere"}]},
        "cameras.0.min_face_px": {**good, "cameras": [{**good["cameras"][0], "min_face_px": -3}]},
        # a region of interest: points are fractions of the frame, at least 3, enclosing an area
        "cameras.0.roi": {**good, "cameras": [{**good["cameras"][0], "roi": [[0, 0], [0.5, 0]]}]},
        "cameras.0.roi.1.0": {**good, "cameras": [{**good["cameras"][0], "roi": [[0, 0], [1.5, 0], [0, 1]]}]},
        "cameras.0.roi.2": {**good, "cameras": [{**good["cameras"][0], "roi": [[0, 0], [1, 0], "x"]}]},
        # a planned end says its time zone, is to come and within SESSION_MAX_DURATION_S (12 h)
        "ends_at": {**good, "ends_at": "2031-01-01T10:00:00"},
        "duration_s": {**good, "duration_s": 0},
    }
    for body, field, words in [({**good, "ends_at": "2020-01-01T10:00:00+07:00"}, "ends_at", "passed"),
                               ({**good, "duration_s": 13 * 3600}, "duration_s", "at most 43200 s"),
                               ({**good, "ends_at": "2031-01-01T10:00:00Z"}, "ends_at", "SESSION_MAX_DURATION_S")]:
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
        assert words in r.json()["error"]["message"], r.text
    both = requests.post(url, json={**good, "ends_at": "2031-01-01T10:00:00Z", "duration_s": 60}, timeout=10)
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"], both.text
    flat = {**good, "cameras": [{**good["cameras"][0], "roi": [[0, 0], [0.5, 0.5], [1, 1]]}]}  # no area
    r = requests.post(url, json=flat, timeout=10)
    assert r.status_code == 422 and "encloses" in r.json()["error"]["message"], r.text
    for field, body in cases.items():
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["error"]["field"] == field
    dup = {**good, "cameras": [{"camera_id": 1, "url": "a.mp4"}, {"camera_id": 1, "url": "b.mp4"}]}
    assert requests.post(url, json=dup, timeout=10).status_code == 422
    assert requests.post(url, data="nope", timeout=10).status_code == 400
    assert requests.get(url, timeout=10).json()["total"] == 0
    assert requests.get(url + "/5", timeout=10).status_code == 404


def test_unanswering_cameras_go_offline_and_a_session_fails_when_all_stay_offline_past_the_grace(
        servers, video, database_url):
    grace = 4
    server = servers(WORKERS=1, CAMERA_MAX_FAILURES=2, CAMERA_OFFLINE_GRACE_S=grace)
    closed = free_port()
    start(server.url, 201, [(1, str(video)), (2, f"rtsp://127.0.0.1:{closed}/none")], frame_interval_ms=500)
    session = wait_for(lambda: (s := get(server.url, 201))["offline_camera_ids"] == [2] and s, 30, "camera 2 offline")
    assert session["status"] == "running" and session["active_camera_ids"] == [1]
    camera = session["cameras"][1]
    assert camera["status"] == "offline" and camera["offline_since"] and camera["last_error"]
    warnings = requests.get(f"{server.url}/health", timeout=10).json().get("warnings", [])
    assert any("offline" in w and "slot 201 camera 2" in w for w in warnings), warnings
    # still retried (the session lives on its other camera, past the grace)
    failures = camera["failures"]
    wait_for(lambda: get(server.url, 201)["cameras"][1]["failures"] > failures + 1, 20, "camera 2 to be retried")
    time.sleep(grace)
    assert get(server.url, 201)["status"] == "running"

    # camera 3 accepts the connection and never answers: only the open timeout gets the thread out
    black_hole = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        start(server.url, 202, [(1, f"rtsp://127.0.0.1:{closed}/a"), (2, f"http://127.0.0.1:{closed}/b.mjpg"),
                                (3, f"rtsp://127.0.0.1:{black_hole.getsockname()[1]}/silent")])
        session = wait_for(lambda: (s := get(server.url, 202))["status"] == "failed" and s, 40, "session 202 to fail")
    finally:
        black_hole.close()
    assert session["reason"] == "all_cameras_failed" and session["failed_camera_ids"] == [1, 2, 3]
    assert session["stopped_at"] is not None
    events = status_events(database_url, 202)
    offline = [e for e in events if e["event"] == "camera_offline"]
    assert sorted(e["camera_id"] for e in offline) == [1, 2, 3]
    assert all(e["camera_status"] == "offline" and e["reason"] for e in offline)
    assert events[-1]["event"] == "failed" and events[-1]["reason"] == "all_cameras_failed"
    # failed only after the last camera had been offline for the grace
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT extract(epoch FROM s.stopped_at - max(e.created_at))
                       FROM sessions s JOIN events e USING (session_id)
                       WHERE s.slot_id = 202 AND e.payload->>'event' = 'camera_offline' GROUP BY s.stopped_at""")
        assert cur.fetchone()[0] >= grace
    # a failed session frees its slot
    assert start(server.url, 202, [(1, str(video))])["status"] in ("starting", "running")


def test_a_camera_rebooting_for_60_s_goes_offline_and_its_session_goes_on(servers, rtsp, database_url):
    """A PoE camera reboots: the RTSP server is killed for 60 s mid-session and restarted at the same address.
    Production's failure count and grace (CAMERA_MAX_FAILURES 5, CAMERA_OFFLINE_GRACE_S 300)."""
    receiver = Receiver()
    try:
        server = servers(WORKERS=2, CALLBACK_FLUSH_MS=300, CALLBACK_POLL_S=0.2)
        enrol(server.url)
        expected = cast_in_stills(server.url)
        late = sorted(expected)[0]  # enrolled during the outage: recognised only if recognition resumed
        requests.delete(f"{server.url}/api/v1/students/{late}", timeout=10)
        start(server.url, 301, [(7, rtsp.url)], frame_interval_ms=200, callback_url=receiver.url)
        wait_for(lambda: get(server.url, 301)["recognition_count"] >= len(expected) - 1, 90,
                 "recognitions before the outage")

        rtsp.stop()
        killed = time.monotonic()
        session = wait_for(lambda: (s := get(server.url, 301))["cameras"][0]["status"] == "offline" and s, 45,
                           "the camera to be offline")
        assert session["status"] == "running" and session["offline_camera_ids"] == [7]
        assert session["cameras"][0]["last_error"] and session["cameras"][0]["offline_since"]
        enrol(server.url, [late])
        time.sleep(max(0.0, 60 - (time.monotonic() - killed)))
        assert get(server.url, 301)["status"] == "running"
        rtsp.start()  # same port
        session = wait_for(lambda: (s := get(server.url, 301))["cameras"][0]["status"] == "active" and s, 30,
                           "the camera to be back")
        assert session["cameras"][0]["failures"] == 0 and session["offline_camera_ids"] == []
        frames = session["cameras"][0]["frames"]
        session = wait_for(lambda: (s := get(server.url, 301))["recognition_count"] == len(expected) and s, 60,
                           f"{late} to be recognised after the restart")
        assert late in [r["student_id"] for r in session["recognized_students"]] and session["status"] == "running"
        wait_for(lambda: get(server.url, 301)["cameras"][0]["frames"] > frames, 10, "frames counted after the restart")
        assert sorted(recognition_events(database_url, 301)) == sorted(expected)  # no one twice

        def camera_events():
            return [(b["event"], b.get("camera_status")) for b in receiver.accepted()
                    if b["type"] == "session_status" and b.get("camera_id") == 7]

        events = wait_for(lambda: len(camera_events()) >= 2 and camera_events(), 20, "both camera callbacks")
        assert events == [("camera_offline", "offline"), ("camera_recovered", "active")], events
    finally:
        receiver.close()


def test_a_frozen_stream_times_out_and_is_reconnected_when_it_resumes(servers, rtsp):
    server = servers(WORKERS=1, CAMERA_MAX_FAILURES=100)
    start(server.url, 351, [(1, rtsp.url)], frame_interval_ms=200)
    wait_for(lambda: get(server.url, 351)["cameras"][0]["frames"] > 5, 30, "frames")
    rtsp.proc.send_signal(signal.SIGSTOP)  # the server hangs: connection open, no data
    try:
        frozen_at = time.monotonic()
        session = wait_for(lambda: (s := get(server.url, 351))["cameras"][0]["failures"] > 0 and s,
                           FAST["CAMERA_READ_TIMEOUT_S"] * 3 + 10, "the read timeout to end the frozen read")
        # FFmpeg hands out the frames it had buffered, and its interrupt can fire twice before read fails
        assert time.monotonic() - frozen_at < FAST["CAMERA_READ_TIMEOUT_S"] * 3 + 5
        assert session["cameras"][0]["last_error"]
    finally:
        rtsp.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: get(server.url, 351)["cameras"][0]["failures"] == 0, 40, "the camera to reconnect")
    frames = get(server.url, 351)["cameras"][0]["frames"]
    wait_for(lambda: get(server.url, 351)["cameras"][0]["frames"] > frames, 20, "frames after the reconnection")


def _log_pid(server: Server, request_id: str) -> int:
    for line in server.log_path.read_text(errors="replace").splitlines():
        if request_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("request_id") == request_id and entry.get("route"):
                return entry["pid"]
    raise AssertionError(f"no access line for {request_id}")


def test_a_session_ends_by_itself_at_its_planned_end_on_another_server(servers, video, database_url):
    """The backend forgets `stop`: the session ends at duration_s, ended by the server running its cameras
    while the server that started it (API only) is gone."""
    receiver = Receiver()
    try:
        api = servers(WORKERS=1, SESSIONS_ENABLED="false")
        runner = servers(WORKERS=2, CALLBACK_FLUSH_MS=300, CALLBACK_POLL_S=0.2)
        created = start(api.url, 451, [(1, str(video))], frame_interval_ms=300, duration_s=10,
                        callback_url=receiver.url)
        started_at = datetime.fromisoformat(created["started_at"])
        assert datetime.fromisoformat(created["ends_at"]) - started_at == timedelta(seconds=10)
        api.stop()
        wait_for(lambda: get(runner.url, 451)["cameras"][0]["frames"] > 0, 20, "the runner to process frames")
        session = wait_for(lambda: (s := get(runner.url, 451))["status"] == "stopped" and s, 30, "the planned end")
        assert session["reason"] == "ended"
        late = (datetime.fromisoformat(session["stopped_at"]) - started_at).total_seconds() - 10
        assert 0 <= late < 5, late
        ended = wait_for(lambda: [b for b in receiver.accepted() if b["type"] == "session_status"
                                  and b["event"] == "stopped"], 20, "the stopped callback")
        assert [b["reason"] for b in ended] == ["ended"]
        time.sleep(FAST["SESSION_POLL_S"] * 4)  # its owner stops the cameras
        frames = get(runner.url, 451)["cameras"][0]["frames"]
        time.sleep(2)
        assert get(runner.url, 451)["cameras"][0]["frames"] == frames
        # a session started without an end ends at the maximum; a planned end with an offset is kept as given
        at = (datetime.now(timezone(timedelta(hours=7))) + timedelta(hours=2)).replace(microsecond=0)
        planned = start(runner.url, 452, [(1, str(video))], ends_at=at.isoformat())
        assert datetime.fromisoformat(planned["ends_at"]) == at
        default = start(runner.url, 453, [(1, str(video))])
        span = datetime.fromisoformat(default["ends_at"]) - datetime.fromisoformat(default["started_at"])
        assert span == timedelta(hours=12)
    finally:
        receiver.close()


def test_stop_answered_by_another_worker_stops_the_owners_cameras(servers, video):
    server = servers(WORKERS=2)
    for attempt in range(30):
        slot = 400 + attempt
        start(server.url, slot, [(1, str(video))], frame_interval_ms=300)
        owner = wait_for(lambda s=slot: owner_pid(get(server.url, s)), 20, "a worker to own the session")
        wait_for(lambda s=slot: get(server.url, s)["status"] == "running", 20, "the session to run")
        request_id = uuid.uuid4().hex
        r = requests.post(f"{server.url}/api/v1/sessions/{slot}/stop", headers={"X-Request-ID": request_id},
                          timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "stopped"
        if _log_pid(server, request_id) != owner:
            break
    else:
        pytest.fail("every stop landed on the owning worker")
    # the owner notices and stops its cameras: its frame counter stops moving
    time.sleep(FAST["SESSION_POLL_S"] * 4)
    frames = get(server.url, slot)["cameras"][0]["frames"]
    time.sleep(2)
    final = get(server.url, slot)
    assert final["cameras"][0]["frames"] == frames and final["owner"] is None
    assert f"session of slot {slot} is no longer owned here" in server.log_path.read_text()


def test_sigkill_of_the_owner_moves_the_session_within_the_lease_without_duplicates(servers, rtsp, database_url):
    lease = 10.0  # the default
    server = servers(WORKERS=2, SESSION_LEASE_S=lease, SESSION_POLL_S=1.0)
    enrol(server.url)
    expected = cast_in_stills(server.url)
    start(server.url, 501, [(1, rtsp.url)], frame_interval_ms=200)
    wait_for(lambda: get(server.url, 501)["recognition_count"] >= 2, 60, "first recognitions")
    victim = owner_pid(get(server.url, 501))
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    session = wait_for(lambda: (s := get(server.url, 501))["owner"] and owner_pid(s) != victim and s, lease + 10,
                       "another worker to take the session over")
    takeover = time.monotonic() - killed_at
    assert takeover <= lease + 2, takeover
    assert psutil.pid_exists(owner_pid(session))
    print(f"\ntakeover after SIGKILL: {takeover:.1f} s (lease {lease} s)")
    session = wait_for(lambda: (s := get(server.url, 501))["recognition_count"] == len(expected) and s, 90,
                       "the rest of the cast after the takeover")
    recognised = [r["student_id"] for r in session["recognized_students"]]
    assert sorted(recognised) == sorted(expected)
    assert sorted(recognition_events(database_url, 501)) == sorted(expected)  # no duplicate after the takeover


def test_two_servers_share_sessions_and_take_over_when_one_dies(servers, video):
    a = servers(WORKERS=1)
    b = servers(WORKERS=1)
    for slot in range(601, 605):
        start(a.url if slot % 2 else b.url, slot, [(1, str(video))], frame_interval_ms=500)
    workers = {srv: {c.pid for c in psutil.Process(srv.proc.pid).children()} for srv in (a, b)}

    def owners():
        return [owner_pid(get(a.url, slot)) for slot in range(601, 605)]

    wait_for(lambda: all(owners()), 20, "every session to be owned")
    by_server = {srv: sum(pid in workers[srv] for pid in owners()) for srv in (a, b)}
    assert by_server[a] == 2 and by_server[b] == 2, by_server  # spread evenly

    for pid in workers[b] | {b.proc.pid}:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(pid in workers[a] for pid in owners()), FAST["SESSION_LEASE_S"] + 10,
             "server a to take over server b's sessions")
    wait_for(lambda: all(get(a.url, s)["status"] == "running" for s in range(601, 605)), 10, "all sessions running")


def test_restarting_the_service_resumes_running_sessions(servers, video, database_url, tmp_path):
    server = servers(WORKERS=2)
    for slot in (701, 702):
        start(server.url, slot, [(1, str(video))], frame_interval_ms=300)
    wait_for(lambda: all(get(server.url, s)["status"] == "running" for s in (701, 702)), 20, "sessions running")
    assert server.stop() == 0  # graceful: cameras stop, leases released, sessions stay running
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, owner FROM sessions ORDER BY slot_id")
        assert cur.fetchall() == [("running", None), ("running", None)]
        cur.execute("SELECT sum(frames) FROM session_cameras")
        frames = cur.fetchone()[0]

    again = Server("gunicorn", database_url, tmp_path, **{**FAST, "WORKERS": 2}).wait_ready(90)
    try:
        wait_for(lambda: all(owner_pid(get(again.url, s)) for s in (701, 702)), 15, "sessions to be resumed")
        wait_for(lambda: sum(get(again.url, s)["cameras"][0]["frames"] for s in (701, 702)) > frames, 15,
                 "cameras to process frames again")
    finally:
        again.kill()


def test_expired_evidence_is_swept_and_recognitions_stay(servers, video, database_url):
    server = servers(WORKERS=1, EVIDENCE_RETENTION_DAYS=30, EVIDENCE_SWEEP_S=1)
    enrol(server.url)
    start(server.url, 801, [(1, str(video))], frame_interval_ms=200)
    session = wait_for(lambda: (s := get(server.url, 801))["recognition_count"] >= 3 and s, 60, "recognitions")
    evidence_dir = server.log_path.parent / "data" / "evidence"
    files = sorted(evidence_dir.rglob("*.jpg"))
    assert len(files) >= 6  # a face crop and a frame per recognition
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE evidence SET created_at = now() - interval '31 days'")
        aged = cur.rowcount
    wait_for(lambda: not any(f.exists() for f in files), 20, "the aged evidence files to be removed")
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM evidence WHERE created_at < now() - interval '30 days'")
        assert cur.fetchone()[0] == 0 and aged >= 3
    old = session["recognized_students"][0]
    gone = requests.get(f"{server.url}/api/v1/sessions/801/evidence/{old['evidence_id']}", timeout=10)
    assert gone.status_code == 404
    after = get(server.url, 801)
    assert after["recognition_count"] >= session["recognition_count"]  # the recognitions themselves stay
    assert {r["student_id"] for r in session["recognized_students"]} <= {r["student_id"] for r in
                                                                         after["recognized_students"]}


@pytest.fixture
def full_disk(tmp_path):
    """DATA_DIR/evidence on a tiny tmpfs filled to the last byte: a real ENOSPC (needs root to mount)."""
    target = tmp_path / "data" / "evidence"
    target.mkdir(parents=True)
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=4m tmpfs {target} 2>/dev/null") != 0:
        pytest.skip("mounting a tmpfs needs root")
    filler = target / "filler"
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    except OSError:
        pass
    yield target
    os.system(f"umount -l {target}")


def test_full_disk_skips_evidence_but_records_the_recognition(servers, video, full_disk):
    server = servers(WORKERS=1)
    enrol(server.url)
    start(server.url, 802, [(1, str(video))], frame_interval_ms=200)
    session = wait_for(lambda: (s := get(server.url, 802))["recognition_count"] >= 2 and s, 60, "recognitions")
    assert all(r["evidence_id"] is None for r in session["recognized_students"])
    assert "evidence not saved" in server.log_path.read_text()
    assert [p.name for p in full_disk.rglob("*") if p.is_file()] == ["filler"]  # no partial files left behind
    (full_disk / "filler").unlink()  # space again: the next students get evidence
    before = {r["student_id"] for r in session["recognized_students"]}
    requests.post(f"{server.url}/api/v1/sessions/802/stop", timeout=10)
    start(server.url, 803, [(1, str(video))], frame_interval_ms=200)
    later = wait_for(lambda: (s := get(server.url, 803))["recognition_count"] >= 2 and s, 60, "recognitions")
    assert all(r["evidence_id"] for r in later["recognized_students"]), before


def test_waitress_runs_sessions_and_releases_them_on_sigterm(database_url, tmp_path, video):
    server = Server("waitress", database_url, tmp_path, **FAST).wait_ready(90)
    try:
        enrol(server.url)
        start(server.url, 901, [(1, str(video))], frame_interval_ms=200)
        session = wait_for(lambda: (s := get(server.url, 901))["recognition_count"] >= 2 and s, 60, "recognitions")
        assert owner_pid(session) == server.proc.pid  # one process: Waitress's own
        assert server.stop() == 0
    finally:
        server.kill()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, owner FROM sessions WHERE slot_id = 901")
        assert cur.fetchone() == ("running", None)  # cameras stopped, lease released for the next start
