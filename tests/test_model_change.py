"""Kept face crops and a model change, in process: real PostgreSQL, the real models of ../shared/models.

The whole upgrade through real Gunicorn servers (shadow, kill during re-embedding, switch, switch back,
purge) is in test_model_upgrade.py.
"""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import psycopg2
import pytest
from devtools.shared import MODEL_PACK, identities
from recognition_service.model_change import store
from recognition_service.model_change.reembedder import Reembedder
from recognition_service.model_change.shadow import Sample, ShadowComparer, outcome
from recognition_service.sessions.scheduler import ModelScheduler
from session_helpers import MemoryRecorder

SHADOW_PACK = MODEL_PACK.parent / "mobilefacenet_128d"


def _people(n: int) -> list:
    """People with a third photo (two enrolled, one to recognise)."""
    return identities(min_photos=3)[:n]


def _enrol(client, person, photos=(0, 1)) -> int:
    """Enrol some of the person's photos; returns how many the gate accepted."""
    files = sorted(person.iterdir())
    data = {"image": [(io.BytesIO(files[i].read_bytes()), files[i].name) for i in photos]}
    r = client.post(f"/api/v1/students/{person.name}/faces", data=data)
    assert r.status_code == 201, r.json
    return len(r.json["faces"])


def _rows(url: str, sql: str, args=()) -> list:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _reembedder(app) -> Reembedder:
    state = app.extensions["recognition"]
    models = [p for p in (state.models, state.shadow_models) if p]
    return Reembedder(db=state.db, models=models, settings=state.settings,
                      runner_id="test-runner", ensure_schema=state.ensure_schema)


def test_an_enrolled_face_keeps_its_aligned_crop_which_the_api_never_serves(client, database_url):
    person = _people(1)[0]
    assert _enrol(client, person) == 2  # the first person's first two photos are portraits
    crops = _rows(database_url, "SELECT image_sha256, crop FROM face_crops WHERE student_id = %s", (person.name,))
    assert len(crops) == 2
    for _, png in crops:
        crop = cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_COLOR)
        assert crop.shape == (112, 112, 3) and crop.std() > 10  # a face, not a blank
    # The crop is the one embedded: embedding it again gives the stored embedding.
    state = client.application.extensions["recognition"]
    model = state.models.get()
    stored = _rows(database_url, "SELECT image_sha256, embedding FROM faces WHERE student_id = %s", (person.name,))
    by_sha = {sha: np.frombuffer(bytes(blob), np.float32) for sha, blob in stored}
    for sha, png in crops:
        again = model.embed([cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_COLOR)])[0]
        assert float(again @ by_sha[sha]) > 0.999
    # Never served: no endpoint that shows the student's faces carries pixels.
    faces = client.get(f"/api/v1/students/{person.name}/faces").json["faces"]
    assert len(faces) == 2 and all(f["crop_kept"] for f in faces)
    for path in (f"/api/v1/students/{person.name}", f"/api/v1/students/{person.name}/faces", "/api/v1/students",
                 "/api/v1/models", "/health"):
        r = client.get(path)
        assert r.status_code == 200 and len(r.data) < 8000 and b"iVBOR" not in r.data  # no PNG, no base64
    # Deleting one face removes its crop; deleting the student removes the rest.
    assert client.delete(f"/api/v1/students/{person.name}/faces/{faces[0]['face_id']}").status_code == 204
    assert len(_rows(database_url, "SELECT 1 FROM face_crops")) == 1
    assert client.delete(f"/api/v1/students/{person.name}").status_code == 204
    assert _rows(database_url, "SELECT count(*) FROM face_crops")[0][0] == 0


def test_without_keep_face_crops_none_is_kept_and_earlier_ones_are_deleted(make_app, database_url):
    first, second = _people(2)
    keeping = make_app()
    accepted = _enrol(keeping.test_client(), first)
    assert _rows(database_url, "SELECT count(*) FROM face_crops")[0][0] == accepted
    off = make_app(KEEP_FACE_CROPS="false")
    _enrol(off.test_client(), second)
    assert _rows(database_url, "SELECT DISTINCT student_id FROM face_crops") == [(first.name,)]
    worker = _reembedder(off)
    worker.start()
    try:
        for _ in range(100):
            if _rows(database_url, "SELECT count(*) FROM face_crops")[0][0] == 0:
                break
            threading.Event().wait(0.1)
    finally:
        worker.stop(5)
    assert _rows(database_url, "SELECT count(*) FROM face_crops")[0][0] == 0
    # the photos themselves stay enrolled, and are listed as needing a new photo for another model
    assert off.test_client().get(f"/api/v1/students/{first.name}").json["face_count"] == accepted
    with psycopg2.connect(database_url) as conn:
        assert {p["student_id"] for p in store.needs_reenrolment(conn, "another-model")} == {first.name, second.name}


def test_the_shadow_model_embeds_every_kept_crop_once_and_only_under_its_lease(make_app, database_url):
    app = make_app(SHADOW_MODEL_DIR=str(SHADOW_PACK), REEMBED_BATCH=3)
    client = app.test_client()
    accepted = [_enrol(client, person) for person in _people(4)]
    state = app.extensions["recognition"]
    shadow = state.shadow_models.get()
    assert shadow.info.embedding_size == 128 and shadow.info.fingerprint != state.models.get().info.fingerprint
    status = client.get("/api/v1/models").json
    kept = _rows(database_url, "SELECT count(*) FROM face_crops")[0][0]
    assert kept >= 6  # two photos of each of four people, a group photo refused
    assert status["reembedding"]["shadow"] == {"kept_crops": kept, "embedded": 0, "remaining": kept, "state": "waiting"}
    assert status["needs_reenrolment"] == {"active": 0, "shadow": 0}

    # Another live runner holds the job: this one embeds nothing.
    with psycopg2.connect(database_url) as conn:
        assert store.claim_job(conn, shadow.info.fingerprint, shadow.info.name, "someone-else", 60)
    worker = _reembedder(app)
    assert worker.work_on(shadow) is False
    assert _rows(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s",
                 (shadow.info.fingerprint,))[0][0] == 0
    # Its lease lapses: this one takes over (a second run) and embeds them all, in batches of 3.
    _rows(database_url, "UPDATE reembedding_jobs SET lease_expires_at = now() - interval '1 second' RETURNING 1")
    assert worker.work_on(shadow) is True
    rows = _rows(database_url, "SELECT student_id, image_sha256, embedding FROM faces WHERE model_fingerprint = %s",
                 (shadow.info.fingerprint,))
    assert len(rows) == kept and len({(s, h) for s, h, _ in rows}) == kept
    assert all(len(bytes(blob)) == 128 * 4 for _, _, blob in rows)
    job = _rows(database_url, "SELECT embedded, runs, owner, finished_at IS NOT NULL FROM reembedding_jobs "
                              "WHERE model_fingerprint = %s", (shadow.info.fingerprint,))[0]
    assert job == (kept, 2, None, True)
    assert worker.work_on(shadow) is False  # nothing left: no second embedding of anything
    status = client.get("/api/v1/models").json["reembedding"]["shadow"]
    assert status["remaining"] == 0 and status["state"] == "done" and status["faces_per_second"] > 0
    # The students' face counts are photos, not embeddings.
    assert client.get(f"/api/v1/students/{_people(1)[0].name}").json["face_count"] == accepted[0]
    faces = client.get(f"/api/v1/students/{_people(1)[0].name}/faces").json["faces"]
    assert [len(f["models"]) for f in faces] == [2] * accepted[0]


def test_a_lost_lease_writes_nothing(make_app, database_url):
    app = make_app(SHADOW_MODEL_DIR=str(SHADOW_PACK))
    _enrol(app.test_client(), _people(1)[0])
    shadow = app.extensions["recognition"].shadow_models.get()
    fingerprint = shadow.info.fingerprint
    with psycopg2.connect(database_url) as conn:
        assert store.claim_job(conn, fingerprint, shadow.info.name, "me", 60)
        batch = store.pending_crops(conn, fingerprint, 10)
    _rows(database_url, "UPDATE reembedding_jobs SET owner = 'other' RETURNING 1")  # taken over meanwhile
    with psycopg2.connect(database_url) as conn, pytest.raises(store.JobLost):
        store.store_batch(conn, fingerprint, "me", 60, batch, np.zeros((len(batch), 128), np.float32), 0.1)
    assert _rows(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s", (fingerprint,))[0][0] == 0


def test_outcomes_of_a_shadow_comparison():
    assert outcome("a", "a") == outcome(None, None) == "agreed"
    assert outcome("a", None) == "only_active_named"
    assert outcome(None, "a") == "only_shadow_named"
    assert outcome("a", "b") == "named_differently"


def test_shadow_matching_agrees_on_enrolled_students_and_on_strangers(make_app, database_url):
    app = make_app(SHADOW_MODEL_DIR=str(SHADOW_PACK))
    client = app.test_client()
    people = _people(8)
    for person in people[:6]:
        _enrol(client, person)
    state = app.extensions["recognition"]
    active, shadow = state.models.get(), state.shadow_models.get()
    comparer = ShadowComparer(engine=state.shadow_engine, db=state.db, sample_rate=1.0)
    faces, _ = state.engine.photo(active, sorted(people[0].iterdir())[2].read_bytes(), keep_crops=True)
    early = Sample(active.info.fingerprint, [faces[0].crop], [people[0].name], None)
    assert comparer.compare(early) == {}  # the shadow gallery is still empty: not compared
    assert client.get("/api/v1/models").json["agreement"]["compared"] == 0
    assert _reembedder(app).work_on(shadow)
    totals: dict = {}
    for person in people:  # six enrolled, two strangers; a photo not enrolled
        photo = sorted(person.iterdir())[2].read_bytes()
        faces, _ = state.engine.photo(active, photo, keep_crops=True)
        faces = faces[:1]
        named = [w.student_id for w in state.engine.identify(active, np.stack([f.embedding for f in faces]))]
        for k, v in comparer.compare(Sample(active.info.fingerprint, [f.crop for f in faces], named, None)).items():
            totals[k] = totals.get(k, 0) + v
    report = client.get("/api/v1/models").json["agreement"]
    assert report["compared"] == 8 == sum(totals.values())
    assert report["agreed"] == totals.get("agreed", 0) >= 6 and report["rate"] == round(report["agreed"] / 8, 4)
    assert totals.get("named_differently", 0) == 0
    health = client.get("/health").json["model_change"]["agreement"]
    assert health["compared"] == 8 and health["rate"] == report["rate"]
    page = client.get("/console/service").get_data(as_text=True)  # no key configured: the console is open
    kept = _rows(database_url, "SELECT count(*) FROM face_crops")[0][0]
    assert "Shadow model mobilefacenet_128d" in page and "of 8 faces" in page and f"{kept} of {kept}" in page


def test_a_camera_offers_a_sample_of_its_frames_to_the_shadow_model(make_app, database_url):
    from devtools.streams import face_at
    from recognition_service.sessions.camera_worker import CameraJob, CameraWorker

    app = make_app(SHADOW_MODEL_DIR=str(SHADOW_PACK))
    client = app.test_client()
    person = _people(1)[0]
    _enrol(client, person)
    state = app.extensions["recognition"]
    assert _reembedder(app).work_on(state.shadow_models.get())
    comparer = ShadowComparer(engine=state.shadow_engine, db=state.db, sample_rate=1.0)
    photo = sorted(person.iterdir())[2]
    bbox = client.post("/api/v1/embeddings", data={"image": (photo.open("rb"), "p.jpg")}).json["faces"][0]["bbox"]
    frame = face_at(cv2.imread(str(photo)), bbox, (380, 120, 580, 320), (960, 540))

    now = [0.0]
    worker = CameraWorker(CameraJob(1, 1, "unused.mp4", 1.0, None, None), engine=state.engine,
                          recorder=MemoryRecorder(),
                          settings=state.settings, stopped=threading.Event(),
                          scheduler=ModelScheduler(1), clock=lambda: now[0], shadow=comparer)
    comparer.start()
    for _ in range(3):
        now[0] += 1.0
        worker.process(frame)
    comparer.stop(30)  # after the samples queued before it
    with psycopg2.connect(database_url) as conn:
        report = store.agreement(conn, state.models.get().info.fingerprint, state.shadow_models.get().info.fingerprint)
    assert report["compared"] >= 1 and report["agreed"] == report["compared"], report  # the enrolled student


def test_a_forced_purge_removes_the_photos_it_leaves_without_an_embedding(make_app, database_url, tmp_path):
    import subprocess
    import sys

    from devtools.shared import REPO_ROOT

    first, second, third = _people(3)
    app = make_app(SHADOW_MODEL_DIR=str(SHADOW_PACK))
    client = app.test_client()
    _enrol(client, first)
    state = app.extensions["recognition"]
    old, new = state.models.get().info.fingerprint, state.shadow_models.get().info.fingerprint
    assert _reembedder(app).work_on(state.shadow_models.get())  # the first: both models
    _enrol(make_app(KEEP_FACE_CROPS="false").test_client(), second)  # the second: no crop
    _enrol(client, third)  # the third: a crop, not yet embedded with the new model

    def purge(*args):
        env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "MODEL_DIR": str(SHADOW_PACK),
               "DATA_DIR": str(tmp_path)}
        return subprocess.run([sys.executable, str(REPO_ROOT / "python" / "manage_students.py"), "purge-model",
                               *args], capture_output=True, text=True, timeout=120, env=env)

    assert purge(new[:12]).returncode == 1  # the model of MODEL_DIR
    assert purge("0000").returncode == 1  # no such model
    refused = purge(old[:12])
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert _rows(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s", (old,))[0][0] > 0
    done = purge(old[:12], "--force")
    assert done.returncode == 0, done.stderr
    assert _rows(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s", (old,))[0][0] == 0
    assert {r[0] for r in _rows(database_url, "SELECT DISTINCT student_id FROM faces")} == {first.name}
    assert {r[0] for r in _rows(database_url, "SELECT DISTINCT student_id FROM face_crops")} == {first.name}


def test_purge_refuses_the_model_a_running_server_uses_whatever_the_tools_environment(gunicorn_servers,
                                                                                      database_url, tmp_path):
    """The tool run from a shell without the service's MODEL_DIR (here: another model's) must still refuse
    the model the running service uses: the service's processes say which models they use."""
    import subprocess
    import sys
    import time

    import requests
    from devtools.shared import REPO_ROOT

    server = gunicorn_servers(WORKERS=2)
    person = _people(1)[0]
    photo = sorted(person.iterdir())[0]
    r = requests.post(f"{server.url}/api/v1/students/{person.name}/faces",
                      files={"image": (photo.name, photo.read_bytes())}, timeout=60)
    assert r.status_code == 201, r.text
    fingerprint = requests.get(f"{server.url}/api/v1/models", timeout=10).json()["active"]["fingerprint"]

    def purge(*args):
        env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "MODEL_DIR": str(SHADOW_PACK),
               "DATA_DIR": str(tmp_path)}
        return subprocess.run([sys.executable, str(REPO_ROOT / "python" / "manage_students.py"), "purge-model",
                               *args], capture_output=True, text=True, timeout=120, env=env)

    deadline = time.monotonic() + 30  # each process says so on its re-embedder's first round
    while not _rows(database_url, "SELECT 1 FROM models_in_use WHERE fingerprint = %s", (fingerprint,)):
        assert time.monotonic() < deadline, "no process said which model it uses"
        time.sleep(0.5)
    refused = purge(fingerprint[:12], "--force")
    assert refused.returncode == 1 and "is in use: the MODEL_DIR of" in refused.stderr, refused.stderr
    for prefix in ("", "3bc3", "zzzzzzzzzzzz"):  # empty, too short to be sure, not a fingerprint
        short = purge(prefix, "--force")
        assert short.returncode == 1 and "at least its first 8 hex characters" in short.stderr, (prefix, short.stderr)
    assert _rows(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s", (fingerprint,))[0][0] == 1
    assert server.stop() == 0  # a stopped service no longer holds its model
    assert not _rows(database_url, "SELECT 1 FROM models_in_use WHERE fingerprint = %s", (fingerprint,))
