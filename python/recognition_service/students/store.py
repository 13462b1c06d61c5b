"""Students and their enrolled faces: plain functions that take a connection."""

from __future__ import annotations

import json
import re

import numpy as np

from recognition_service.errors import ValidationFailed

STUDENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")

_STUDENT_COLUMNS = """s.student_id, s.name, s.created_at, s.updated_at,
    (SELECT count(DISTINCT f.image_sha256) FROM faces f WHERE f.student_id = s.student_id) AS face_count"""


def check_student_id(student_id: str) -> str:
    """Return the id, or raise 422 if it is not 1-128 letters, digits or _.:@-"""
    if not STUDENT_ID_RE.fullmatch(student_id):
        raise ValidationFailed("student_id must be 1-128 characters: letters, digits and _ . : @ - "
                               "(starting with a letter or digit)", details={"field": "student_id"})
    return student_id


def _student_row(row) -> dict:
    student_id, name, created_at, updated_at, face_count = row
    return {"student_id": student_id, "name": name, "face_count": face_count,
            "created_at": created_at.isoformat(), "updated_at": updated_at.isoformat()}


def upsert_student(conn, student_id: str, name: str) -> tuple[dict, bool]:
    """Create or rename a student; return (student, created)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO students (student_id, name) VALUES (%s, %s) "
            "ON CONFLICT (student_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now() "
            "RETURNING (xmax = 0)", (student_id, name))
        created = cur.fetchone()[0]
    return get_student(conn, student_id), created


def ensure_student(conn, student_id: str, name: str | None) -> None:
    """Create the student when absent (named `name`, else by the id); rename when a name is given."""
    with conn.cursor() as cur:
        if name:
            cur.execute("INSERT INTO students (student_id, name) VALUES (%s, %s) ON CONFLICT (student_id) "
                        "DO UPDATE SET name = EXCLUDED.name, updated_at = now()", (student_id, name))
        else:
            cur.execute("INSERT INTO students (student_id, name) VALUES (%s, %s) "
                        "ON CONFLICT (student_id) DO NOTHING", (student_id, student_id))


def get_student(conn, student_id: str) -> dict | None:
    """One student with its face count, or None."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_STUDENT_COLUMNS} FROM students s WHERE s.student_id = %s", (student_id,))
        row = cur.fetchone()
    return _student_row(row) if row else None


def list_students(conn, limit: int, offset: int) -> tuple[list[dict], int]:
    """A page of students ordered by id, and the total count."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_STUDENT_COLUMNS} FROM students s ORDER BY s.student_id LIMIT %s OFFSET %s",
                    (limit, offset))
        rows = cur.fetchall()
        cur.execute("SELECT count(*) FROM students")
        total = cur.fetchone()[0]
    return [_student_row(r) for r in rows], total


def search_students(conn, query: str, limit: int) -> list[dict]:
    """Students whose id or name contains `query` (case-insensitive), by id."""
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with conn.cursor() as cur:
        cur.execute(f"""SELECT {_STUDENT_COLUMNS} FROM students s
                        WHERE s.student_id ILIKE %s OR s.name ILIKE %s ORDER BY s.student_id LIMIT %s""",
                    (pattern, pattern, limit))
        return [_student_row(r) for r in cur.fetchall()]


def list_faces(conn, student_id: str) -> list[dict]:
    """A student's enrolled photos, one entry each: the first face id, detection score, size, quality, the
    models that have an embedding of it (fingerprint prefixes) and whether its crop is kept for re-embedding."""
    with conn.cursor() as cur:
        cur.execute("""SELECT face_id, det_score, bbox, model_fingerprint, created_at, quality, image_sha256 FROM faces
                       WHERE student_id = %s ORDER BY face_id""", (student_id,))
        rows = cur.fetchall()
        cur.execute("SELECT image_sha256 FROM face_crops WHERE student_id = %s", (student_id,))
        kept = {r[0] for r in cur.fetchall()}
    photos: dict[str, dict] = {}
    for r in rows:
        photo = photos.get(r[6])
        if photo is None:
            photos[r[6]] = {"face_id": r[0], "det_score": round(float(r[1]), 3),
                            "size_px": round(min(r[2][2] - r[2][0], r[2][3] - r[2][1])), "fingerprint": r[3][:12],
                            "models": [r[3][:12]], "crop_kept": r[6] in kept,
                            "created_at": r[4].isoformat(timespec="seconds"), "quality": r[5] or {},
                            "image_sha256": r[6]}
        else:
            photo["models"].append(r[3][:12])
    return list(photos.values())


def add_face(conn, student_id: str, *, fingerprint: str, embedding: np.ndarray, det_score: float,
             bbox: list[float], image_sha256: str, quality: dict | None = None,
             crop_png: bytes | None = None) -> tuple[int, bool]:
    """Store one embedding (and the photo's aligned crop, when kept); the same photo enrolled twice returns
    the existing face. Returns (face_id, new)."""
    if crop_png is not None:
        add_crop(conn, student_id, image_sha256, crop_png)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO faces (student_id, model_fingerprint, embedding, det_score, bbox, image_sha256, quality) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (student_id, model_fingerprint, image_sha256) "
            "DO NOTHING RETURNING face_id",
            (student_id, fingerprint, np.ascontiguousarray(embedding, np.float32).tobytes(),
             float(det_score), bbox, image_sha256, json.dumps(quality) if quality else None))
        row = cur.fetchone()
        if row:
            return row[0], True
        cur.execute("SELECT face_id FROM faces WHERE student_id = %s AND model_fingerprint = %s "
                    "AND image_sha256 = %s", (student_id, fingerprint, image_sha256))
        return cur.fetchone()[0], False


def add_crop(conn, student_id: str, image_sha256: str, png: bytes) -> None:
    """Keep the aligned crop of an enrolled photo (KEEP_FACE_CROPS), for a later model to embed."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO face_crops (student_id, image_sha256, crop) VALUES (%s, %s, %s) "
                    "ON CONFLICT (student_id, image_sha256) DO NOTHING", (student_id, image_sha256, png))


def delete_face(conn, student_id: str, face_id: int) -> bool:
    """Delete one enrolled photo of a student: its embeddings under every model and its kept crop."""
    with conn.cursor() as cur:
        cur.execute("SELECT image_sha256 FROM faces WHERE student_id = %s AND face_id = %s", (student_id, face_id))
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute("DELETE FROM faces WHERE student_id = %s AND image_sha256 = %s", (student_id, row[0]))
        cur.execute("DELETE FROM face_crops WHERE student_id = %s AND image_sha256 = %s", (student_id, row[0]))
        return True


def names_for(conn, student_ids: set[str]) -> dict[str, str]:
    """Names of the given students."""
    if not student_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute("SELECT student_id, name FROM students WHERE student_id = ANY(%s)", (list(student_ids),))
        return dict(cur.fetchall())


def enrollment_counts(conn, fingerprint: str | None) -> dict:
    """Embeddings of the loaded model and of other models (ignored by matching, kept for a switch back)."""
    with conn.cursor() as cur:
        cur.execute("SELECT model_fingerprint = %s, count(*) FROM faces GROUP BY 1", (fingerprint or "",))
        counts = dict(cur.fetchall())
    return {"current_model": counts.get(True, 0), "other_models": counts.get(False, 0)}
