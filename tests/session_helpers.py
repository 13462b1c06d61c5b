"""Helpers of the session and callback tests: start sessions, enrol the cast, poll, read events."""

from __future__ import annotations

import time

import cv2
import psycopg2
import requests
from devtools.streams import BBT, still_frames

FAST = {"SESSION_LEASE_S": 4, "SESSION_POLL_S": 0.5, "CAMERA_RETRY_BASE_S": 0.3, "CAMERA_RETRY_MAX_S": 2,
        "CAMERA_OPEN_TIMEOUT_S": 3, "CAMERA_READ_TIMEOUT_S": 3, "LOG_LEVEL": "INFO"}
CAST = sorted(p.name for p in (BBT / "portraits").iterdir() if p.is_dir())


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Poll until check() returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def enrol(url: str, names=CAST) -> None:
    for name in names:
        photos = sorted((BBT / "portraits" / name).iterdir())[:3]
        files = [("image", (p.name, p.read_bytes())) for p in photos]
        r = requests.post(f"{url}/api/v1/students/{name}/faces", files=files, data={"name": name.replace("_", " ")},
                          timeout=60)
        assert r.status_code == 201, r.text


def cast_in_stills(url: str) -> set[str]:
    """Who /recognize finds in the stills the cameras show: what a session must find, each once."""
    found = set()
    for frame in still_frames():
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        r = requests.post(f"{url}/api/v1/recognize", files={"image": ("s.jpg", jpeg)}, timeout=60)
        found |= {f["student_id"] for f in r.json()["faces"] if f["student_id"]}
    return found


def get(url: str, slot: int) -> dict:
    r = requests.get(f"{url}/api/v1/sessions/{slot}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def start(url: str, slot: int, cameras: list[tuple[int, str]], **extra) -> dict:
    body = {"slot_id": slot, "cameras": [{"camera_id": c, "url": u} for c, u in cameras],
            "callback_url": "http://127.0.0.1:9/callback", **extra}
    r = requests.post(f"{url}/api/v1/sessions", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def owner_pid(session: dict) -> int | None:
    return int(session["owner"].split(":")[1]) if session.get("owner") else None


def recognition_events(database_url: str, slot: int) -> list[str]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT e.payload->>'student_id' FROM events e JOIN sessions s USING (session_id)
                       WHERE s.slot_id = %s AND e.type = 'recognition'""", (slot,))
        return [r[0] for r in cur.fetchall()]


def status_events(database_url: str, slot: int) -> list[dict]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT e.payload FROM events e JOIN sessions s USING (session_id)
                       WHERE s.slot_id = %s AND e.type = 'session_status' ORDER BY e.id""", (slot,))
        return [r[0] for r in cur.fetchall()]


def people_shown(url: str, count: int, *, min_photos: int = 3, headers: dict | None = None) -> list[tuple]:
    """The first `count` identities of ../shared/faces whose first photo holds exactly one face, as
    (name, photos, that photo decoded, its face box): the first photo is shown to cameras, the others enrolled."""
    import numpy as np
    from devtools.shared import IDENTITIES

    found = []
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir()):
        photos = sorted(person.iterdir())
        if len(photos) < min_photos:
            continue
        shown = photos[0].read_bytes()
        r = requests.post(url + "/api/v1/embeddings", files={"image": ("p.jpg", shown)}, headers=headers or {},
                          timeout=60)
        faces = r.json().get("faces") or []
        if len(faces) == 1:
            found.append((person.name, photos, cv2.imdecode(np.frombuffer(shown, np.uint8), cv2.IMREAD_COLOR),
                          faces[0]["bbox"]))
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} usable identities in ../shared/faces")


class MemoryRecorder:
    """The recorder's interface, keeping what the worker reports."""

    def __init__(self):
        self.sightings, self.states, self.reviews, self.previews = [], [], [], []

    def sighting(self, camera_id, seen):
        self.sightings.append(seen)

    def camera_state(self, *args):
        self.states.append(args)

    def review(self, camera_id, **item):
        self.reviews.append(item)

    def preview(self, camera_id, view):
        self.previews.append(view)
