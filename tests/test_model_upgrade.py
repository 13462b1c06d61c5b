"""A school changes its model without a new photo, end to end: real Gunicorn servers (two workers, an API key)
restarted on one PostgreSQL database, as a school's IT would do it.

Enrol with buffalo_s_int8 (one student before crops were kept), run in shadow with mobilefacenet_128d (another
recogniser, 128-d embeddings), kill the server during the re-embedding and restart it, let it finish, compare
recognitions, switch, switch back, erase a student, purge the model no longer used.
"""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg2
import requests
from devtools.shared import MODEL_PACK, REPO_ROOT, identities
from session_helpers import wait_for

KEY = "upgrade-key"
H = {"X-API-Key": KEY}
OLD, NEW = MODEL_PACK, MODEL_PACK.parent / "mobilefacenet_128d"
TOOL = REPO_ROOT / "python" / "manage_students.py"


def _enrol(server, person) -> int:
    """Enrol the person's first two photos; returns how many the gate accepted (a group photo is refused)."""
    files = sorted(person.iterdir())[:2]
    r = requests.post(f"{server.url}/api/v1/students/{person.name}/faces", headers=H, timeout=60,
                      files=[("image", (f.name, f.read_bytes())) for f in files])
    assert r.status_code == 201, r.text
    return len(r.json()["faces"])


def _recognise(server, person) -> tuple[str | None, int]:
    """Who the server names in the person's third photo (never enrolled), and its embedding size."""
    photo = sorted(person.iterdir())[2]
    r = requests.post(f"{server.url}/api/v1/recognize", headers=H, timeout=60,
                      files={"image": (photo.name, photo.read_bytes())})
    assert r.status_code == 200, r.text
    faces = sorted(r.json()["faces"], key=lambda f: -(f["bbox"][2] - f["bbox"][0]))
    return (faces[0]["student_id"] if faces else None), r.json()["model"]["embedding_size"]


def _one(url: str, sql: str, args=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def _health(server) -> dict:
    return requests.get(server.url + "/health", timeout=10).json()


def _tool(database_url: str, tmp_path, *args, model=OLD) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "MODEL_DIR": str(model), "DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_school_changes_its_model_without_a_new_photo(gunicorn_servers, database_url, tmp_path):
    people = identities(min_photos=3)[:12]
    legacy, enrolled = people[0], people[1:]
    base = {"API_KEYS": KEY, "LOG_LEVEL": "INFO"}

    # Before crops were kept: one student enrolled with KEEP_FACE_CROPS=false.
    server = gunicorn_servers(**base, KEEP_FACE_CROPS="false")
    legacy_photos = _enrol(server, legacy)
    assert server.stop() == 0
    # The default keeps each enrolled photo's crop.
    server = gunicorn_servers(**base)
    crops = sum(_enrol(server, person) for person in enrolled)
    before = {p.name: _recognise(server, p)[0] for p in people}
    assert sum(before[p.name] == p.name for p in people) >= 10, before
    assert server.stop() == 0
    assert _one(database_url, "SELECT count(*) FROM face_crops")[0] == crops
    old_fp = _one(database_url, "SELECT DISTINCT model_fingerprint FROM faces")[0]

    # Shadow, paced (3 faces/s) so that the server is killed half-way through the re-embedding.
    shadow_env = {**base, "SHADOW_MODEL_DIR": str(NEW), "SHADOW_SAMPLE_RATE": 1, "REEMBED_LEASE_S": 3}
    server = gunicorn_servers(**shadow_env, REEMBED_MAX_FACES_PER_S=3)
    new_fp = _health(server)["model_change"]["shadow"]["fingerprint"]
    count_new = "SELECT count(*) FROM faces WHERE model_fingerprint = %s"
    wait_for(lambda: _one(database_url, count_new, (new_fp,))[0] >= 6, 30, "re-embedding to begin")
    server.kill()
    done_before_kill = _one(database_url, count_new, (new_fp,))[0]
    assert 6 <= done_before_kill < crops, done_before_kill

    server = gunicorn_servers(**shadow_env)  # restarted: resumes, unpaced
    change = wait_for(lambda: (c := _health(server)["model_change"])["reembedding"]["shadow"]["state"] == "done"
                      and c, 60, "re-embedding to finish")
    progress = change["reembedding"]["shadow"]
    assert progress["kept_crops"] == progress["embedded"] == crops and progress["remaining"] == 0
    # Every crop embedded exactly once: one row per photo, and the job's count of embeddings it computed and
    # committed (both runs) is the number of crops, so the restart redid none of the work the kill left.
    assert _one(database_url, count_new, (new_fp,))[0] == crops
    assert _one(database_url, "SELECT count(DISTINCT (student_id, image_sha256)) FROM faces "
                              "WHERE model_fingerprint = %s", (new_fp,))[0] == crops
    embedded, runs = _one(database_url, "SELECT embedded, runs FROM reembedding_jobs WHERE model_fingerprint = %s",
                          (new_fp,))
    assert embedded == crops and runs == 2
    assert progress["faces_per_second"] > 0
    # The photo without a crop is what the new model will miss, and it is listed.
    r = requests.get(server.url + "/api/v1/models/needs-reenrolment", headers=H, timeout=10).json()
    assert r["model"] == "shadow" and {p["student_id"] for p in r["photos"]} == {legacy.name}
    assert len(r["photos"]) == legacy_photos and change["needs_reenrolment"] == {"active": 0, "shadow": legacy_photos}
    listed = _tool(database_url, tmp_path, "needs-reenrolment", "--model", "active")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 1, listed.stderr  # the header: none for MODEL_DIR

    # Shadow matching: every /recognize is also matched with the new model; the agreement is reported.
    shadow_named = {p.name: _recognise(server, p)[0] for p in people}
    agreement = wait_for(lambda: (a := _health(server)["model_change"]["agreement"])["compared"] >= len(people)
                         and a, 30, "shadow comparisons")
    assert agreement["rate"] == round(agreement["agreed"] / agreement["compared"], 4) and agreement["rate"] >= 0.6
    assert agreement["only_active_named"] >= 1  # the legacy student: the new model has no embedding of them
    assert shadow_named == before  # the model in use still answers
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert re.search(r'recognizer_shadow_comparisons_total\{outcome="agreed"\} [1-9]', metrics)
    assert "recognizer_reembedded_faces_total" in metrics
    ratio = re.search(r"^recognizer_shadow_agreement_ratio\S* (\S+)$", metrics, re.M)
    assert ratio and abs(float(ratio.group(1)) - agreement["rate"]) < 0.1  # the last writer may miss one sample
    print(f"shadow agreement {agreement}; re-embedding {progress['faces_per_second']} faces/s")
    assert server.stop() == 0

    # Switch: one setting and a restart. Recognised with the new model without any new photo.
    server = gunicorn_servers(**base, MODEL_DIR=str(NEW))
    after = {p.name: _recognise(server, p) for p in people}
    assert {size for _, size in after.values()} == {128}
    right = [p.name for p in enrolled if after[p.name][0] == p.name]
    wrong = [p.name for p in enrolled if after[p.name][0] not in (None, p.name)]
    assert len(right) >= len(enrolled) - 3 and len(wrong) <= 1, after
    assert after[legacy.name][0] is None
    health = _health(server)
    assert health["enrollments"]["needs_reenrolment"] == legacy_photos
    assert "enrol those students again" in health["warnings"][0]
    print(f"after the switch: {len(right)} of {len(enrolled)} named, {len(wrong)} wrong")
    # Purging the old model now would leave the legacy student with no embedding at all: refused.
    refused = _tool(database_url, tmp_path, "purge-model", old_fp[:12], model=NEW)
    assert refused.returncode == 1 and f"{legacy_photos} enrolled photo(s)" in refused.stderr, refused.stderr
    assert _one(database_url, "SELECT count(*) FROM faces WHERE model_fingerprint = %s", (old_fp,))[0] > crops
    assert server.stop() == 0

    # Switch back: the old embeddings were kept.
    server = gunicorn_servers(**base)
    assert {p.name: _recognise(server, p)[0] for p in people} == before

    # Erasing a student removes their crops and both models' embeddings.
    victim = enrolled[0].name
    victim_crops = _one(database_url, "SELECT count(*) FROM face_crops WHERE student_id = %s", (victim,))[0]
    assert victim_crops >= 1
    assert requests.delete(f"{server.url}/api/v1/students/{victim}", headers=H, timeout=30).status_code == 204
    assert _one(database_url, "SELECT count(*) FROM faces WHERE student_id = %s", (victim,))[0] == 0
    assert _one(database_url, "SELECT count(*) FROM face_crops WHERE student_id = %s", (victim,))[0] == 0

    # Purge: never the model in use; the other one's embeddings go, crops stay.
    refused = _tool(database_url, tmp_path, "purge-model", old_fp[:12])
    assert refused.returncode == 1 and "MODEL_DIR" in refused.stderr
    purged = _tool(database_url, tmp_path, "purge-model", new_fp[:12])
    assert purged.returncode == 0, purged.stderr
    assert _one(database_url, count_new, (new_fp,))[0] == 0
    assert _one(database_url, "SELECT count(*) FROM face_crops")[0] == crops - victim_crops
    assert {p.name: _recognise(server, p)[0] for p in people if p.name != victim} == {
        k: v for k, v in before.items() if k != victim}
