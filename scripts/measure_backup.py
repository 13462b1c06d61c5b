#!/usr/bin/env python3
"""How long a backup and a restore of a school take, and how big the backup is (python/manage_data.py).

A throwaway embedded PostgreSQL is filled with N students (default 1,000), each with 3 enrolled photos as
the service keeps them: a 512-float embedding per photo and model, and the photo's aligned 112x112 face
crop as PNG (made from real photos of ../shared/faces, so they compress like real crops; the embeddings
are random unit vectors of the real size: pg_dump does not care what they mean), plus one class session
a day for a term with recognitions. Then `manage_data.py backup`, `check` and `restore` into a fresh
folder are timed. Prints JSON.

    .venv/bin/python scripts/measure_backup.py --students 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg2
import psycopg2.extras

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import manage_data  # noqa: E402
from devtools.shared import identities  # noqa: E402

TOOL = [sys.executable, str(ROOT / "python" / "manage_data.py")]


def crops() -> list[bytes]:
    """PNG 112x112 face-sized crops of real photos (centre of each photo)."""
    out = []
    for person in identities(min_photos=1):
        for photo in sorted(person.iterdir())[:3]:
            image = cv2.imread(str(photo))
            if image is None:
                continue
            h, w = image.shape[:2]
            side = min(h, w) // 2
            face = image[h // 2 - side // 2:h // 2 + side // 2, w // 2 - side // 2:w // 2 + side // 2]
            out.append(cv2.imencode(".png", cv2.resize(face, (112, 112), interpolation=cv2.INTER_AREA))[1].tobytes())
    return out


def fill(url: str, students: int, photos: int, sessions: int) -> None:
    rng = np.random.default_rng(0)
    pngs = crops()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for start in range(0, students, 200):
            ids = [f"s-{i:05d}" for i in range(start, min(students, start + 200))]
            psycopg2.extras.execute_values(cur, "INSERT INTO students (student_id, name) VALUES %s",
                                           [(sid, f"Student {sid}") for sid in ids])
            faces, kept = [], []
            for sid in ids:
                for k in range(photos):
                    sha = hashlib.sha256(f"{sid}/{k}".encode()).hexdigest()
                    vector = rng.normal(size=512).astype(np.float32)
                    vector /= np.linalg.norm(vector)
                    faces.append((sid, "buffalo_l", psycopg2.Binary(vector.tobytes()), 0.8, [10, 10, 120, 140], sha))
                    kept.append((sid, sha, psycopg2.Binary(pngs[int(rng.integers(len(pngs)))])))
            psycopg2.extras.execute_values(cur, """INSERT INTO faces (student_id, model_fingerprint, embedding,
                                                   det_score, bbox, image_sha256) VALUES %s""", faces)
            psycopg2.extras.execute_values(cur, "INSERT INTO face_crops (student_id, image_sha256, crop) VALUES %s",
                                           kept)
        for s in range(sessions):
            cur.execute("""INSERT INTO sessions (slot_id, callback_url, frame_interval_ms, status, stopped_at)
                           VALUES (%s, 'http://backend/cb', 1000, 'stopped', now()) RETURNING session_id""", (s,))
            session_id = cur.fetchone()[0]
            present = rng.choice(students, size=min(30, students), replace=False)
            psycopg2.extras.execute_values(
                cur, """INSERT INTO session_recognitions (session_id, student_id, name, camera_id, similarity,
                                                          best_similarity) VALUES %s""",
                [(session_id, f"s-{i:05d}", f"Student s-{i:05d}", 1, 0.5, 0.6) for i in present])


def timed(args: list[str], env: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return round(time.perf_counter() - started, 2), json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--photos", type=int, default=3, help="enrolled photos per student (default 3)")
    parser.add_argument("--sessions", type=int, default=600, help="past class sessions, 30 recognitions each")
    args = parser.parse_args()
    from recognition_service.storage.embedded_pg import start_embedded_postgres
    from recognition_service.storage.migrate import apply_migrations

    with tempfile.TemporaryDirectory(prefix="recognizer-backup-") as tmp:
        tmp = Path(tmp)
        url = start_embedded_postgres(tmp / "school")
        with psycopg2.connect(url) as conn:
            apply_migrations(conn)
        fill(url, args.students, args.photos, args.sessions)
        dump = tmp / "school.dump"
        backup_s, backed = timed(TOOL + ["backup", str(dump)], {"DATABASE_URL": url})
        check_s, _ = timed(TOOL + ["check", str(dump)], {})
        restore_s, restored = timed(TOOL + ["restore", str(dump)], {"DATABASE_URL": "",
                                                                     "DATA_DIR": str(tmp / "restored")})
        assert restored["counts"] == backed["counts"], (restored, backed)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            db_bytes = cur.fetchone()[0]
        manage_data._stop_embedded(tmp / "school" / "pgdata")
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "students": args.students,
                      "photos_per_student": args.photos, "sessions": args.sessions, "counts": backed["counts"],
                      "database_mb": round(db_bytes / 1e6, 1), "backup_mb": round(backed["bytes"] / 1e6, 1),
                      "backup_s": backup_s, "check_s": check_s, "restore_s": restore_s}, indent=2))


if __name__ == "__main__":
    main()
