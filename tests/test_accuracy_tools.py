"""scripts/evaluate.py and scripts/calibrate.py on real photos, and the error-rate functions they share."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from math import comb

import numpy as np
import psycopg2
import pytest
from devtools.shared import IDENTITIES, MODEL_PACK, REPO_ROOT
from recognition_service.recognition import accuracy
from recognition_service.recognition.calibration import load_enrolled

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _photos(person_dir):
    return sorted(p for p in person_dir.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def _run(script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


# ---- the shared error-rate functions -------------------------------------------------------------

def test_threshold_for_far_accepts_no_more_than_the_target():
    impostor = np.linspace(-0.5, 0.5, 10_000)
    for far in (1e-2, 1e-3, 1e-4):
        t = accuracy.threshold_for_far(impostor, far)
        accepted = int((impostor >= t).sum())
        assert accepted <= far * len(impostor) and (impostor >= t - 1e-3).sum() > accepted - 1
    assert accuracy.threshold_for_far(impostor[:999], 1e-3) is None  # too few pairs to see 1 in 1000


def test_tar_and_eer_on_known_distributions():
    rng = np.random.default_rng(1)
    impostor, genuine = rng.normal(0, 0.1, 200_000), rng.normal(0.6, 0.1, 50_000)
    point = accuracy.tar_at_far(genuine, impostor, 1e-3)
    assert 0.30 < point["threshold"] < 0.33  # 3.09 standard deviations
    assert 0.99 < point["tar"] < 1 and point["far_measured"] <= 1e-3
    eer = accuracy.equal_error_rate(genuine, impostor)
    assert 0.29 < eer["threshold"] < 0.31 and 0.001 < eer["eer"] < 0.002  # 3 sd from both means: 0.00135


def test_calibration_with_too_few_pairs_never_lowers_the_threshold():
    from recognition_service.recognition.calibration import Enrolled, calibrate

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    enrolled = Enrolled("fp", np.arange(4), np.array(["a", "b", "c", "d"], object), vectors)
    result = calibrate(enrolled, target_far=1e-3, current_threshold=0.35)
    assert result["impostor_pairs"] == 6 and result["highest_impostor_similarity"] < 0.35
    assert result["recommended_threshold"] == 0.35 and "needs at least 1000" in result["note"]
    twins = np.vstack([vectors, vectors[0] * 0.8 + vectors[1] * 0.6])  # a fifth student much like "a"
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)
    result = calibrate(Enrolled("fp", np.arange(5), np.array(["a", "b", "c", "d", "e"], object), twins),
                       target_far=1e-3, current_threshold=0.35)
    assert result["recommended_threshold"] > result["highest_impostor_similarity"] > 0.35
    assert {f["face_id"] for f in result["flagged_faces"]} >= {0, 4}  # both look like each other


# ---- evaluate.py ---------------------------------------------------------------------------------

def test_evaluate_on_a_subset_writes_its_report_and_plot(tmp_path):
    people = sorted(p for p in IDENTITIES.iterdir() if p.is_dir())[:12]
    out = tmp_path / "eval"
    done = _run("evaluate.py", "--images", str(IDENTITIES), "--max-people", "12", "--model-dir", str(MODEL_PACK),
                "--out", str(out), "--enroll-per-person", "2", "--unknown-every", "4", "--quiet")
    assert "TAR @ FAR" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    counts = [len(_photos(p)) for p in people]
    assert report["people"] == 12 and report["photos"] == sum(counts) and report["photos_without_face"] == 0
    v = report["verification"]
    assert v["genuine"]["pairs"] == sum(comb(n, 2) for n in counts)
    assert v["impostor"]["pairs"] == comb(sum(counts), 2) - sum(comb(n, 2) for n in counts)
    assert v["genuine"]["mean"] > 0.4 and abs(v["impostor"]["mean"]) < 0.1
    far_1e2 = v["tar_at_far"][0]
    assert far_1e2["far"] == 1e-2 and far_1e2["tar"] > 0.9
    assert v["tar_at_far"][2]["tar"] is None  # fewer than 10,000 impostor pairs: 1e-4 is not claimed
    assert v["eer"]["eer"] < 0.05 and 0 < v["eer"]["threshold"] < 0.5

    o = report["open_set"]
    assert o["people_not_enrolled"] == 3 and o["people_enrolled"] == 9
    assert o["gallery_faces"] == 18 and o["known_probes"] == sum(counts[i] - 2 for i in range(12) if i % 4 != 3)
    assert o["unknown_probes"] == sum(counts[i] for i in range(12) if i % 4 == 3)
    assert o["top1_accuracy"] >= 0.9
    at = o["at_threshold"]
    assert at["threshold"] == report["threshold"] == 0.35  # the measured default of this model
    assert at["identification_rate"] >= 0.9 and at["misidentification_rate"] == 0 and at["false_accept_rate"] <= 0.05
    rates = [c["false_accept_rate"] for c in o["curve"]]
    assert rates == sorted(rates, reverse=True)  # strangers are named less often as the threshold rises


# ---- calibrate.py --------------------------------------------------------------------------------

KNOWN = 14


def _enrol(client, student_id, path, **fields):
    r = client.post(f"/api/v1/students/{student_id}/faces",
                    data={"image": (io.BytesIO(path.read_bytes()), path.name), **fields},
                    content_type="multipart/form-data")
    return r.json["faces"][0]["face_id"] if r.status_code == 201 else r.json["error"]["code"]


def test_calibration_recommends_a_separating_threshold_and_flags_a_mislabelled_face(client, database_url):
    people = [p for p in sorted(IDENTITIES.iterdir()) if p.is_dir() and len(_photos(p)) >= 4][:KNOWN]
    enrolled = {}
    for person in people:
        ids = [f for f in (_enrol(client, person.name, photo) for photo in _photos(person)[:3]) if isinstance(f, int)]
        assert len(ids) >= 2, person.name
        enrolled[person.name] = ids
    # The mistake: a photo of the second person enrolled under the first person's id.
    victim, other = people[0].name, people[1].name
    # Enrolment refuses it (it is another student's face), so the mistake is made as a school with older data
    # or a wrong "twins" override would have made it; calibrate.py must still find it.
    assert _enrol(client, victim, _photos(people[1])[3]) == "duplicate_face"
    wrong = _enrol(client, victim, _photos(people[1])[3], allow_duplicate="true")
    assert isinstance(wrong, int)

    done = _run("calibrate.py", "--target-far", "1e-2", "--json",
                env={"DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK)})
    result = json.loads(done.stdout)
    assert result["students"] == KNOWN and result["faces"] == sum(map(len, enrolled.values())) + 1

    flagged = {f["face_id"]: f for f in result["flagged_faces"]}
    assert "probably_mislabelled" in flagged[wrong]["problems"]
    assert flagged[wrong]["student_id"] == victim and flagged[wrong]["most_similar_student"] == other
    assert result["excluded_faces"] == [wrong], result["flagged_faces"]
    assert not [f for f in flagged.values() if f["face_id"] != wrong and "probably_mislabelled" in f["problems"]]

    # Recompute the pairs from the stored embeddings: the recommendation separates the people.
    with psycopg2.connect(database_url) as conn:
        data = load_enrolled(conn, result["fingerprint"])
    conn.close()
    keep = data.face_ids != wrong
    vectors, owners = data.embeddings[keep], data.student_ids[keep]
    genuine, impostor = accuracy.pair_similarities(vectors, owners, 10**9)
    threshold = result["recommended_threshold"]
    assert (impostor < threshold).mean() >= 1 - 1e-2 and impostor.max() == pytest.approx(
        result["highest_impostor_similarity"], abs=1e-4)
    assert (genuine >= threshold).mean() >= 0.9
    assert result["genuine_rejected_at_recommended"] == pytest.approx((genuine < threshold).mean(), abs=1e-4)
    assert result["impostor_pairs"] == len(impostor) and result["genuine_pairs"] == len(genuine)


def test_calibration_without_enrolments_says_so(database_url):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "calibrate.py")], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "DATABASE_URL": database_url, "MODEL_DIR": str(MODEL_PACK)})
    assert done.returncode == 1 and "no enrolled faces" in done.stderr


# ---- the threshold in force ----------------------------------------------------------------------

def test_the_default_threshold_is_the_models_measured_one_unless_configured(make_app):
    health = make_app().test_client().get("/health").json
    assert health["recognition"]["threshold"] == 0.35 and health["recognition"]["basis"].startswith("measured")
    configured = make_app(RECOGNITION_THRESHOLD=0.5).test_client()
    assert configured.get("/health").json["recognition"] == {"threshold": 0.5, "basis": "RECOGNITION_THRESHOLD",
                                                             "margin": 0.03}
    photo = _photos(IDENTITIES / "Barack_Obama")[0]
    r = configured.post("/api/v1/recognize", data=photo.read_bytes(), content_type="image/jpeg")
    assert r.status_code == 200 and r.json["threshold"] == 0.5


def test_each_shared_recogniser_has_a_measured_default():
    from recognition_service.recognition.model import recognizer_fingerprint
    from recognition_service.recognition.thresholds import default_for

    expected = {"buffalo_s_int8": 0.35, "det_2.5g_mbf_int8": 0.35, "mobilefacenet_128d": 0.45}
    for pack, threshold in expected.items():
        fingerprint, name = recognizer_fingerprint(MODEL_PACK.parent / pack)
        found = default_for(fingerprint, name)
        assert found.threshold == threshold and found.basis.startswith("measured"), (pack, found)
