"""A queue at a door camera: people one after another at the same spot, no empty frame between them.

The video is built here from ../shared/faces identity photos: each photo is scaled and shifted so the face
lands on the same box of the frame, shown for 1.2 s, then the next person. Played over RTSP (GStreamer)
to a real Gunicorn session. The session must recognise everyone /recognize names in those very frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import requests
from session_helpers import FAST, get, start, wait_for
from shared import IDENTITIES
from streams import RtspCamera

SIZE = (640, 480)
FACE_BOX = (250, 140, 390, 300)  # where every face of the queue is put (x1, y1, x2, y2)


def _largest_face(url: str, jpeg: bytes):
    r = requests.post(url + "/api/v1/embeddings", files={"image": ("p.jpg", jpeg)}, timeout=60)
    faces = r.json().get("faces") or []
    return faces[0]["bbox"] if len(faces) == 1 else None


def _at_the_spot(image: np.ndarray, bbox) -> np.ndarray:
    """The photo scaled and shifted so its face box covers FACE_BOX."""
    x1, y1, x2, y2 = bbox
    scale = (FACE_BOX[2] - FACE_BOX[0]) / max(x2 - x1, 1)
    matrix = np.float32([[scale, 0, FACE_BOX[0] - x1 * scale], [0, scale, FACE_BOX[1] - y1 * scale]])
    return cv2.warpAffine(image, matrix, SIZE, borderValue=(40, 40, 40))


@pytest.fixture
def queue(gunicorn_servers, tmp_path):
    server = gunicorn_servers(**{**FAST, "WORKERS": 1})
    people, frames = [], []
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir()):
        photos = sorted(person.iterdir())
        if len(photos) < 3:
            continue
        shown = photos[0].read_bytes()
        bbox = _largest_face(server.url, shown)
        if bbox is None:
            continue
        frames.append(_at_the_spot(cv2.imdecode(np.frombuffer(shown, np.uint8), cv2.IMREAD_COLOR), bbox))
        people.append((person.name, photos[1:3]))
        if len(people) == 9:
            break
    # the first eight are enrolled (from other photos than the one shown); the ninth is a stranger
    for name, photos in people[:8]:
        r = requests.post(f"{server.url}/api/v1/students/{name}/faces",
                          files=[("image", (p.name, p.read_bytes())) for p in photos], timeout=60)
        assert r.status_code == 201, r.text
    video = tmp_path / "queue.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
    # 3 s of an empty doorway first: FFmpeg delivers the first second or two of an RTSP connection in a
    # burst and the camera keeps only the newest frame, so the queue starts once the stream is live
    # (each time the server's file ends and the camera reconnects, the video starts over).
    for _ in range(30):
        writer.write(np.full((SIZE[1], SIZE[0], 3), 40, np.uint8))
    for frame in frames:
        for _ in range(12):  # 1.2 s each, no gap
            writer.write(frame)
    writer.release()
    named = {}  # who /recognize names in each still of the video
    for (name, _), frame in zip(people, frames, strict=True):
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        faces = requests.post(f"{server.url}/api/v1/recognize", files={"image": ("f.jpg", jpeg)},
                              timeout=60).json()["faces"]
        named[name] = faces[0]["student_id"] if faces else None
    camera = RtspCamera(video).start()
    yield server, camera, people, named
    camera.stop()


def test_everyone_in_a_queue_at_the_same_spot_is_recognised_once(queue):
    server, camera, people, named = queue
    stranger = people[8][0]
    expected = {n for n in named.values() if n}
    assert len(expected) >= 6 and named[stranger] is None  # the photos themselves are recognisable
    start(server.url, 501, [(1, camera.url)], frame_interval_ms=100)
    # the video (14 s) starts over at each reconnect: three rounds are plenty
    try:
        session = wait_for(lambda: (s := get(server.url, 501)) and
                           {r["student_id"] for r in s["recognized_students"]} >= expected and s, 45,
                           "every person of the queue", interval=1.0)
    except AssertionError:
        s = get(server.url, 501)
        raise AssertionError(f"expected {sorted(expected)}, got {[r['student_id'] for r in s['recognized_students']]}"
                             f"; cameras {s['cameras']}") from None
    recognised = [r["student_id"] for r in session["recognized_students"]]
    assert len(recognised) == len(set(recognised))          # once each
    assert set(recognised) == expected and stranger not in recognised
    # each recognition's evidence shows that person: /recognize names the face crop the same
    for item in session["recognized_students"]:
        crop = requests.get(f"{server.url}/api/v1/sessions/501/evidence/{item['evidence_id']}",
                            params={"kind": "frame"}, timeout=10).content
        faces = requests.post(f"{server.url}/api/v1/recognize", files={"image": ("e.jpg", crop)},
                              timeout=60).json()["faces"]
        assert item["student_id"] in {f["student_id"] for f in faces}, item
