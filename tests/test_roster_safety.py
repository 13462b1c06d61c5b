"""A roster from outside the IT team cannot be turned against its user (manage_students.py import): photo
names leading out of the photo folder, zip bombs, formula cells in the report, spreadsheet encodings."""

from __future__ import annotations

import csv
import io
import zipfile

import manage_students
import pytest
from devtools.shared import sample


def roster(path, rows, encoding="utf-8"):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student_id", "name", "photo"])
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_photo_names_leading_out_of_the_folder_are_refused_and_never_read(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ok.jpg").write_bytes(sample("obama.jpg"))
    secret = tmp_path / "secret.txt"
    secret.write_text("the school's secrets")
    (photos / "link.jpg").symlink_to(secret)
    (photos / "inside").mkdir()
    (photos / "inside" / "fine.jpg").write_bytes(sample("obama2.jpg"))
    rows = [("s1", "One", "ok.jpg"), ("s2", "Two", "../secret.txt"), ("s3", "Three", str(secret)),
            ("s4", "Four", "link.jpg"), ("s5", "Five", "inside/../../secret.txt"), ("s6", "Six", "inside/fine.jpg")]
    folder = manage_students.Photos(photos)
    students, problems = manage_students.read_roster(roster(tmp_path / "r.csv", rows), folder)
    assert {sid: s.photos for sid, s in students.items() if s.photos} == {"s1": ["ok.jpg"], "s6": ["inside/fine.jpg"]}
    refused = {p["student_id"]: p["problem"] for p in problems if p["photo"]}
    assert set(refused) == {"s2", "s3", "s4", "s5"} and all("outside the photo folder" in m for m in refused.values())
    with pytest.raises(manage_students.PhotoRefused):
        folder.read("link.jpg")


def test_a_zip_bomb_is_refused_by_its_size_before_it_is_read(tmp_path):
    bomb = tmp_path / "photos.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.jpg", sample("obama.jpg"))
        with z.open("huge.jpg", "w", force_zip64=True) as member:  # 64 MB of zeros in a few kB
            block = bytes(1 << 20)
            for _ in range(64):
                member.write(block)
    assert bomb.stat().st_size < 1_000_000
    photos = manage_students.Photos(bomb, max_bytes=20 * 1024 * 1024)
    students, problems = manage_students.read_roster(roster(tmp_path / "r.csv", [("s1", "One", "ok.jpg"),
                                                                                ("s2", "Two", "huge.jpg")]), photos)
    assert students["s1"].photos == ["ok.jpg"] and not students["s2"].photos
    assert [p["problem"] for p in problems if p["student_id"] == "s2"] == [
        "too large (64.0 MB; the upload limit is 20 MB)"]
    with pytest.raises(manage_students.PhotoRefused):  # read anyway: stopped at the limit, not at 64 MB
        photos.read("huge.jpg")


def test_report_cells_cannot_run_as_formulas(tmp_path):
    out = io.StringIO()
    writer = manage_students.SafeCsvWriter(out)
    writer.writerow(["=HYPERLINK(\"http://evil.example\",\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok",
                     -12.5, "Anne-Marie"])
    cells = next(csv.reader(io.StringIO(out.getvalue())))
    assert cells[:6] == ["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx"]
    assert cells[6:] == ["ok", "-12.5", "Anne-Marie"]  # numbers stay numbers; a hyphen inside is fine


def test_rosters_as_spreadsheets_save_them_and_the_rest_in_one_line(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(sample("obama.jpg"))
    rows = [("s1", "Zoë Ångström", "a.jpg")]
    for encoding in ("utf-8", "utf-8-sig", "utf-16"):
        students, _ = manage_students.read_roster(roster(tmp_path / f"{encoding}.csv", rows, encoding),
                                                  manage_students.Photos(photos))
        assert students["s1"].name == "Zoë Ångström", encoding
    for path, words in ((roster(tmp_path / "latin1.csv", rows, "latin-1"), "neither UTF-8 nor UTF-16"),
                        (roster(tmp_path / "huge.csv", [("s1", "x" * 200_000, "a.jpg")]), "not a readable CSV")):
        with pytest.raises(SystemExit) as refused:
            manage_students.read_roster(path, manage_students.Photos(photos))
        message = str(refused.value)
        assert words in message and "\n" not in message, message
