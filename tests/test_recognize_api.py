import io

import cv2
import numpy as np
from devtools.shared import sample
from PIL import Image
from recognition_service.recognition.engine import detect_faces
from recognition_service.recognition.images import decode_image
from test_students_api import enrol


def recognize(client, data, **params):
    return client.post("/api/v1/recognize", query_string=params, data=data, content_type="image/jpeg")


def jpeg(bgr) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def test_recognises_enrolled_students_and_not_others(client):
    enrol(client, "obama", "obama.jpg", name="Barack Obama")
    enrol(client, "biden", "biden.jpg", name="Joe Biden")
    r = recognize(client, sample("obama2.jpg"))
    assert r.status_code == 200
    face = r.json["faces"][0]
    assert face["student_id"] == "obama" and face["name"] == "Barack Obama" and face["similarity"] > 0.35
    assert set(r.json["timings_ms"]) >= {"decode_ms", "detect_ms", "embed_ms", "match_ms", "total_ms"}
    assert r.json["model"]["embedding_size"] == 512 and len(r.json["model"]["fingerprint"]) == 64
    assert r.json["image"] == {"width": 626, "height": 1200}
    # Not in the roster: not recognised even though enrolled.
    r = recognize(client, sample("obama2.jpg"), student_ids="biden")
    assert r.json["faces"][0]["student_id"] is None
    r = recognize(client, sample("exif_orientation6.jpg"))
    assert r.json["faces"][0]["student_id"] is None


def test_exif_rotated_photo_is_recognised(client):
    enrol(client, "rotated", "exif_orientation6.jpg")
    upright = decode_image(sample("exif_orientation6.jpg"), max_pixels=10**8, max_side=4096).bgr
    as_upright = recognize(client, jpeg(upright)).json  # same pixels, upright, no EXIF tag
    assert as_upright["faces"][0]["student_id"] == "rotated"
    tagged = recognize(client, sample("exif_orientation6.jpg")).json
    assert tagged["image"] == {"width": 480, "height": 640}  # stored as 640x480, shown portrait
    assert tagged["faces"][0]["student_id"] == "rotated"
    assert np.allclose(tagged["faces"][0]["bbox"], as_upright["faces"][0]["bbox"], atol=6)
    # Read without its tag, the same file puts the face elsewhere: the box above is the rotated one.
    sideways = cv2.imdecode(np.frombuffer(sample("exif_orientation6.jpg"), np.uint8),
                            cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert sideways.shape[:2] == (480, 640)
    raw = recognize(client, jpeg(sideways)).json["faces"][0]["bbox"]
    assert not np.allclose(raw, tagged["faces"][0]["bbox"], atol=30)


def test_five_faces_largest_first(client):
    r = recognize(client, sample("five_faces.jpg"))
    faces = r.json["faces"]
    assert len(faces) == 5
    areas = [(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_odd_but_valid_files_work(client):
    enrol(client, "obama", "obama.jpg")
    for name in ("png_named_as_jpg.jpg", "grayscale_L.png", "large_3024x4032.jpg", "rgba_alpha.png"):
        r = recognize(client, sample(name))
        assert r.status_code == 200 and len(r.json["faces"]) == 1, name
    r = recognize(client, sample("large_3024x4032.jpg"))
    assert r.json["image"] == {"width": 3024, "height": 4032}
    x1, y1, x2, y2 = r.json["faces"][0]["bbox"]
    assert x2 > 1000 and y2 > 1000  # boxes are in the original photo's pixels
    assert recognize(client, sample("no_face.jpg")).json["faces"] == []


def test_tight_portrait_is_padded_before_detection(client, app):
    enrol(client, "obama", "obama.jpg")
    full = decode_image(sample("obama.jpg"), max_pixels=10**8, max_side=4096).bgr
    face = recognize(client, sample("obama.jpg")).json["faces"][0]
    x1, y1, x2, y2 = (int(v) for v in face["bbox"])
    tight = np.ascontiguousarray(full[y1:y2, x1:x2])
    model = app.extensions["recognition"].models.get()
    assert len(model.detect(tight, 640)[0]) == 0  # the detector alone misses it
    assert len(detect_faces(model, tight, 640)[0]) == 1
    assert recognize(client, jpeg(tight)).json["faces"][0]["student_id"] == "obama"


def test_bad_uploads(client, make_app):
    for name in ("truncated.jpg", "corrupted.png"):
        r = recognize(client, sample(name))
        assert r.status_code == 422 and r.json["error"]["code"] == "invalid_image"
    assert recognize(client, b"").json["error"]["code"] == "invalid_image"
    r = client.post("/api/v1/recognize", data={"photo": (io.BytesIO(sample("obama.jpg")), "x.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"]["code"] == "missing_image"
    r = client.post("/api/v1/recognize", json={"image": "base64?"})
    assert r.status_code == 400
    r = recognize(client, sample("obama.jpg"), threshold="high")
    assert r.status_code == 422 and r.json["error"]["field"] == "threshold"

    small = make_app(MAX_UPLOAD_MB=0.1, MAX_IMAGE_PIXELS=500_000).test_client()
    r = recognize(small, sample("obama.jpg"))  # 280 kB > 0.1 MB
    assert r.status_code == 413 and r.json["error"]["code"] == "payload_too_large"
    buf = io.BytesIO()
    Image.new("RGB", (1000, 1000), (90, 90, 90)).save(buf, "JPEG", quality=20)  # 1 Mpx, a few kB
    r = recognize(small, buf.getvalue())
    assert r.status_code == 413 and r.json["error"]["code"] == "image_too_large"


def test_embeddings_endpoint_stores_nothing(client):
    r = client.post("/api/v1/embeddings", data={"image": (io.BytesIO(sample("obama.jpg")), "o.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    face = r.json["faces"][0]
    vec = np.array(face["embedding"])
    assert vec.shape == (512,) and abs(np.linalg.norm(vec) - 1) < 1e-3
    assert len(face["landmarks"]) == 5 and len(face["bbox"]) == 4
    assert client.get("/api/v1/students").json["total"] == 0


def test_the_padded_retry_never_hands_the_detector_a_huge_canvas(client, app, monkeypatch):
    """A tall image with no face: the retry pads a copy scaled to DET_SIZE, not the decoded image."""
    model = app.extensions["recognition"].models.get()
    shapes = []
    real_detect = model.detect

    def recording_detect(bgr, det_size, deadline=None):
        shapes.append(bgr.shape)
        return real_detect(bgr, det_size, deadline)

    monkeypatch.setattr(model, "detect", recording_detect)
    buf = io.BytesIO()
    Image.new("RGB", (2000, 20000), (30, 30, 30)).save(buf, "PNG")
    r = recognize(client, buf.getvalue())
    assert r.status_code == 200 and r.json["faces"] == [] and r.json["image"] == {"width": 2000, "height": 20000}
    # the decoded image (at most DECODE_MAX_SIDE) for the whole-frame pass, its native tiles (views of it,
    # never larger than a tile), then the padded retry
    assert max(shapes[0][:2]) <= 4096 and max(shapes[-1][:2]) <= int(640 * 1.8) + 1, shapes
    assert len(shapes) > 2 and all(h <= 640 and w <= 1024 for h, w, _ in shapes[1:-1]), shapes


def test_extreme_aspect_ratio_is_422_not_500(client):
    buf = io.BytesIO()
    Image.new("L", (8, 5_000_000), 255).save(buf, "PNG")
    r = recognize(client, buf.getvalue())
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_image"
