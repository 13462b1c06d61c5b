"""A camera worker on its own, without Gunicorn: the real engine (model, PostgreSQL gallery), an in-memory
recorder and a hand-driven clock, fed frames built from ../shared/faces. Swaps, queues and still classrooms."""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest
from devtools.shared import IDENTITIES
from devtools.streams import BBT, face_at, still_frames
from recognition_service.sessions.camera_worker import CameraJob, CameraWorker
from recognition_service.sessions.scheduler import ModelScheduler
from session_helpers import CAST, MemoryRecorder

SIZE = (960, 540)
LEFT, RIGHT = (200, 150, 340, 310), (620, 150, 760, 310)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def service(make_app):
    app = make_app()  # the motion gate and re-embed timer as a school runs them
    return app, app.extensions["recognition"]


def _worker(state, **job):
    recorder, clock = MemoryRecorder(), Clock()
    spec = {"slot_id": 1, "camera_id": 1, "url": "unused.mp4", "frame_interval_s": 1.0, "threshold": None,
            "roster": None, **job}
    worker = CameraWorker(CameraJob(**spec), engine=state.engine, recorder=recorder, settings=state.settings,
                          stopped=threading.Event(), scheduler=ModelScheduler(1), clock=clock)
    return worker, recorder, clock


def _people(client, count: int):
    """(name, photo shown, its face box) of people with three photos; the two others are enrolled."""
    found = []
    for person in sorted(p for p in IDENTITIES.iterdir() if p.is_dir()):
        photos = sorted(person.iterdir())
        if len(photos) < 3:
            continue
        r = client.post("/api/v1/embeddings", data={"image": (photos[0].open("rb"), "p.jpg")})
        faces = r.get_json().get("faces") or []
        if len(faces) != 1:
            continue
        files = {"image": [(p.open("rb"), p.name) for p in photos[1:3]]}
        assert client.post(f"/api/v1/students/{person.name}/faces", data=files).status_code == 201
        found.append((person.name, cv2.imread(str(photos[0])), faces[0]["bbox"]))
        if len(found) == count:
            return found
    raise AssertionError("not enough identities in ../shared/faces")


def _scene(*placed) -> np.ndarray:
    """People (image, bbox) placed at spots of one frame."""
    frame = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)
    for image, bbox, spot in placed:
        moved = face_at(image, bbox, spot, SIZE)
        mask = np.zeros(SIZE[::-1], np.uint8)
        x1, y1, x2, y2 = spot
        pad = (x2 - x1) // 2
        mask[max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad] = 1
        frame[mask == 1] = moved[mask == 1]
    return frame


def _who_shows(client, seen) -> set:
    """Who /recognize names in a sighting's evidence (the face crop with its margin)."""
    x1, y1, x2, y2 = (int(v) for v in seen.bbox)
    pad = (x2 - x1) // 2
    crop = seen.frame[max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad]
    jpeg = cv2.imencode(".jpg", crop)[1].tobytes()
    faces = client.post("/api/v1/recognize", data={"image": (io.BytesIO(jpeg), "c.jpg")}).get_json()
    return {f["student_id"] for f in faces["faces"]}


def test_two_people_swapping_places_are_both_recognised_and_never_as_each_other(service):
    app, state = service
    client = app.test_client()
    (a, a_img, a_box), (b, b_img, b_box) = _people(client, 2)
    worker, recorder, clock = _worker(state)
    before = _scene((a_img, a_box, LEFT), (b_img, b_box, RIGHT))
    after = _scene((b_img, b_box, LEFT), (a_img, a_box, RIGHT))
    for frame in [before] * 3 + [after] * 3:  # they swap between two frames
        clock.now += 1.0
        worker.process(frame)
    assert {s.student_id for s in recorder.sightings} == {a, b}
    for seen in recorder.sightings:
        assert seen.student_id in _who_shows(client, seen), seen.student_id  # the evidence shows that person
    named = {tuple(int(v) for v in t.bbox[:2]): t.student_id for t in worker.tracker.tracks}
    assert sorted(named.values()) == sorted([a, b])
    left = min(named)
    assert named[left] == b  # the left track is now the person who moved there


def test_a_still_classroom_skips_the_detector_and_embeds_few_faces(service):
    app, state = service
    client = app.test_client()
    for name in CAST:
        photos = sorted((BBT / "portraits" / name).iterdir())[:3]
        assert client.post(f"/api/v1/students/{name}/faces",
                           data={"image": [(p.open("rb"), p.name) for p in photos]}).status_code == 201
    frame = max(still_frames(SIZE), key=lambda f: int(f.std()))
    rng = np.random.default_rng(1)
    worker, recorder, clock = _worker(state)
    for _ in range(60):  # a minute at one frame a second, sensor grain on every frame
        clock.now += 1.0
        worker.process(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    frames, runs, detected, embedded, _ = worker.take_counts()
    assert frames == 60
    assert runs == 60 // state.settings.MOTION_MAX_SKIP_S  # the picture never changed: timed detections only
    assert detected >= 3 * runs and embedded / detected <= 0.3, (detected, embedded)
    assert len({s.student_id for s in recorder.sightings}) >= 3
    # someone walking in front is seen at once, not at the next timed detection
    clock.now += 1.0
    walker = frame.copy()
    walker[100:400, 420:540] = (200, 180, 160)
    worker.process(walker)
    assert worker.take_counts()[1] == 1


def test_a_1080p_class_is_searched_at_native_scale_only_where_it_changes_within_its_region_and_size(service):
    """The back rows of a 1080p class are named by a worker in its default mode; a still class then costs at
    most one detector region per frame; a region of interest and a minimum face size are honoured."""
    from devtools.classroom import ROWS_1080P, cast, classroom
    from recognition_service.recognition.detection import DetectionSettings

    app, state = service
    client = app.test_client()
    people = cast(sum(n for _, n in ROWS_1080P))
    for name, photos, _, _, _ in people:
        assert client.post(f"/api/v1/students/{name}/faces",
                           data={"image": [(p.open("rb"), p.name) for p in photos]}).status_code == 201
    frame, seats = classroom(people=people)
    row_of = {s.person: s.row for s in seats}

    def run(frames: int, **detection):
        worker, recorder, clock = _worker(state, detection=DetectionSettings(**{"det_size": 640, **detection}))
        for _ in range(frames):
            clock.now += 1.0
            worker.process(frame)
        return worker, recorder

    worker, recorder = run(12, min_face_px=state.settings.CAMERA_MIN_FACE_PX)
    named = {s.student_id for s in recorder.sightings}
    assert named <= set(row_of) and sum(row_of[n] >= 3 for n in named) >= 4  # 36 and 28 px rows
    frames, runs, _, _, tiles = worker.take_counts()
    # the first frame runs every region (the full pass and 4 tiles); then the picture never changes: at
    # most one region per frame, so 12 frames cost far less than 12 x 5 regions
    assert frames == 12 and tiles <= 4 + 11 and runs <= 12
    assert recorder.previews and max(f["size_px"] for f in recorder.previews[0].faces) >= 70
    assert min(f["size_px"] for f in recorder.previews[0].faces) < 32
    # the installer's settings: the left half of the room only, then no face under 40 px
    _, left = run(6, roi=((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    xs = {s.person: (s.box[0] + s.box[2]) / 2 for s in seats}
    assert left.sightings and all(xs[s.student_id] < 960 for s in left.sightings)
    _, near = run(6, min_face_px=40)
    assert near.sightings and all(row_of[s.student_id] <= 2 for s in near.sightings)
    assert all(f["size_px"] >= 40 for f in near.previews[0].faces)
    _, shrunk = run(6, mode="full_frame")
    assert len({s.student_id for s in shrunk.sightings}) < len(named)


def test_a_face_that_left_unnamed_but_matches_a_student_now_is_filed_for_review(service):
    """A face seen while its student was not enrolled yet (or too small, too few times, to be named) and
    gone before another sighting: nothing would ever record it. It becomes a near-miss item with that
    student on top, where it used to vanish."""
    import time

    app, state = service
    client = app.test_client()
    person = next(p for p in sorted(IDENTITIES.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= 3)
    photos = sorted(person.iterdir())
    faces = client.post("/api/v1/embeddings", data={"image": (photos[0].open("rb"), "p.jpg")}).get_json()["faces"]
    shown = _scene((cv2.imread(str(photos[0])), faces[0]["bbox"], LEFT))
    empty = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)
    worker, recorder, clock = _worker(state)
    for _ in range(2):
        clock.now += 1.0
        worker.process(shown)
    assert not recorder.sightings and not recorder.reviews  # a stranger for now
    files = {"image": [(p.open("rb"), p.name) for p in photos[1:3]]}
    assert client.post(f"/api/v1/students/{person.name}/faces", data=files).status_code == 201
    time.sleep(1.1)  # cameras see an enrolment within a second
    for _ in range(12):  # the face is gone: its track ends after a few detector runs
        clock.now += 1.0
        worker.process(empty)
    assert not recorder.sightings
    assert len(recorder.reviews) == 1, recorder.reviews
    item = recorder.reviews[0]
    assert item["reason"] == "near_miss" and item["candidates"][0]["student_id"] == person.name, item
