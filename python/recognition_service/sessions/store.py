"""Recognition sessions in PostgreSQL: plain functions that take a connection.

The API side creates, reads and stops sessions. The runner side (the process holding a session's
lease) claims, renews and releases leases and records what its cameras see; every runner write is
fenced on `owner = runner_id` and a live status, so a process that lost its lease records nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.errors
import psycopg2.extras

from recognition_service.students.store import names_for

LIVE = ("starting", "running", "stopping")
RUNNABLE = ("starting", "running")


class SessionExists(Exception):
    """A session for this slot is still live (the API answers 409 session_exists)."""

    def __init__(self, slot_id: int):
        super().__init__(f"a session for slot {slot_id} is already running; stop it first")
        self.slot_id = slot_id


class LeaseLost(Exception):
    """This process no longer owns the session (stopped, failed, or taken over)."""


@dataclass
class SessionSpec:
    """What a runner needs to run a session's cameras."""

    session_id: int
    slot_id: int
    roster: list[str] | None
    threshold: float | None
    frame_interval_ms: int
    cameras: dict[int, str]
    offline_cameras: set[int] = field(default_factory=set)  # offline (still retried) when the session was claimed
    detection: dict[int, dict] = field(default_factory=dict)  # camera_id -> {"mode", "min_face_px", "roi"}
    seen: dict[str, float] = field(default_factory=dict)  # student_id -> best similarity recorded


def _redact(url: str) -> str:
    """A camera URL without its password (rtsp://user:secret@host -> rtsp://user:***@host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def record_event(cur, session_id: int, type_: str, payload: dict) -> str:
    """Append an event (in the caller's transaction); return its event_id."""
    event_id = str(uuid.uuid4())
    cur.execute("INSERT INTO events (event_id, session_id, type, payload) VALUES (%s, %s, %s, %s)",
                (event_id, session_id, type_, json.dumps(payload)))
    return event_id


def _camera_counts(cur, session_id: int) -> tuple[int, int, int]:
    cur.execute("""SELECT count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'offline'),
                          count(*) FILTER (WHERE status = 'failed')
                   FROM session_cameras WHERE session_id = %s""", (session_id,))
    return tuple(int(n) for n in cur.fetchone())


def _status_event(cur, session_id: int, event: str, reason: str | None = None, **extra) -> None:
    active, offline, failed = _camera_counts(cur, session_id)
    if event == "stopped":  # an ended session watches nothing, whatever its cameras last were (as _view says)
        active = offline = 0
    record_event(cur, session_id, "session_status",
                 {"event": event, "reason": reason, "active_cameras": active, "offline_cameras": offline,
                  "failed_cameras": failed, **extra})


# ---- API side ------------------------------------------------------------------------------


def create_session(conn, *, slot_id: int, cameras: list[dict], callback_url: str, student_ids: list[str] | None,
                   threshold: float | None, mode: str | None, callback_type: str | None,
                   frame_interval_ms: int, ends_in_s: float, ends_at: datetime | None = None,
                   display: dict | None = None) -> int:
    """Insert a session, its cameras and a `started` event; SessionExists while the slot runs.
    It ends by itself at `ends_at`, else `ends_in_s` seconds from now (end_due_sessions). `display`: the
    backend's optional class name, room and teacher, shown and exported only."""
    with conn.cursor() as cur:
        try:
            cur.execute("SAVEPOINT create_session")
            cur.execute("""INSERT INTO sessions (slot_id, callback_url, student_ids, threshold, mode, callback_type,
                                                 frame_interval_ms, ends_at, display)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now() + make_interval(secs => %s)), %s)
                           RETURNING session_id""",
                        (slot_id, callback_url, student_ids, threshold, mode, callback_type, frame_interval_ms,
                         ends_at, ends_in_s, psycopg2.extras.Json(display) if display else None))
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT create_session")
            raise SessionExists(slot_id) from None
        session_id = cur.fetchone()[0]
        psycopg2.extras.execute_values(
            cur, "INSERT INTO session_cameras (session_id, camera_id, url, detection) VALUES %s",
            [(session_id, c["camera_id"], c["url"],
              psycopg2.extras.Json(c["detection"]) if c.get("detection") else None) for c in cameras])
        _status_event(cur, session_id, "started")
    return session_id


_SESSION_COLUMNS = """session_id, slot_id, status, reason, mode, callback_type, callback_url, student_ids,
                      threshold, frame_interval_ms, started_at, stopped_at, ends_at, owner, lease_expires_at,
                      callback_failures, last_success_time, display"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _view(cur, row: dict) -> dict:
    sid = row["session_id"]
    cur.execute("""SELECT c.camera_id, c.url, c.status, c.failures, c.last_error, c.frames, c.detector_runs,
                          c.tile_runs, c.faces_detected, c.faces_embedded, c.detection, c.fps_asked, c.fps_delivered,
                          c.keyframe_interval_s, c.keyframes_only, c.offline_since,
                          p.taken_at AS preview_at,
                          p.width AS preview_width, p.height AS preview_height, p.faces AS preview_faces
                   FROM session_cameras c
                   LEFT JOIN camera_previews p ON p.session_id = c.session_id AND p.camera_id = c.camera_id
                   WHERE c.session_id = %s ORDER BY c.camera_id""", (sid,))
    cameras = cur.fetchall()
    cur.execute("""SELECT r.student_id, r.name, r.first_seen_at, r.camera_id, r.best_similarity, r.evidence_id,
                          r.confirmed_by
                   FROM session_recognitions r WHERE r.session_id = %s ORDER BY r.first_seen_at, r.student_id""",
                (sid,))
    recognized = cur.fetchall()
    if row["status"] in ("stopped", "failed"):  # an ended session watches nothing, whatever its cameras last were
        for camera in cameras:
            if camera["status"] != "failed":
                camera["status"] = "stopped"
    cur.execute("SELECT count(*) FILTER (WHERE status = 'open') AS open FROM review_items WHERE session_id = %s",
                (sid,))
    open_items = cur.fetchone()["open"]
    seen = {r["student_id"] for r in recognized}
    roster = row["student_ids"]
    absent = [s for s in roster if s not in seen] if roster is not None else None
    names = names_for(cur.connection, set(absent)) if absent else {}
    active = [c["camera_id"] for c in cameras if c["status"] == "active"]
    offline = [c["camera_id"] for c in cameras if c["status"] == "offline"]
    failed = [c["camera_id"] for c in cameras if c["status"] == "failed"]
    return {
        "session_id": sid,
        "slot_id": row["slot_id"],
        "status": row["status"],
        "reason": row["reason"],
        "mode": row["mode"],
        "callback_type": row["callback_type"],
        "callback_url": row["callback_url"],
        "student_ids": row["student_ids"],
        "absent_student_ids": absent,
        # names beside the ids: a teacher knows names (None: on the roster, never enrolled nor named)
        "absent_students": ([{"student_id": s, "name": names.get(s)} for s in absent]
                            if absent is not None else None),
        "display": row["display"] or {},
        "open_review_items": open_items,
        "threshold": row["threshold"],
        "frame_interval_ms": row["frame_interval_ms"],
        "started_at": _iso(row["started_at"]),
        "stopped_at": _iso(row["stopped_at"]),
        "ends_at": _iso(row["ends_at"]),
        "active_cameras": len(active),
        "offline_cameras": len(offline),
        "failed_cameras": len(failed),
        "active_camera_ids": active,
        "offline_camera_ids": offline,
        "failed_camera_ids": failed,
        "cameras": [{"camera_id": c["camera_id"], "url": _redact(c["url"]), "status": c["status"],
                     "failures": c["failures"], "last_error": c["last_error"],
                     "offline_since": _iso(c["offline_since"]) if c["status"] == "offline" else None,
                     "frames": c["frames"],
                     "detector_runs": c["detector_runs"], "tile_runs": c["tile_runs"],
                     "fps_asked": (round(float(c["fps_asked"]), 2) if c["fps_asked"] is not None
                                   else round(1000 / row["frame_interval_ms"], 2) if row["frame_interval_ms"]
                                   else None),
                     "fps_delivered": (round(float(c["fps_delivered"]), 2)
                                       if c["fps_delivered"] is not None and c["status"] == "active" else None),
                     "keyframe_interval_s": (round(float(c["keyframe_interval_s"]), 2)
                                             if c["keyframe_interval_s"] is not None else None),
                     "decoding": (None if c["keyframes_only"] is None
                                  else "keyframes_only" if c["keyframes_only"] else "every_frame"),
                     "faces_detected": c["faces_detected"], "faces_embedded": c["faces_embedded"],
                     "detection": c["detection"] or {},
                     "preview": None if c["preview_at"] is None else {
                         "taken_at": _iso(c["preview_at"]), "width": c["preview_width"],
                         "height": c["preview_height"], "faces": c["preview_faces"]}}
                    for c in cameras],
        "recognition_count": len(recognized),
        "recognized_students": [
            {"student_id": r["student_id"], "name": r["name"], "first_seen_at": _iso(r["first_seen_at"]),
             "camera_id": r["camera_id"], "similarity": round(float(r["best_similarity"]), 4),
             "evidence_id": str(r["evidence_id"]) if r["evidence_id"] else None,
             "confirmed_by": r["confirmed_by"],  # the key that confirmed it in review; None: a camera named it
             "on_roster": None if roster is None else r["student_id"] in roster}
            for r in recognized],
        "callback_failures": row["callback_failures"],
        "last_success_time": _iso(row["last_success_time"]),
        "owner": row["owner"],
    }


def get_session(conn, slot_id: int) -> dict | None:
    """The slot's live session, else its latest one."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"""SELECT {_SESSION_COLUMNS} FROM sessions WHERE slot_id = %s
                        ORDER BY (status IN %s) DESC, session_id DESC LIMIT 1""", (slot_id, LIVE))
        row = cur.fetchone()
        return _view(cur, row) if row else None


def list_sessions(conn, *, status: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    """Sessions newest first (optionally of one status) and the total count."""
    where, args = ("WHERE status = %s", [status]) if status else ("", [])
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT count(*) AS n FROM sessions {where}", args)
        total = cur.fetchone()["n"]
        cur.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions {where} ORDER BY session_id DESC LIMIT %s OFFSET %s",
                    [*args, limit, offset])
        return [_view(cur, row) for row in cur.fetchall()], total


def stop_session(conn, slot_id: int) -> bool:
    """End the slot's live session (its owner notices within SESSION_POLL_S); False when none is live."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE sessions SET status = 'stopped', reason = 'stopped', stopped_at = now(),
                              owner = NULL, lease_expires_at = NULL
                       WHERE slot_id = %s AND status IN %s RETURNING session_id""", (slot_id, LIVE))
        row = cur.fetchone()
        if row is None:
            return False
        _status_event(cur, row[0], "stopped", "stopped")
        cur.execute("DELETE FROM camera_previews WHERE session_id = %s", (row[0],))
    return True


def end_due_sessions(conn) -> list[int]:
    """End the live sessions whose planned end has come (reason `ended`); return their slots. Any process
    may run this: the owners notice within SESSION_POLL_S, as after a stop."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE sessions SET status = 'stopped', reason = 'ended', stopped_at = now(),
                              owner = NULL, lease_expires_at = NULL
                       WHERE session_id IN (SELECT session_id FROM sessions WHERE status IN %s AND ends_at <= now()
                                            FOR UPDATE SKIP LOCKED)
                       RETURNING session_id, slot_id""", (LIVE,))
        ended = cur.fetchall()
        for session_id, _ in ended:
            _status_event(cur, session_id, "stopped", "ended")
            cur.execute("DELETE FROM camera_previews WHERE session_id = %s", (session_id,))
    return [slot for _, slot in ended]


def evidence_paths(conn, slot_id: int, evidence_id: str) -> tuple[str, str] | None:
    """(face_path, frame_path) of an evidence item of the slot's sessions."""
    try:
        evidence_id = str(uuid.UUID(evidence_id))  # also urn:uuid:, braces, no dashes: PostgreSQL takes none
    except ValueError:
        return None
    with conn.cursor() as cur:
        cur.execute("""SELECT e.face_path, e.frame_path FROM evidence e JOIN sessions s USING (session_id)
                       WHERE e.evidence_id = %s AND s.slot_id = %s""", (evidence_id, slot_id))
        return cur.fetchone()


# ---- runner side ---------------------------------------------------------------------------


def heartbeat_runner(conn, runner_id: str, host: str, pid: int, sessions: int, lease_s: float) -> int:
    """Say this runner is alive; return the fewest sessions any live runner holds (for fair claiming)."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO session_runners (runner_id, host, pid, sessions) VALUES (%s, %s, %s, %s)
                       ON CONFLICT (runner_id) DO UPDATE SET sessions = EXCLUDED.sessions, seen_at = now()""",
                    (runner_id, host, pid, sessions))
        cur.execute("DELETE FROM session_runners WHERE seen_at < now() - make_interval(secs => %s * 3)", (lease_s,))
        cur.execute("SELECT min(sessions) FROM session_runners WHERE seen_at > now() - make_interval(secs => %s)",
                    (lease_s,))
        fewest = cur.fetchone()[0]
    return sessions if fewest is None else int(fewest)


def remove_runner(conn, runner_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM session_runners WHERE runner_id = %s", (runner_id,))


def claim_session(conn, runner_id: str, lease_s: float) -> SessionSpec | None:
    """Take one unowned (or lease-expired) runnable session, oldest first; None when there is none."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE sessions SET owner = %s, lease_expires_at = now() + make_interval(secs => %s)
                       WHERE session_id = (
                           SELECT session_id FROM sessions
                           WHERE status IN %s AND (owner IS NULL OR lease_expires_at < now())
                           ORDER BY session_id FOR UPDATE SKIP LOCKED LIMIT 1)
                       RETURNING session_id, slot_id, student_ids, threshold, frame_interval_ms""",
                    (runner_id, lease_s, RUNNABLE))
        row = cur.fetchone()
        if row is None:
            return None
        session_id, slot_id, roster, threshold, interval = row
        cur.execute("""SELECT camera_id, url, status, detection FROM session_cameras WHERE session_id = %s
                       ORDER BY camera_id""", (session_id,))
        cams = cur.fetchall()
        cur.execute("SELECT student_id, best_similarity FROM session_recognitions WHERE session_id = %s",
                    (session_id,))
        seen = {sid: float(sim) for sid, sim in cur.fetchall()}
    return SessionSpec(session_id, slot_id, roster, threshold, interval,
                       cameras={c[0]: c[1] for c in cams},
                       offline_cameras={c[0] for c in cams if c[2] in ("offline", "failed")},
                       seen=seen, detection={c[0]: c[3] for c in cams if c[3]})


def renew_leases(conn, runner_id: str, session_ids: list[int], lease_s: float) -> set[int]:
    """Extend this runner's leases; return the sessions it still owns (the rest were stopped or taken)."""
    if not session_ids:
        return set()
    with conn.cursor() as cur:
        cur.execute("""UPDATE sessions SET lease_expires_at = now() + make_interval(secs => %s)
                       WHERE session_id = ANY(%s) AND owner = %s AND status IN %s RETURNING session_id""",
                    (lease_s, session_ids, runner_id, RUNNABLE))
        return {r[0] for r in cur.fetchall()}


def still_owned(conn, runner_id: str, session_ids: list[int]) -> set[int]:
    """Which of these sessions this runner still owns (a read; no lease change)."""
    if not session_ids:
        return set()
    with conn.cursor() as cur:
        cur.execute("SELECT session_id FROM sessions WHERE session_id = ANY(%s) AND owner = %s AND status IN %s",
                    (session_ids, runner_id, RUNNABLE))
        return {r[0] for r in cur.fetchall()}


def release_leases(conn, runner_id: str) -> int:
    """Give up every lease of this runner so another process takes the sessions over at once."""
    with conn.cursor() as cur:
        cur.execute("""UPDATE sessions SET owner = NULL, lease_expires_at = NULL
                       WHERE owner = %s AND status IN %s""", (runner_id, RUNNABLE))
        return cur.rowcount


def fence(cur, runner_id: str, session_id: int) -> str:
    """Lock the session row for this transaction if this runner owns it; raise LeaseLost otherwise."""
    cur.execute("SELECT status FROM sessions WHERE session_id = %s AND owner = %s AND status IN %s FOR UPDATE",
                (session_id, runner_id, RUNNABLE))
    row = cur.fetchone()
    if row is None:
        raise LeaseLost(session_id)
    return row[0]


def set_camera_status(conn, runner_id: str, session_id: int, camera_id: int, status: str | None, *,
                      failures: int, error: str | None, event: str | None) -> None:
    """Record a camera's state, and with `event` (camera_offline, camera_recovered) a session_status event
    naming the camera and its status. `status` None keeps the stored one (a failed attempt of a camera
    not yet offline). Going offline keeps the first time it went (offline_since); active clears it."""
    with conn.cursor() as cur:
        session_status = fence(cur, runner_id, session_id)
        cur.execute("""UPDATE session_cameras
                       SET status = coalesce(%s, status), failures = %s, last_error = %s, updated_at = now(),
                           offline_since = CASE coalesce(%s, status) WHEN 'offline' THEN coalesce(offline_since, now())
                                                                       ELSE NULL END
                       WHERE session_id = %s AND camera_id = %s RETURNING status""",
                    (status, failures, error, status, session_id, camera_id))
        row = cur.fetchone()
        if status == "active" and session_status == "starting":
            cur.execute("UPDATE sessions SET status = 'running' WHERE session_id = %s", (session_id,))
        if event and row:
            _status_event(cur, session_id, event, error if row[0] == "offline" else None, camera_id=camera_id,
                          camera_status=row[0])


def fail_if_all_offline(conn, runner_id: str, session_id: int, grace_s: float) -> bool:
    """Fail the session (`all_cameras_failed`, its cameras `failed`) when every camera has been offline for
    `grace_s` (measured by the database's clock, the same for every server); True if it did."""
    with conn.cursor() as cur:
        fence(cur, runner_id, session_id)
        cur.execute("""SELECT bool_and(status IN ('offline', 'failed')
                                       AND coalesce(offline_since, updated_at) <= now() - make_interval(secs => %s))
                       FROM session_cameras WHERE session_id = %s""", (grace_s, session_id))
        if not cur.fetchone()[0]:
            return False
        cur.execute("UPDATE session_cameras SET status = 'failed' WHERE session_id = %s", (session_id,))
        cur.execute("""UPDATE sessions SET status = 'failed', reason = 'all_cameras_failed', stopped_at = now(),
                              owner = NULL, lease_expires_at = NULL WHERE session_id = %s""", (session_id,))
        _status_event(cur, session_id, "failed", "all_cameras_failed")
        cur.execute("DELETE FROM camera_previews WHERE session_id = %s", (session_id,))
    return True


def add_camera_stats(conn, runner_id: str, session_id: int,
                     stats: dict[int, tuple[int, int, int, int, int]],
                     rates: dict[int, tuple[float | None, float, float | None, bool]] | None = None) -> None:
    """Add (frames, detector_runs, faces_detected, faces_embedded, tile_runs) per camera to the counters;
    `rates`: each camera's (asked, delivered) frames per second, keyframe interval and keyframes_only."""
    with conn.cursor() as cur:
        fence(cur, runner_id, session_id)
        for camera_id, (asked, delivered, keyframe_s, keyframes_only) in (rates or {}).items():
            cur.execute("""UPDATE session_cameras SET fps_asked = %s, fps_delivered = %s, fps_at = now(),
                                  keyframe_interval_s = %s, keyframes_only = %s
                           WHERE session_id = %s AND camera_id = %s""",
                        (None if asked is None else round(float(asked), 3), round(float(delivered), 3),
                         None if keyframe_s is None else round(float(keyframe_s), 3), keyframes_only,
                         session_id, camera_id))
        for camera_id, (frames, runs, detected, embedded, tiles) in stats.items():
            cur.execute("""UPDATE session_cameras SET frames = frames + %s, detector_runs = detector_runs + %s,
                                  faces_detected = faces_detected + %s, faces_embedded = faces_embedded + %s,
                                  tile_runs = tile_runs + %s
                           WHERE session_id = %s AND camera_id = %s""",
                        (frames, runs, detected, embedded, tiles, session_id, camera_id))


def short_changed_cameras(conn, share: float) -> list[dict]:
    """Active cameras of running sessions processing fewer than `share` of the frames per second asked."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("""SELECT s.slot_id, c.camera_id, c.fps_asked AS asked, c.fps_delivered AS delivered, s.owner
                       FROM session_cameras c JOIN sessions s USING (session_id)
                       WHERE s.status = 'running' AND c.status = 'active' AND c.fps_asked IS NOT NULL
                         AND c.fps_delivered IS NOT NULL AND c.fps_delivered < %s * c.fps_asked
                         AND c.fps_at > now() - interval '2 minutes'
                       ORDER BY s.slot_id, c.camera_id""", (share,))
        return cur.fetchall()


def offline_cameras(conn) -> list[dict]:
    """Offline cameras of live sessions, longest offline first (for /health)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("""SELECT s.slot_id, c.camera_id, c.offline_since, c.last_error
                       FROM session_cameras c JOIN sessions s USING (session_id)
                       WHERE s.status IN %s AND c.status = 'offline'
                       ORDER BY c.offline_since NULLS LAST, s.slot_id, c.camera_id""", (RUNNABLE,))
        return cur.fetchall()


def set_preview(conn, runner_id: str, session_id: int, camera_id: int, view) -> None:
    """Replace a camera's preview (sessions/preview.py) for the installer's camera view."""
    with conn.cursor() as cur:
        fence(cur, runner_id, session_id)
        cur.execute("""INSERT INTO camera_previews (session_id, camera_id, width, height, faces, jpeg)
                       VALUES (%s, %s, %s, %s, %s, %s)
                       ON CONFLICT (session_id, camera_id) DO UPDATE SET taken_at = now(), width = EXCLUDED.width,
                           height = EXCLUDED.height, faces = EXCLUDED.faces, jpeg = EXCLUDED.jpeg""",
                    (session_id, camera_id, view.width, view.height, psycopg2.extras.Json(view.faces),
                     psycopg2.Binary(view.jpeg)))


def get_preview(conn, slot_id: int, camera_id: int) -> bytes | None:
    """The JPEG of a camera's latest preview in the slot's live (or latest) session, or None."""
    with conn.cursor() as cur:
        cur.execute("""SELECT p.jpeg FROM camera_previews p JOIN sessions s USING (session_id)
                       WHERE s.slot_id = %s AND p.camera_id = %s
                       ORDER BY (s.status IN %s) DESC, s.session_id DESC LIMIT 1""", (slot_id, camera_id, LIVE))
        row = cur.fetchone()
        return bytes(row[0]) if row else None


def record_recognition(conn, runner_id: str, session_id: int, *, student_id: str, name: str, camera_id: int,
                       similarity: float, track_similarity: float, evidence: tuple[str, str, str] | None) -> bool:
    """Record a camera sighting: the first one per student creates the recognition (+ event); True if it did.

    `similarity` is the best single frame's, `track_similarity` that of the track's aggregate, which
    named the student. Later sightings only raise best_similarity. `evidence` is (evidence_id, face_path, frame_path);
    it is stored only with a new recognition.
    """
    with conn.cursor() as cur:
        fence(cur, runner_id, session_id)
        cur.execute("""UPDATE session_recognitions SET best_similarity = greatest(best_similarity, %s),
                              last_seen_at = now()
                       WHERE session_id = %s AND student_id = %s""", (similarity, session_id, student_id))
        if cur.rowcount:
            return False
        evidence_id = add_evidence(cur, session_id, student_id, camera_id, evidence)
        return add_recognition(cur, session_id, student_id=student_id, name=name, camera_id=camera_id,
                               similarity=similarity, evidence_id=evidence_id, source="camera",
                               extra={"track_similarity": round(track_similarity, 4)})


def add_evidence(cur, session_id: int, student_id: str | None, camera_id: int,
                 evidence: tuple[str, str, str] | None) -> str | None:
    """Store an evidence row (evidence_id, face_path, frame_path) in the caller's transaction; its id, or None."""
    if evidence is None:
        return None
    cur.execute("""INSERT INTO evidence (evidence_id, session_id, student_id, camera_id, face_path, frame_path)
                   VALUES (%s, %s, %s, %s, %s, %s)""", (evidence[0], session_id, student_id, camera_id,
                                                         evidence[1], evidence[2]))
    return evidence[0]


def add_recognition(cur, session_id: int, *, student_id: str, name: str, camera_id: int, similarity: float,
                    evidence_id, source: str, extra: dict | None = None, confirmed_by: str | None = None) -> bool:
    """Insert a student's recognition and its `recognition` event (in the caller's transaction), unless the
    session already has one; `source` is camera or review. True if it was created."""
    cur.execute("""INSERT INTO session_recognitions (session_id, student_id, name, camera_id, similarity,
                                                     best_similarity, evidence_id, confirmed_by)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING first_seen_at""",
                (session_id, student_id, name, camera_id, similarity, similarity, evidence_id, confirmed_by))
    row = cur.fetchone()
    if row is None:
        return False
    record_event(cur, session_id, "recognition",
                 {"student_id": student_id, "name": name, "similarity": round(similarity, 4), **(extra or {}),
                  "camera_id": camera_id, "recognized_at": row[0].isoformat(),
                  "evidence_id": str(evidence_id) if evidence_id else None, "source": source})
    return True


def expired_evidence(conn, retention_days: float) -> list[tuple[str, str]]:
    """Delete evidence rows older than the retention; return their file paths for removal."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (0x65766964,))
        if not cur.fetchone()[0]:
            return []  # another process is sweeping
        cur.execute("DELETE FROM review_items WHERE last_seen_at < now() - make_interval(secs => %s)",
                    (retention_days * 86400,))
        cur.execute("""DELETE FROM evidence WHERE created_at < now() - make_interval(secs => %s)
                       RETURNING face_path, frame_path""", (retention_days * 86400,))
        return cur.fetchall()
