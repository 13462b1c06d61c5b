#!/usr/bin/env python3
"""Students in bulk: enrol a roster through the HTTP API; after a model change, purge the old model.

    .venv/bin/python python/manage_students.py import --csv roster.csv --photos photos.zip \\
        [--url http://127.0.0.1:8000] [--api-key KEY] [--concurrency 2] [--report rejected.csv]
    .venv/bin/python python/manage_students.py purge-model FINGERPRINT [--force]
    .venv/bin/python python/manage_students.py needs-reenrolment [--model active|shadow]

purge-model and needs-reenrolment use the service's settings (DATABASE_URL or the embedded PostgreSQL,
MODEL_DIR, SHADOW_MODEL_DIR) like manage_api_keys.py; import talks to a running service.

import's CSV columns: student_id, name, photo (a file name inside the folder or zip; several rows per student or
several names separated by ';'). Every photo goes through the service's own validation and enrolment
quality gate, so this works against a remote server too. A second run skips photos already enrolled (by
their sha256). Bad rows (missing files, invalid ids, one id with two names) are reported, not fatal;
every refused photo is written to the report CSV with its reason and quality scores. A photo whose face
already belongs to another student is refused as duplicate_face, naming them (--allow-duplicates: twins).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recognition_service.retry import Backoff  # noqa: E402
from recognition_service.security.csv_injection import SafeCsvWriter  # noqa: E402
from recognition_service.students.store import STUDENT_ID_RE  # noqa: E402

PROG = "manage_students"
COLUMNS = ("student_id", "name", "photo")
BATCH = 10  # photos per request: MAX_ENROL_IMAGES' default
IN_USE_WITHIN_S = 600  # a model some process said it used this recently is in use (they say so every minute)


@dataclass
class Student:
    student_id: str
    name: str
    photos: list[str] = field(default_factory=list)


class PhotoRefused(Exception):
    """A photo the tool will not read (outside the folder, too large); the message says why."""


class Photos:
    """Photo bytes by name, from a folder or a zip. A roster comes from outside the IT team, so a name is
    read only inside the folder (no absolute path, no `..`, no symlink leading out of it), and no photo is
    read past `max_bytes` (the server's upload limit): a zip member is checked by its declared size and
    again while it is read, since a zip bomb's header may lie."""

    def __init__(self, source: Path, max_bytes: int = 20 * 1024 * 1024):
        self.zip = zipfile.ZipFile(source) if zipfile.is_zipfile(source) else None
        self.root = None if self.zip else source.resolve()
        self.max_bytes = max_bytes
        self.full: set[str] = set()
        self.short: dict[str, str | None] = {}  # a bare file name, when only one entry has it
        for entry in self.zip.namelist() if self.zip else []:
            if not entry.endswith("/"):
                self.full.add(entry)
                base = Path(entry).name
                self.short[base] = None if base in self.short else entry

    def _entry(self, name: str) -> str | None:
        return name if name in self.full else self.short.get(name)

    def _path(self, name: str) -> Path:
        """The file a name stands for inside the folder; PhotoRefused when it would lead outside."""
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or "\\" in name or name.startswith("~"):
            raise PhotoRefused("outside the photo folder (absolute path or '..')")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise PhotoRefused("outside the photo folder (a link leading out of it)")
        return path

    def problem(self, name: str) -> str | None:
        """Why this photo cannot be used (None: it can)."""
        try:
            if self.zip:
                entry = self._entry(name)
                if entry is None:
                    return "file not found"
                size = self.zip.getinfo(entry).file_size
            else:
                path = self._path(name)
                if not path.is_file():
                    return "file not found"
                size = path.stat().st_size
        except PhotoRefused as exc:
            return str(exc)
        if size > self.max_bytes:
            return self._too_large(size)
        return None

    def exists(self, name: str) -> bool:
        return self.problem(name) is None

    def _too_large(self, size: int) -> str:
        return f"too large ({size / 1048576:.1f} MB; the upload limit is {self.max_bytes / 1048576:.0f} MB)"

    def read(self, name: str) -> bytes:
        """The photo's bytes, never more than max_bytes read (PhotoRefused beyond)."""
        if self.zip:
            opened = self.zip.open(self._entry(name))
        else:
            opened = self._path(name).open("rb")
        with opened as f:
            data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise PhotoRefused(self._too_large(len(data)) + " once read: its zip entry understated it")
        return data


def read_roster(path: Path, photos: Photos) -> tuple[dict[str, Student], list[dict]]:
    """Students from the CSV, and the problems of the rows that could not be used."""
    problems: list[dict] = []
    students: dict[str, Student] = {}
    text = roster_text(path)
    try:
        _read_rows(io.StringIO(text, newline=""), path, photos, students, problems)
    except csv.Error as exc:  # a field over csv's 128 kB limit, a NUL byte: no roster, just a bad file
        raise SystemExit(f"{PROG}: {path} is not a readable CSV ({exc}); save it from the spreadsheet as "
                         "CSV UTF-8") from None
    return students, problems


def roster_text(path: Path) -> str:
    """The CSV's text in the encodings a spreadsheet exports: UTF-8 with or without a BOM, UTF-16 (with its
    BOM, as Excel's "Unicode text"). Anything else is refused in one line rather than read as mojibake."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    raise SystemExit(f"{PROG}: {path} is neither UTF-8 nor UTF-16 (perhaps Latin-1 or Windows-1252): save it "
                     "from the spreadsheet as CSV UTF-8")


def _read_rows(f, path: Path, photos: Photos, students: dict, problems: list) -> None:
    reader = csv.DictReader(f)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SystemExit(f"{PROG}: {path} has no column {', '.join(missing)} (needs {', '.join(COLUMNS)})")
    extra = [h for h in header if h not in COLUMNS]
    if extra:
        problems.append({"row": 1, "student_id": "", "photo": "", "problem": f"unknown columns ignored: "
                                                                              f"{', '.join(extra)}"})
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        sid, name = row["student_id"], row["name"]
        names = [p.strip() for p in row["photo"].split(";") if p.strip()]
        if not STUDENT_ID_RE.fullmatch(sid):
            problems.append({"row": line, "student_id": sid, "photo": row["photo"],
                             "problem": "invalid student_id (1-128 letters, digits, _ . : @ -)"})
            continue
        known = students.get(sid)
        if known is not None and name and known.name and name != known.name:
            problems.append({"row": line, "student_id": sid, "photo": row["photo"],
                             "problem": f"name {name!r} differs from {known.name!r} on an earlier row"})
            continue
        student = known or students.setdefault(sid, Student(sid, name))
        student.name = student.name or name
        for photo in names:
            problem = photos.problem(photo)
            if problem:
                problems.append({"row": line, "student_id": sid, "photo": photo, "problem": problem})
            elif photo not in student.photos:
                student.photos.append(photo)
        if not names:
            problems.append({"row": line, "student_id": sid, "photo": "", "problem": "no photo"})


class Client:
    """The service's API with retries on 429/503 (the server is busy: wait, never give up a photo)."""

    def __init__(self, url: str, api_key: str | None):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        if api_key:
            self.http.headers["X-API-Key"] = api_key
        self.backoff = Backoff(0.5, 10.0)
        self.busy = Counter()

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        for attempt in range(1, 30):
            r = self.http.request(method, self.url + path, timeout=120, **kwargs)
            if r.status_code not in (429, 503):
                return r
            self.busy[r.status_code] += 1
            time.sleep(max(float(r.headers.get("Retry-After") or 0), self.backoff.delay(attempt)))
        return r


def import_student(client: Client, student: Student, photos: Photos, allow_duplicates: bool = False) -> dict:
    """Enrol one student's photos not enrolled yet; what happened to each. `created`: the student did not
    exist and now has a face (the service creates a student only with their first enrolled photo)."""
    result = {"student_id": student.student_id, "created": False, "enrolled": 0, "skipped": 0, "rejected": []}
    r = client.call("GET", f"/api/v1/students/{student.student_id}/faces")
    new = r.status_code == 404
    if r.status_code == 200:
        have = {f["image_sha256"] for f in r.json()["faces"]}
    elif new:
        have = set()
    else:
        raise RuntimeError(f"GET faces of {student.student_id}: HTTP {r.status_code} {r.text[:200]}")
    todo = []
    for name in student.photos:
        try:
            data = photos.read(name)
        except PhotoRefused as exc:
            result["rejected"].append({"student_id": student.student_id, "photo": name, "reason": "refused_file",
                                       "message": str(exc), "quality": {}})
            continue
        if hashlib.sha256(data).hexdigest() in have:
            result["skipped"] += 1
        else:
            todo.append((name, data))
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        files = [("image", (Path(n).name, data)) for n, data in batch]
        fields = {"name": student.name} if student.name else {}
        if allow_duplicates:
            fields["allow_duplicate"] = "true"
        r = client.call("POST", f"/api/v1/students/{student.student_id}/faces", files=files, data=fields or None)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
        if r.status_code == 201:
            result["enrolled"] += len(body["faces"])
            rejected = body.get("rejected", [])
        else:  # nothing enrolled: the error lists each photo's own reason (error.rejected)
            error = body.get("error", {})
            rejected = error.get("rejected") or [
                {"index": i, "reason": error.get("code", f"http_{r.status_code}"),
                 "message": error.get("message", r.text[:200])} for i in range(len(batch))]
        for item in rejected:
            result["rejected"].append({"student_id": student.student_id, "photo": batch[item["index"]][0],
                                       "reason": item["reason"], "message": item.get("message", ""),
                                       "quality": item.get("quality") or {}})
    result["created"] = new and result["enrolled"] > 0
    result["no_face"] = result["enrolled"] == 0 and result["skipped"] == 0
    return result


def run_import(args) -> int:
    from tqdm import tqdm

    photos = Photos(args.photos, int(args.max_photo_mb * 1024 * 1024))
    students, problems = read_roster(args.csv, photos)
    client = Client(args.url, args.api_key or os.environ.get("API_KEY"))
    results, failures = [], []
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.concurrency)) as pool, \
            tqdm(total=sum(len(s.photos) for s in students.values()), unit="photo", disable=args.quiet,
                 file=sys.stderr) as bar:
        futures = {pool.submit(import_student, client, s, photos, args.allow_duplicates): s
                   for s in students.values()}
        for future in as_completed(futures):
            student = futures[future]
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - one student's failure must not stop the roster
                failures.append({"student_id": student.student_id, "problem": str(exc)})
            bar.update(len(student.photos))
    seconds = time.perf_counter() - started
    rejected = [r for res in results for r in res["rejected"]]
    with args.report.open("w", newline="", encoding="utf-8") as f:
        writer = SafeCsvWriter(f)
        writer.writerow(["student_id", "photo", "reason", "message", "eye_distance_px", "sharpness", "brightness",
                         "yaw", "roll_deg"])
        for r in sorted(rejected, key=lambda r: (r["student_id"], r["photo"])):
            q = r["quality"]
            writer.writerow([r["student_id"], r["photo"], r["reason"], r["message"], q.get("eye_distance_px", ""),
                             q.get("sharpness", ""), q.get("brightness", ""), q.get("yaw", ""), q.get("roll_deg", "")])
        for p in problems:
            writer.writerow([p["student_id"], p["photo"], "bad_row", f"row {p['row']}: {p['problem']}"])
        for p in failures:
            writer.writerow([p["student_id"], "", "failed", p["problem"]])
    enrolled = sum(r["enrolled"] for r in results)
    summary = {
        "students": len(students), "students_created": sum(r["created"] for r in results),
        "students_without_a_face": sum(r["no_face"] for r in results),  # every photo refused: see the report
        "faces_enrolled": enrolled, "photos_skipped_already_enrolled": sum(r["skipped"] for r in results),
        "photos_rejected": dict(Counter(r["reason"] for r in rejected)), "bad_rows": len(problems),
        "students_failed": len(failures), "server_busy_retries": dict(client.busy), "seconds": round(seconds, 1),
        "photos_per_minute": round(enrolled / seconds * 60, 1) if seconds else None, "report": str(args.report),
    }
    print(json_dump(summary))
    return 1 if failures else 0


def _settings_and_database():
    """The service's settings and its database URL (starting the embedded PostgreSQL when it is the one)."""
    from recognition_service.serving import preflight

    try:
        settings = preflight.load_checked_settings()
        return settings, preflight.prepare_database(settings, for_serving=False)
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)


def _models_in_use(settings) -> dict[str, str]:
    """Fingerprint -> setting, for the configured model and shadow model (read from the files, not loaded)."""
    from recognition_service.recognition.model import recognizer_fingerprint

    found = {}
    for setting, pack in (("MODEL_DIR", settings.model_path), ("SHADOW_MODEL_DIR", settings.shadow_path)):
        if pack is not None and pack.is_dir():
            try:
                found[recognizer_fingerprint(pack)[0]] = setting
            except FileNotFoundError:
                pass
    return found


def _may_be_alive(user: dict) -> bool:
    """A process that recorded a model is taken as running, unless it was on this host and is gone (killed
    without stopping: its record stays until it ages out)."""
    import socket

    import psutil

    return user["host"] != socket.gethostname() or psutil.pid_exists(user["pid"])


def run_purge(args) -> int:
    """Delete a model's embeddings (after a switch): never the model in use, never a photo's last embedding."""
    import psycopg2
    from recognition_service.model_change import store

    prefix = args.fingerprint.strip().lower()
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        print(f"{PROG}: give the model's fingerprint, or at least its first 8 hex characters (GET /api/v1/models "
              "shows them)", file=sys.stderr)
        return 1
    settings, url = _settings_and_database()
    with psycopg2.connect(url) as conn:
        matches = store.resolve_fingerprint(conn, prefix)
        if len(matches) != 1:
            print(f"{PROG}: {'no' if not matches else 'more than one'} stored model fingerprint starts with "
                  f"{args.fingerprint!r}" + (f": {', '.join(m[:16] for m in matches)}" if matches else ""),
                  file=sys.stderr)
            return 1
        fingerprint = matches[0]
        # What the running service uses is what its processes recorded (each says so every minute); this
        # shell's own MODEL_DIR may differ from the service's, so it is only a second guard.
        users = [u for u in store.in_use(conn, fingerprint, IN_USE_WITHIN_S) if _may_be_alive(u)]
        if users:
            who = users[0]
            print(f"{PROG}: {fingerprint[:12]} is in use: the {who['setting']} of {who['host']} pid {who['pid']} "
                  f"(seen {who['seen_at']}; {len(users)} process(es) in the last {IN_USE_WITHIN_S // 60:.0f} min); "
                  "switch every server away from it first", file=sys.stderr)
            return 1
        in_use = _models_in_use(settings).get(fingerprint)
        if in_use:
            print(f"{PROG}: {fingerprint[:12]} is the model of {in_use}; switch away from it first", file=sys.stderr)
            return 1
        counts = store.purge_counts(conn, fingerprint)
        if counts["photos_only_in_this_model"] and not args.force:
            print(f"{PROG}: {counts['photos_only_in_this_model']} enrolled photo(s) have no embedding of another "
                  "model: purging would leave those students unrecognisable. Let the new model embed them (kept "
                  "crops, see /api/v1/models) or enrol them again, or pass --force", file=sys.stderr)
            return 1
        removed = store.purge_model(conn, fingerprint)
    conn.close()
    print(json_dump({"fingerprint": fingerprint, "embeddings_removed": removed,
                     "photos_left_without_embedding": counts["photos_only_in_this_model"]}))
    return 0


def run_needs_reenrolment(args) -> int:
    """The enrolled photos a model cannot match and has no kept crop to embed: those students need new photos."""
    import psycopg2
    from recognition_service.model_change import store
    from recognition_service.recognition.model import recognizer_fingerprint

    settings, url = _settings_and_database()
    pack = settings.shadow_path if args.model == "shadow" else settings.model_path
    if pack is None:
        print(f"{PROG}: SHADOW_MODEL_DIR is not set", file=sys.stderr)
        return 1
    fingerprint = recognizer_fingerprint(pack)[0]
    with psycopg2.connect(url) as conn:
        photos = store.needs_reenrolment(conn, fingerprint, limit=1_000_000)
    conn.close()
    writer = csv.writer(sys.stdout)
    writer.writerow(["student_id", "name", "face_id", "image_sha256", "enrolled_at"])
    for p in photos:
        writer.writerow([p["student_id"], p["name"], p["face_id"], p["image_sha256"], p["enrolled_at"]])
    return 0


def json_dump(value) -> str:
    import json

    return json.dumps(value, indent=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="enrol a roster: a CSV (student_id,name,photo) and a folder or zip of photos")
    imp.add_argument("--csv", type=Path, required=True, help="the roster CSV: columns student_id, name, photo")
    imp.add_argument("--photos", type=Path, required=True, help="a folder or a .zip holding the photos named in it")
    imp.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    imp.add_argument("--api-key", help="an API key (default: $API_KEY)")
    imp.add_argument("--concurrency", type=int, default=2,
                     help="students enrolled at once (default 2; keep it at or below the server's workers)")
    imp.add_argument("--report", type=Path, default=Path("import-report.csv"),
                     help="CSV of every refused photo and bad row (default import-report.csv)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.add_argument("--allow-duplicates", action="store_true",
                     help="enrol a photo even when its face already belongs to another student (twins); by "
                          "default it is refused as duplicate_face, naming that student, in the report")
    imp.add_argument("--max-photo-mb", type=float, default=20,
                     help="the server's upload limit (its MAX_UPLOAD_MB, default 20): larger photos are not read")
    purge = sub.add_parser("purge-model", help="delete every embedding of a model you switched away from "
                                               "(its fingerprint, or the 12-character prefix the API shows)")
    purge.add_argument("fingerprint")
    purge.add_argument("--force", action="store_true",
                       help="purge even when some photos have no embedding of any other model")
    needs = sub.add_parser("needs-reenrolment", help="CSV of the enrolled photos a model cannot match and has no "
                                                     "kept crop to embed (those students need a new photo)")
    needs.add_argument("--model", choices=("active", "shadow"), default="shadow",
                       help="MODEL_DIR's model or SHADOW_MODEL_DIR's (default)")
    args = parser.parse_args(argv)
    if args.command == "purge-model":
        return run_purge(args)
    if args.command == "needs-reenrolment":
        return run_needs_reenrolment(args)
    if not args.csv.is_file():
        parser.error(f"--csv {args.csv} is not a file")
    if not args.photos.exists():
        parser.error(f"--photos {args.photos} does not exist")
    try:
        return run_import(args)
    except requests.ConnectionError as exc:
        print(f"{PROG}: cannot reach the service at {args.url}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
