"""SQL of review items: faces a session saw but could not name, one item per person; plain functions."""

from __future__ import annotations

import json
import uuid

import numpy as np
import psycopg2.extras

from recognition_service.sessions.store import add_evidence, add_recognition, fence
from recognition_service.students.store import names_for

# Two unnamed tracks of one session whose aggregates are at least this similar are one person: one item.
# Well above what two different people reach (1 in 10,000 impostor pairs above 0.31 for w600k_mbf), while
# two tracks of one person in one room measure 0.6 and more.
GROUP_MIN = 0.45


class ItemResolved(Exception):
    """The item was already confirmed or rejected."""


def _vector(blob) -> np.ndarray:
    return np.frombuffer(bytes(blob), np.float32)


def add_unnamed(conn, runner_id: str, session_id: int, *, camera_id: int, fingerprint: str, embedding: np.ndarray,
                weight: float, reason: str, candidates: list[dict],
                evidence: tuple[str, str, str] | None) -> tuple[str, bool]:
    """File an unnamed track: merged into the open item of the same person, else a new item.

    Returns (item_id, merged). Fenced by the session's lease, like every camera write.
    """
    embedding = np.ascontiguousarray(embedding, np.float32)
    with conn.cursor() as cur:
        fence(cur, runner_id, session_id)
        cur.execute("""SELECT item_id, embedding, weight FROM review_items
                       WHERE session_id = %s AND status = 'open' AND model_fingerprint = %s FOR UPDATE""",
                    (session_id, fingerprint))
        best, best_sim = None, GROUP_MIN
        for item_id, blob, old_weight in cur.fetchall():
            sim = float(_vector(blob) @ embedding)
            if sim >= best_sim:
                best, best_sim = (item_id, _vector(blob), old_weight), sim
        if best is not None:
            item_id, old, old_weight = best
            merged = old * old_weight + embedding * weight
            merged /= max(float(np.linalg.norm(merged)), 1e-9)
            cur.execute("""UPDATE review_items SET embedding = %s, weight = weight + %s, tracks = tracks + 1,
                                  last_seen_at = now() WHERE item_id = %s""",
                        (merged.astype(np.float32).tobytes(), weight, item_id))
            return str(item_id), True
        evidence_id = add_evidence(cur, session_id, None, camera_id, evidence)
        item_id = str(uuid.uuid4())
        cur.execute("""INSERT INTO review_items (item_id, session_id, reason, camera_id, model_fingerprint, embedding,
                                                 weight, candidates, evidence_id)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (item_id, session_id, reason, camera_id, fingerprint, embedding.tobytes(), weight,
                     json.dumps(candidates), evidence_id))
        return item_id, False


def _view(row: dict) -> dict:
    return {"item_id": str(row["item_id"]), "status": row["status"], "reason": row["reason"],
            "camera_id": row["camera_id"], "tracks": row["tracks"], "candidates": row["candidates"],
            "evidence_id": str(row["evidence_id"]) if row["evidence_id"] else None,
            "first_seen_at": row["first_seen_at"].isoformat(), "last_seen_at": row["last_seen_at"].isoformat(),
            "resolved_student_id": row["resolved_student_id"], "resolved_by": row["resolved_by"],
            "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None}


_COLUMNS = """r.item_id, r.session_id, r.status, r.reason, r.camera_id, r.tracks, r.candidates, r.evidence_id,
              r.first_seen_at, r.last_seen_at, r.resolved_student_id, r.resolved_by, r.resolved_at,
              r.embedding, r.model_fingerprint"""


def list_items(conn, slot_id: int, status: str | None) -> list[dict] | None:
    """The items of the slot's latest session (None when there is no session), oldest first."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("""SELECT session_id, student_ids FROM sessions WHERE slot_id = %s
                       ORDER BY session_id DESC LIMIT 1""", (slot_id,))
        session = cur.fetchone()
        if session is None:
            return None
        cur.execute(f"""SELECT {_COLUMNS} FROM review_items r WHERE r.session_id = %s
                        AND (%s::text IS NULL OR r.status = %s) ORDER BY r.first_seen_at, r.item_id""",
                    (session["session_id"], status, status))
        items = [_view(r) for r in cur.fetchall()]
    _name_candidates(conn, items, session["student_ids"])
    return items


def _name_candidates(conn, items: list[dict], roster: list[str] | None) -> None:
    """Each candidate with the student's name and whether the session's roster lists them (None: no roster)."""
    names = names_for(conn, {c["student_id"] for i in items for c in i["candidates"]}
                      | {i["resolved_student_id"] for i in items if i["resolved_student_id"]})
    for item in items:
        item["candidates"] = [{**c, "name": names.get(c["student_id"]),
                               "on_roster": None if roster is None else c["student_id"] in roster}
                              for c in item["candidates"]]
        item["resolved_name"] = names.get(item["resolved_student_id"]) if item["resolved_student_id"] else None


def get_item(conn, slot_id: int, item_id: str, *, lock: bool = False) -> dict | None:
    """One item of the slot's sessions, with its embedding, session id and the session's roster (for the
    actions)."""
    try:
        uuid.UUID(item_id)
    except ValueError:
        return None
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"""SELECT {_COLUMNS}, s.student_ids AS roster
                        FROM review_items r JOIN sessions s USING (session_id)
                        WHERE s.slot_id = %s AND r.item_id = %s {'FOR UPDATE OF r' if lock else ''}""",
                    (slot_id, item_id))
        row = cur.fetchone()
    if row is None:
        return None
    view = _view(row)
    _name_candidates(conn, [view], row["roster"])
    return {**view, "session_id": row["session_id"], "embedding": _vector(row["embedding"]),
            "model_fingerprint": row["model_fingerprint"], "roster": row["roster"]}


def confirm(conn, item: dict, *, student_id: str, name: str, actor: str, on_roster: bool | None = None) -> bool:
    """Mark the item as the student and record their recognition (source: review, with who confirmed it);
    True if it was new. `on_roster` False: the session's roster does not list them (the event says so, and
    the backend decides whether they count)."""
    if item["status"] != "open":
        raise ItemResolved(item["item_id"])
    best = max((c["similarity"] for c in item["candidates"] if c["student_id"] == student_id), default=0.0)
    with conn.cursor() as cur:
        cur.execute("""UPDATE review_items SET status = 'confirmed', resolved_student_id = %s, resolved_by = %s,
                              resolved_at = now() WHERE item_id = %s""", (student_id, actor, item["item_id"]))
        if item["evidence_id"]:
            cur.execute("UPDATE evidence SET student_id = %s WHERE evidence_id = %s", (student_id, item["evidence_id"]))
        return add_recognition(cur, item["session_id"], student_id=student_id, name=name, camera_id=item["camera_id"],
                               similarity=float(best), evidence_id=item["evidence_id"], source="review",
                               extra={"item_id": item["item_id"], "confirmed_by": actor,
                                      **({"on_roster": on_roster} if on_roster is not None else {})},
                               confirmed_by=actor)


def reject(conn, item: dict, *, actor: str) -> int:
    """Mark the item a stranger; keep the students it was wrongly close to as impostor pairs. Returns how many."""
    if item["status"] != "open":
        raise ItemResolved(item["item_id"])
    with conn.cursor() as cur:
        cur.execute("""UPDATE review_items SET status = 'rejected', resolved_by = %s, resolved_at = now()
                       WHERE item_id = %s""", (actor, item["item_id"]))
        for c in item["candidates"]:
            cur.execute("""INSERT INTO impostor_pairs (item_id, student_id, model_fingerprint, similarity)
                           VALUES (%s, %s, %s, %s)""", (item["item_id"], c["student_id"], item["model_fingerprint"],
                                                        c["similarity"]))
    return len(item["candidates"])


def reviewed_impostors(conn, fingerprint: str) -> np.ndarray:
    """Similarities of the impostor pairs reviewers found (rejected items and their nearest students)."""
    with conn.cursor() as cur:
        cur.execute("SELECT similarity FROM impostor_pairs WHERE model_fingerprint = %s", (fingerprint,))
        return np.array([r[0] for r in cur.fetchall()], np.float32)
