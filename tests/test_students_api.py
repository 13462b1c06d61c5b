import io

import psycopg2
from devtools.shared import sample


def enrol(client, student_id, *names, **form):
    files = [(io.BytesIO(sample(n)), n) for n in names]
    return client.post(f"/api/v1/students/{student_id}/faces", data={"image": files, **form},
                       content_type="multipart/form-data")


def test_create_read_update_list_delete(client):
    r = client.put("/api/v1/students/s-001", json={"name": "Ana"})
    assert r.status_code == 201 and r.json["name"] == "Ana" and r.json["face_count"] == 0
    r = client.put("/api/v1/students/s-001", json={"name": "Ana Maria"})
    assert r.status_code == 200 and r.json["name"] == "Ana Maria"
    client.put("/api/v1/students/s-002", json={"name": "Bo"})
    r = client.get("/api/v1/students?limit=1&offset=1")
    assert r.json["total"] == 2 and [s["student_id"] for s in r.json["students"]] == ["s-002"]
    r = client.get("/api/v1/students/s-001")
    assert set(r.json) >= {"student_id", "name", "face_count", "created_at"}
    assert client.delete("/api/v1/students/s-001").status_code == 204
    assert client.get("/api/v1/students/s-001").status_code == 404
    assert client.delete("/api/v1/students/s-001").status_code == 404


def test_bad_input_is_a_clear_error_and_changes_nothing(client):
    r = client.put("/api/v1/students/s1", data="name=x", content_type="text/plain")
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_json"
    r = client.put("/api/v1/students/s1", json={"name": ""})
    assert r.status_code == 422 and r.json["error"]["field"] == "name"
    r = client.put("/api/v1/students/bad%20id", json={"name": "x"})
    assert r.status_code == 422 and r.json["error"]["field"] == "student_id"
    r = client.get("/api/v1/students?limit=0")
    assert r.status_code == 422 and r.json["error"]["field"] == "limit"
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    assert client.get("/api/v1/students").json["total"] == 0


def test_enrolment_accepts_single_faces_and_rejects_the_rest(client):
    r = enrol(client, "obama", "obama.jpg", "five_faces.jpg", "no_face.jpg", "corrupted.png", name="Barack Obama")
    assert r.status_code == 201, r.json
    assert len(r.json["faces"]) == 1 and r.json["faces"][0]["face_id"] > 0
    reasons = {x["index"]: x["reason"] for x in r.json["rejected"]}
    assert reasons == {1: "multiple_faces", 2: "no_face", 3: "invalid_image"}
    student = client.get("/api/v1/students/obama").json
    assert student["name"] == "Barack Obama" and student["face_count"] == 1


def test_same_photo_twice_is_one_face(client):
    first = enrol(client, "obama", "obama.jpg").json["faces"][0]["face_id"]
    second = enrol(client, "obama", "obama.jpg").json["faces"][0]["face_id"]
    assert first == second
    assert client.get("/api/v1/students/obama").json["face_count"] == 1


def test_enrolment_with_nothing_usable_is_422_and_creates_nothing(client):
    r = enrol(client, "nobody", "no_face.jpg")
    assert r.status_code == 422 and r.json["error"]["code"] == "no_face"
    r = enrol(client, "nobody", "truncated.jpg")
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_image"
    assert client.get("/api/v1/students/nobody").status_code == 404


def test_enrolment_from_raw_body_creates_the_student(client):
    r = client.post("/api/v1/students/biden/faces", data=sample("biden.jpg"), content_type="image/jpeg")
    assert r.status_code == 201
    assert client.get("/api/v1/students/biden").json["name"] == "biden"


def test_delete_face_and_delete_student_remove_embeddings(client, database_url):
    face_id = enrol(client, "obama", "obama.jpg", "obama2.jpg").json["faces"][0]["face_id"]
    assert client.delete(f"/api/v1/students/obama/faces/{face_id}").status_code == 204
    assert client.delete(f"/api/v1/students/obama/faces/{face_id}").status_code == 404
    assert client.get("/api/v1/students/obama").json["face_count"] == 1
    assert client.delete("/api/v1/students/obama").status_code == 204
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM faces")
        assert cur.fetchone()[0] == 0
