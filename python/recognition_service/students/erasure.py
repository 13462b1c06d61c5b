"""Erasure of a student's biometric data: functions taking a connection."""

from __future__ import annotations

import json

from recognition_service.security.audit import pseudonym


def erase_student(conn, student_id: str) -> tuple[bool, list[tuple[str, str]]]:
    """Delete the student, their embeddings and kept face crops (by cascade), recognitions, evidence rows and
    every event naming them.

    Returns (existed, evidence file pairs to remove after commit). Batched callback bodies keep the
    other students; a body left empty is deleted. Audit entries about the student are pseudonymised.
    """
    with conn.cursor() as cur:
        cur.execute("DELETE FROM students WHERE student_id = %s", (student_id,))  # faces by cascade
        existed = cur.rowcount > 0
        cur.execute("DELETE FROM evidence WHERE student_id = %s RETURNING face_path, frame_path", (student_id,))
        files = cur.fetchall()
        cur.execute("DELETE FROM session_recognitions WHERE student_id = %s", (student_id,))
        cur.execute("DELETE FROM events WHERE type = 'recognition' AND payload->>'student_id' = %s", (student_id,))
        cur.execute("""SELECT delivery_id, body FROM deliveries WHERE type = 'recognition'
                       AND body->'recognitions' @> %s::jsonb FOR UPDATE""",
                    (json.dumps([{"student_id": student_id}]),))
        for delivery_id, body in cur.fetchall():
            body["recognitions"] = [r for r in body["recognitions"] if r.get("student_id") != student_id]
            if body["recognitions"]:
                cur.execute("UPDATE deliveries SET body = %s WHERE delivery_id = %s", (json.dumps(body), delivery_id))
            else:
                cur.execute("DELETE FROM deliveries WHERE delivery_id = %s", (delivery_id,))
        # review items: those confirmed as the student go (their evidence went above), and the student
        # leaves every other item's candidates and the impostor pairs
        cur.execute("DELETE FROM review_items WHERE resolved_student_id = %s", (student_id,))
        cur.execute("""UPDATE review_items SET candidates = (
                           SELECT coalesce(jsonb_agg(c), '[]'::jsonb) FROM jsonb_array_elements(candidates) c
                           WHERE c->>'student_id' <> %s)
                       WHERE candidates @> %s::jsonb""", (student_id, json.dumps([{"student_id": student_id}])))
        cur.execute("DELETE FROM impostor_pairs WHERE student_id = %s", (student_id,))
        cur.execute("UPDATE audit_log SET target = %s WHERE target = %s", (pseudonym(student_id), student_id))
        cur.execute("""UPDATE sessions SET student_ids = array_remove(student_ids, %s)
                       WHERE %s = ANY(student_ids)""", (student_id, student_id))
    return existed, files


ERASURE_TABLES = ("students", "faces", "face_crops", "evidence", "session_recognitions", "events", "deliveries",
                  "audit_log", "sessions", "review_items", "impostor_pairs")


def vacuum_after_erasure(db) -> None:
    """VACUUM the tables an erasure touched, so the deleted rows' versions are pruned now, not at autovacuum's
    leisure. (VACUUM cannot run in a transaction: an autocommit connection of the pool, then back.)"""
    with db.get_db_conn() as conn:
        conn.commit()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("VACUUM (ANALYZE) " + ", ".join(ERASURE_TABLES))
        finally:
            conn.autocommit = False

