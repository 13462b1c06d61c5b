"""A session's attendance as people read it: who was present (first seen when, on which camera, named by a
camera or confirmed by whom), who on the roster was absent, with names and local times. One report for the
API's JSON, the CSV export and the printable page."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

from recognition_service.security.api_keys import actor_names
from recognition_service.security.csv_injection import SafeCsvWriter

CSV_COLUMNS = ("slot_id", "class_name", "room", "teacher", "session_started_at", "status", "student_id", "name",
               "first_seen_at", "camera_id", "similarity", "named_by", "on_roster")


def local_time(value: str | None, zone: ZoneInfo) -> str | None:
    """An ISO 8601 time in the service's time zone, to the second, with its offset."""
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(zone).isoformat(timespec="seconds")


def report(conn, session: dict, zone: ZoneInfo) -> dict:
    """The attendance of one session (sessions.store.get_session's view)."""
    confirmers = {r["confirmed_by"] for r in session["recognized_students"] if r["confirmed_by"]}
    names = actor_names(conn, confirmers) if confirmers else {}
    present = [{"student_id": r["student_id"], "name": r["name"],
                "first_seen_at": local_time(r["first_seen_at"], zone), "camera_id": r["camera_id"],
                "similarity": r["similarity"],
                # "camera", or the name of the key whose holder confirmed the face in review
                "named_by": names.get(r["confirmed_by"], r["confirmed_by"]) if r["confirmed_by"] else "camera",
                "on_roster": r["on_roster"]}
               for r in session["recognized_students"]]
    absent = session["absent_students"]
    return {"slot_id": session["slot_id"], "session_id": session["session_id"], "status": session["status"],
            **{k: session["display"].get(k) for k in ("class_name", "room", "teacher")},
            "time_zone": zone.key, "started_at": local_time(session["started_at"], zone),
            "stopped_at": local_time(session["stopped_at"], zone),
            "roster": session["student_ids"] is not None,
            "present": present, "absent": absent,
            "open_review_items": session["open_review_items"]}


def to_csv(attendance: dict) -> str:
    """One row per student, present then absent; every row repeats the session's columns, so the files of
    many sessions can be put in one sheet. Cells cannot run as formulas (OWASP CSV injection)."""
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(CSV_COLUMNS)
    head = [attendance["slot_id"], attendance["class_name"] or "", attendance["room"] or "",
            attendance["teacher"] or "", attendance["started_at"]]
    for p in attendance["present"]:
        writer.writerow([*head, "present", p["student_id"], p["name"], p["first_seen_at"], p["camera_id"],
                         f"{p['similarity']:.2f}", p["named_by"],
                         "" if p["on_roster"] is None else "yes" if p["on_roster"] else "no"])
    for a in attendance["absent"] or []:
        writer.writerow([*head, "absent", a["student_id"], a["name"] or "", "", "", "", "", "yes"])
    return out.getvalue()


def file_name(attendance: dict) -> str:
    """attendance-slot-42-2026-12-02.csv: the slot and the local date the session started."""
    return f"attendance-slot-{attendance['slot_id']}-{(attendance['started_at'] or '')[:10]}.csv"
