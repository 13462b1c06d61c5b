"""Bulk import end to end: manage_students.py against a real Gunicorn (two workers), a generated roster of every
identity in ../shared/faces and their photos in a zip; a second run; a roster with broken rows."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile

import requests
from devtools.shared import IDENTITIES, REPO_ROOT, SAMPLES
from session_helpers import FAST

TOOL = REPO_ROOT / "python" / "manage_students.py"


def _run(url: str, roster, photos, report, *extra) -> dict:
    done = subprocess.run([sys.executable, str(TOOL), "import", "--csv", str(roster), "--photos", str(photos),
                           "--url", url, "--report", str(report), "--quiet", *extra], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_whole_roster_imports_resumes_and_reports_what_it_refused(gunicorn_servers, tmp_path):
    server = gunicorn_servers(**{**FAST, "WORKERS": 2})
    people = sorted(p for p in IDENTITIES.iterdir() if p.is_dir())
    photos = tmp_path / "photos.zip"
    roster = tmp_path / "roster.csv"
    total = 0
    with zipfile.ZipFile(photos, "w") as z, roster.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "name", "photo"])
        for person in people:
            files = sorted(person.iterdir())
            for p in files:
                z.write(p, f"{person.name}/{p.name}")
            total += len(files)
            half = len(files) // 2  # one row with a ';' list, then one row per photo
            writer.writerow([person.name, person.name.replace("_", " "),
                             ";".join(f"{person.name}/{p.name}" for p in files[:half])])
            for p in files[half:]:
                writer.writerow([person.name, "", f"{person.name}/{p.name}"])
    first = _run(server.url, roster, photos, tmp_path / "first.csv")
    rejected = list(csv.DictReader((tmp_path / "first.csv").open()))
    assert first["students"] == len(people) and first["students_created"] == len(people)
    assert first["students_without_a_face"] == 0
    assert first["faces_enrolled"] + len(rejected) == total and first["bad_rows"] == 0, first
    assert sum(first["photos_rejected"].values()) == len(rejected)
    assert all(r["reason"] and r["message"] for r in rejected)
    assert first["server_busy_retries"].get("503") is None  # never database_busy
    listed = requests.get(server.url + "/api/v1/students", params={"limit": 1000}, timeout=10).json()
    assert listed["total"] == len(people)
    assert sum(s["face_count"] for s in listed["students"]) == first["faces_enrolled"]
    print(f"import: {first['faces_enrolled']} faces in {first['seconds']} s ({first['photos_per_minute']}/min), "
          f"{len(rejected)} refused: {first['photos_rejected']}")

    again = _run(server.url, roster, photos, tmp_path / "again.csv")  # resumable: nothing new
    assert again["faces_enrolled"] == 0 and again["students_created"] == 0
    assert again["photos_skipped_already_enrolled"] == first["faces_enrolled"]

    broken = tmp_path / "broken.csv"
    extra = people[0]
    first_photo = f"{extra.name}/{sorted(extra.iterdir())[0].name}"
    with zipfile.ZipFile(photos, "a") as z:  # a student whose every photo is refused, each for its own reason
        for name in ("no_face.jpg", "corrupted.png", "five_faces.jpg"):
            z.write(SAMPLES / name, f"odd/{name}")
    broken.write_text("student_id,name,photo,grade\n"
                      f"new_one,New One,{first_photo},5\n"
                      "bad id!,Bad,x.jpg,5\n"
                      "lost,Lost,nowhere.jpg,5\n"
                      f"new_one,Someone Else,{first_photo},5\n"
                      "faceless,Faceless,odd/no_face.jpg;odd/corrupted.png;odd/five_faces.jpg,5\n")
    third = _run(server.url, broken, photos, tmp_path / "broken-report.csv")
    report = list(csv.DictReader((tmp_path / "broken-report.csv").open()))
    problems = [r for r in report if r["reason"] == "bad_row"]
    messages = " | ".join(p["message"] for p in problems)
    assert third["bad_rows"] == 4 and "unknown columns" in messages and "invalid student_id" in messages
    assert "file not found" in messages and "differs from" in messages
    # the good row's photo is already extra's face: refused under a new id, naming whose it is; nobody created
    (dup,) = [r for r in report if r["student_id"] == "new_one" and r["reason"] != "bad_row"]
    assert dup["reason"] == "duplicate_face" and extra.name in dup["message"], dup
    assert requests.get(server.url + "/api/v1/students/new_one", timeout=10).status_code == 404
    # every photo of faceless refused: each with its own reason, and not counted as created
    reasons = {r["photo"]: r["reason"] for r in report if r["student_id"] == "faceless"}
    assert reasons == {"odd/no_face.jpg": "no_face", "odd/corrupted.png": "invalid_image",
                       "odd/five_faces.jpg": "multiple_faces"}, reasons
    assert third["students_created"] == 0 and third["students_without_a_face"] == 3, third  # lost too
    assert requests.get(server.url + "/api/v1/students/faceless", timeout=10).status_code == 404

    fourth = _run(server.url, broken, photos, tmp_path / "twins.csv", "--allow-duplicates")  # twins, on purpose
    assert fourth["faces_enrolled"] == 1 and fourth["students_created"] == 1, fourth
    assert requests.get(server.url + "/api/v1/students/new_one", timeout=10).json()["name"] == "New One"
