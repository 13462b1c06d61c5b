"""Identification accuracy on ../shared/faces/identities through the HTTP API, at the default threshold."""

import io

from devtools.shared import IDENTITIES

ENROL_PER_PERSON = 2
LEAVE_OUT_EVERY = 5  # every 5th person is not enrolled: their photos must come back unrecognised


def _photos(person_dir):
    return sorted(p for p in person_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _largest_face_id(client, path):
    r = client.post("/api/v1/recognize", data=path.read_bytes(), content_type="image/jpeg")
    assert r.status_code == 200, (path, r.json)
    faces = r.json["faces"]
    return faces[0]["student_id"] if faces else None


def test_identification_accuracy_on_shared_identities(client):
    people = sorted(p for p in IDENTITIES.iterdir() if p.is_dir())
    assert len(people) == 52
    enrolled, left_out, probes = [], [], []
    for i, person in enumerate(people):
        photos = _photos(person)
        if i % LEAVE_OUT_EVERY == LEAVE_OUT_EVERY - 1:
            left_out.append(person)
            continue
        accepted, tried = 0, 0
        for photo in photos:
            if accepted == ENROL_PER_PERSON:
                break
            tried += 1
            r = client.post(f"/api/v1/students/{person.name}/faces",
                            data={"image": (io.BytesIO(photo.read_bytes()), photo.name)},
                            content_type="multipart/form-data")
            accepted += r.status_code == 201
        assert accepted >= 1, person.name
        enrolled.append(person)
        probes += [(person.name, p) for p in photos[tried:]]

    correct = sum(_largest_face_id(client, path) == name for name, path in probes)
    unknown_photos = [p for person in left_out for p in _photos(person)]
    rejected = sum(_largest_face_id(client, path) is None for path in unknown_photos)
    accuracy = correct / len(probes)
    rejection = rejected / len(unknown_photos)
    print(f"\nidentification: {correct}/{len(probes)} = {accuracy:.1%} correct "
          f"({len(enrolled)} people enrolled, {ENROL_PER_PERSON} photos each)")
    print(f"open set: {rejected}/{len(unknown_photos)} = {rejection:.1%} of photos of "
          f"{len(left_out)} people not enrolled came back unrecognised")
    assert len(probes) >= 100 and len(unknown_photos) >= 30
    assert accuracy >= 0.97
    assert rejection >= 0.95
