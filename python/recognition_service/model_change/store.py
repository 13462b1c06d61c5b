"""A model change's SQL: kept crops waiting for a model's embedding, the re-embedding job's lease and
progress, shadow agreement, and purging a model's embeddings. Plain functions that take a connection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recognition_service.students.store import add_face


class JobLost(Exception):
    """Another runner holds the re-embedding job now (this one's lease expired): stop, write nothing."""


@dataclass(frozen=True)
class PendingCrop:
    """A kept crop with no embedding of the target model yet, and what its first face recorded."""

    student_id: str
    image_sha256: str
    png: bytes
    det_score: float
    bbox: list[float]
    quality: dict | None


_MISSING = """NOT EXISTS (SELECT 1 FROM faces m WHERE m.student_id = c.student_id
                                            AND m.image_sha256 = c.image_sha256 AND m.model_fingerprint = %s)"""


def has_pending(conn, fingerprint: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM face_crops c WHERE {_MISSING})", (fingerprint,))
        return cur.fetchone()[0]


def pending_crops(conn, fingerprint: str, limit: int) -> list[PendingCrop]:
    """Up to `limit` kept crops that have no embedding of this model, in a stable order."""
    with conn.cursor() as cur:
        cur.execute(f"""SELECT c.student_id, c.image_sha256, c.crop, src.det_score, src.bbox, src.quality
                        FROM face_crops c
                        CROSS JOIN LATERAL (SELECT det_score, bbox, quality FROM faces f
                                            WHERE f.student_id = c.student_id AND f.image_sha256 = c.image_sha256
                                            ORDER BY f.face_id LIMIT 1) src
                        WHERE {_MISSING}
                        ORDER BY c.student_id, c.image_sha256 LIMIT %s""", (fingerprint, limit))
        return [PendingCrop(r[0], r[1], bytes(r[2]), float(r[3]), list(r[4]), r[5]) for r in cur.fetchall()]


def drop_crop(conn, student_id: str, image_sha256: str) -> None:
    """Forget a crop that cannot be read (the photo then needs enrolling again, and is listed so)."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM face_crops WHERE student_id = %s AND image_sha256 = %s", (student_id, image_sha256))


def delete_all_crops(conn) -> int:
    """KEEP_FACE_CROPS=false: no crop is kept, including those kept before."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM face_crops")
        return cur.rowcount


def claim_job(conn, fingerprint: str, model_name: str, runner_id: str, lease_s: float) -> bool:
    """Take (or keep) the model's re-embedding job unless a live runner holds it."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO reembedding_jobs AS j (model_fingerprint, model_name, owner, lease_expires_at, runs)
                       VALUES (%(fp)s, %(name)s, %(me)s, now() + make_interval(secs => %(lease)s), 1)
                       ON CONFLICT (model_fingerprint) DO UPDATE
                       SET owner = EXCLUDED.owner, lease_expires_at = EXCLUDED.lease_expires_at,
                           runs = j.runs + (j.owner IS DISTINCT FROM EXCLUDED.owner)::int,
                           finished_at = NULL, updated_at = now()
                       WHERE j.owner IS NULL OR j.owner = EXCLUDED.owner OR j.lease_expires_at < now()
                       RETURNING runs""",
                    {"fp": fingerprint, "name": model_name, "me": runner_id, "lease": lease_s})
        return cur.fetchone() is not None


def store_batch(conn, fingerprint: str, runner_id: str, lease_s: float, crops: list[PendingCrop],
                embeddings: np.ndarray, busy_s: float) -> int:
    """Store a batch's embeddings and renew the lease in one transaction; JobLost (nothing written) when the
    job has another owner. Returns the embeddings added (a photo deleted meanwhile adds none)."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE reembedding_jobs SET lease_expires_at = now() + make_interval(secs => %s),
                           embedded = embedded + %s, busy_seconds = busy_seconds + %s, updated_at = now()
                       WHERE model_fingerprint = %s AND owner = %s""",
                    (lease_s, len(crops), busy_s, fingerprint, runner_id))
        if cur.rowcount == 0:
            raise JobLost(fingerprint)
        cur.execute("SELECT student_id, image_sha256 FROM faces WHERE (student_id, image_sha256) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[])) FOR SHARE",
                    ([c.student_id for c in crops], [c.image_sha256 for c in crops]))
        alive = set(cur.fetchall())
    added = 0
    for crop, embedding in zip(crops, embeddings, strict=True):
        if (crop.student_id, crop.image_sha256) in alive:
            _, new = add_face(conn, crop.student_id, fingerprint=fingerprint, embedding=embedding,
                              det_score=crop.det_score, bbox=crop.bbox, image_sha256=crop.image_sha256,
                              quality=crop.quality)
            added += int(new)
    return added


def finish_job(conn, fingerprint: str, runner_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute("""UPDATE reembedding_jobs SET owner = NULL, lease_expires_at = NULL, finished_at = now(),
                           updated_at = now() WHERE model_fingerprint = %s AND owner = %s""", (fingerprint, runner_id))


def release_jobs(conn, runner_id: str) -> None:
    """A graceful stop: another process resumes at once instead of after the lease."""
    with conn.cursor() as cur:
        cur.execute("UPDATE reembedding_jobs SET owner = NULL, lease_expires_at = NULL WHERE owner = %s",
                    (runner_id,))


def progress(conn, fingerprint: str) -> dict:
    """How far the kept crops are embedded with this model, and by which job."""
    with conn.cursor() as cur:
        cur.execute(f"""SELECT count(*), count(*) FILTER (WHERE {_MISSING}) FROM face_crops c
                        WHERE EXISTS (SELECT 1 FROM faces f WHERE f.student_id = c.student_id
                                      AND f.image_sha256 = c.image_sha256)""", (fingerprint,))
        crops, missing = cur.fetchone()
        cur.execute("""SELECT owner, lease_expires_at > now(), embedded, busy_seconds, runs, started_at, finished_at
                       FROM reembedding_jobs WHERE model_fingerprint = %s""", (fingerprint,))
        job = cur.fetchone()
    out = {"kept_crops": crops, "embedded": crops - missing, "remaining": missing}
    if job is None:
        out["state"] = "done" if missing == 0 else "waiting"
        return out
    owner, live, embedded, busy, runs, started, finished = job
    out.update(state="running" if owner and live else ("done" if missing == 0 else "waiting"),
               runner=owner if live else None, job_embedded=embedded, runs=runs,
               faces_per_second=round(embedded / busy, 1) if busy > 0 else None,
               started_at=started.isoformat(timespec="seconds"),
               finished_at=finished.isoformat(timespec="seconds") if finished else None)
    return out


OUTCOMES = ("agreed", "only_active_named", "only_shadow_named", "named_differently")


def record_comparisons(conn, active: str, shadow: str, counts: dict[str, int]) -> None:
    """Add one sample's outcomes (keys of OUTCOMES) to the pair's totals."""
    compared = sum(counts.values())
    if not compared:
        return
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO shadow_agreement AS a (active_fingerprint, shadow_fingerprint, compared, agreed,
                           only_active_named, only_shadow_named, named_differently)
                       VALUES (%s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (active_fingerprint, shadow_fingerprint) DO UPDATE SET
                           compared = a.compared + EXCLUDED.compared, agreed = a.agreed + EXCLUDED.agreed,
                           only_active_named = a.only_active_named + EXCLUDED.only_active_named,
                           only_shadow_named = a.only_shadow_named + EXCLUDED.only_shadow_named,
                           named_differently = a.named_differently + EXCLUDED.named_differently,
                           updated_at = now()""",
                    (active, shadow, compared, *(counts.get(k, 0) for k in OUTCOMES)))


def agreement(conn, active: str, shadow: str) -> dict:
    """Faces compared so far between the model in use and the shadow, and the share named alike."""
    with conn.cursor() as cur:
        cur.execute("""SELECT compared, agreed, only_active_named, only_shadow_named, named_differently, since
                       FROM shadow_agreement WHERE active_fingerprint = %s AND shadow_fingerprint = %s""",
                    (active, shadow))
        row = cur.fetchone()
    if row is None:
        return {"compared": 0, "rate": None, **{k: 0 for k in OUTCOMES}}
    compared, *rest, since = row
    return {"compared": compared, "rate": round(rest[0] / compared, 4) if compared else None,
            **dict(zip(OUTCOMES, rest, strict=True)), "since": since.isoformat(timespec="seconds")}


def say_in_use(conn, host: str, pid: int, models: dict[str, str]) -> None:
    """This process uses these models (fingerprint -> MODEL_DIR or SHADOW_MODEL_DIR), as of now."""
    with conn.cursor() as cur:
        for fingerprint, setting in models.items():
            cur.execute("""INSERT INTO models_in_use (host, pid, fingerprint, setting) VALUES (%s, %s, %s, %s)
                           ON CONFLICT (host, pid, fingerprint) DO UPDATE SET setting = EXCLUDED.setting,
                                                                             seen_at = now()""",
                        (host, pid, fingerprint, setting))
        cur.execute("DELETE FROM models_in_use WHERE seen_at < now() - interval '1 day'")


def forget_in_use(conn, host: str, pid: int) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM models_in_use WHERE host = %s AND pid = %s", (host, pid))


def in_use(conn, fingerprint: str, within_s: float) -> list[dict]:
    """The processes that said they use this model within the last `within_s` seconds."""
    with conn.cursor() as cur:
        cur.execute("""SELECT host, pid, setting, seen_at FROM models_in_use
                       WHERE fingerprint = %s AND seen_at > now() - make_interval(secs => %s)
                       ORDER BY seen_at DESC""", (fingerprint, within_s))
        return [{"host": h, "pid": p, "setting": s, "seen_at": t.isoformat(timespec="seconds")}
                for h, p, s, t in cur.fetchall()]


def resolve_fingerprint(conn, prefix: str) -> list[str]:
    """The stored model fingerprints starting with `prefix` (the 12-character form shown by the API)."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model_fingerprint FROM faces WHERE starts_with(model_fingerprint, %s)",
                    (prefix,))
        return sorted(r[0] for r in cur.fetchall())


def purge_counts(conn, fingerprint: str) -> dict:
    """What purging a model would remove, and the photos it would leave with no embedding at all."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM faces WHERE model_fingerprint = %s", (fingerprint,))
        embeddings = cur.fetchone()[0]
        cur.execute("""SELECT count(*) FROM faces f WHERE f.model_fingerprint = %s AND NOT EXISTS (
                           SELECT 1 FROM faces o WHERE o.student_id = f.student_id AND o.image_sha256 = f.image_sha256
                           AND o.model_fingerprint <> f.model_fingerprint)""", (fingerprint,))
        only_here = cur.fetchone()[0]
    return {"embeddings": embeddings, "photos_only_in_this_model": only_here}


def purge_model(conn, fingerprint: str) -> int:
    """Delete every embedding of a model. Kept crops stay (they belong to the photos, not to a model), except
    those of photos left with no embedding at all (a forced purge): such a photo is gone, crop included."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM faces WHERE model_fingerprint = %s", (fingerprint,))
        removed = cur.rowcount
        cur.execute("""DELETE FROM face_crops c WHERE NOT EXISTS (SELECT 1 FROM faces f
                           WHERE f.student_id = c.student_id AND f.image_sha256 = c.image_sha256)""")
        cur.execute("DELETE FROM reembedding_jobs WHERE model_fingerprint = %s", (fingerprint,))
        cur.execute("DELETE FROM shadow_agreement WHERE active_fingerprint = %s OR shadow_fingerprint = %s",
                    (fingerprint, fingerprint))
    return removed


_UNREACHABLE = """NOT EXISTS (SELECT 1 FROM faces m WHERE m.student_id = f.student_id
                                              AND m.image_sha256 = f.image_sha256 AND m.model_fingerprint = %s)
                  AND NOT EXISTS (SELECT 1 FROM face_crops c WHERE c.student_id = f.student_id
                                  AND c.image_sha256 = f.image_sha256)"""


def needs_reenrolment(conn, fingerprint: str, limit: int = 1000) -> list[dict]:
    """Enrolled photos this model has no embedding of and no kept crop to make one from: only a new photo
    of the student puts them in this model's gallery."""
    with conn.cursor() as cur:
        cur.execute(f"""SELECT DISTINCT ON (f.student_id, f.image_sha256) f.student_id, s.name, f.face_id,
                               f.image_sha256, f.created_at
                        FROM faces f JOIN students s USING (student_id) WHERE {_UNREACHABLE}
                        ORDER BY f.student_id, f.image_sha256, f.face_id LIMIT %s""", (fingerprint, limit))
        return [{"student_id": r[0], "name": r[1], "face_id": r[2], "image_sha256": r[3],
                 "enrolled_at": r[4].isoformat(timespec="seconds")} for r in cur.fetchall()]


def count_needs_reenrolment(conn, fingerprint: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"""SELECT count(*) FROM (SELECT DISTINCT f.student_id, f.image_sha256 FROM faces f
                                              WHERE {_UNREACHABLE}) p""", (fingerprint,))
        return cur.fetchone()[0]
