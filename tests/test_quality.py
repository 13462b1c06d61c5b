"""The enrolment quality gate: each rule rejects a photo made to break it and accepts the original."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from devtools.shared import IDENTITIES, sample

ORIGINAL = cv2.imdecode(np.frombuffer(sample("obama.jpg"), np.uint8), cv2.IMREAD_COLOR)
BROKEN = {
    "face_too_small": cv2.resize(ORIGINAL, None, fx=0.17, fy=0.17, interpolation=cv2.INTER_AREA),
    "too_blurry": cv2.GaussianBlur(ORIGINAL, (0, 0), max(ORIGINAL.shape[:2]) / 60),
    "too_dark": (ORIGINAL * 0.1).astype(np.uint8),
    "too_bright": cv2.convertScaleAbs(ORIGINAL, alpha=0.4, beta=185),  # washed out, still a face
    "pose_too_far": cv2.rotate(ORIGINAL, cv2.ROTATE_90_CLOCKWISE),
}


def _jpeg(img) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_the_original_passes_with_its_scores(client):
    r = client.post("/api/v1/students/s1/faces", data=_jpeg(ORIGINAL), content_type="image/jpeg")
    assert r.status_code == 201, r.json
    q = r.json["faces"][0]["quality"]
    assert set(q) == {"eye_distance_px", "sharpness", "brightness", "yaw", "roll_deg"}
    assert q["eye_distance_px"] > 20 and q["sharpness"] > 40 and 35 < q["brightness"] < 225


def test_real_photos_pass_the_gate(client):
    people = [p for p in sorted(IDENTITIES.iterdir()) if p.is_dir()]
    originals = [sorted(p.iterdir())[0] for p in people[::5]]
    assert len(originals) >= 10
    for i, photo in enumerate(originals):
        r = client.post(f"/api/v1/students/p{i}/faces", data=photo.read_bytes(), content_type="image/jpeg")
        assert r.status_code == 201, (photo, r.json)


@pytest.mark.parametrize("reason", sorted(BROKEN))
def test_each_rule_rejects_a_photo_made_to_break_it(client, reason):
    r = client.post("/api/v1/students/s1/faces", data=_jpeg(BROKEN[reason]), content_type="image/jpeg")
    assert r.status_code == 422, r.json
    rejected = r.json["error"]["rejected"][0]
    assert rejected["reason"] == reason, rejected
    assert reason in rejected["problems"] and "quality" in rejected
    assert client.get("/api/v1/students/s1").status_code == 404  # nothing stored


def test_thresholds_are_settings_and_the_gate_can_be_off(make_app):
    strict = make_app(ENROLL_MIN_SHARPNESS=1e9).test_client()
    r = strict.post("/api/v1/students/s1/faces", data=_jpeg(ORIGINAL), content_type="image/jpeg")
    assert r.status_code == 422 and r.json["error"]["rejected"][0]["reason"] == "too_blurry"
    off = make_app(ENROLL_QUALITY_GATE=False).test_client()
    r = off.post("/api/v1/students/s1/faces", data=_jpeg(BROKEN["too_dark"]), content_type="image/jpeg")
    assert r.status_code == 201
