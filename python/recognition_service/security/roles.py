"""What each API key may do: its role's permissions, and the permission every route needs (one table).

A key is given a role when it is made (`manage_api_keys.py create --role`); keys from API_KEYS are admin.
Every /api/v1 route and every console page or action is listed in ROUTES with the permission it needs;
a route missing from the table is admin-only, so a new route is closed until someone decides
(`tests/test_roles.py` fails on a route that is not listed). README "Roles" has the table.
"""

from __future__ import annotations

ROLES = ("admin", "backend", "teacher", "viewer")

# What each permission is, in the words of the 403 a key without it gets.
PERMISSIONS = {
    "students.read": "see students and their faces",
    "students.write": "create or rename students",
    "students.enrol": "enrol faces",
    "students.erase": "erase students or faces",
    "recognize": "recognise photos",
    "sessions.read": "see sessions",
    "sessions.run": "start or stop sessions and redeliver their callbacks",
    "evidence.read": "see evidence images",
    "review.read": "see the review queue",
    "review.decide": "confirm or reject review items",
    "models.read": "see the models",
    "service.read": "see the service's health details and metrics",
    "docs": "read the API description",
}

GRANTS: dict[str, frozenset[str]] = {
    # everything, and the tools only an administrator runs (keys, model purge) check for it too
    "admin": frozenset(PERMISSIONS),
    # the school's attendance backend: the roster, recognition, sessions and their review
    "backend": frozenset(PERMISSIONS),
    # a teacher at the console: their classes' sessions, evidence, absent lists, review decisions
    # (enrolling a confirmed face needs students.enrol, which a teacher does not have)
    "teacher": frozenset({"students.read", "sessions.read", "evidence.read", "review.read", "review.decide",
                          "docs"}),
    # read-only: lists and counts, no faces
    "viewer": frozenset({"students.read", "sessions.read", "review.read", "models.read", "docs"}),
}

# Flask endpoint -> the permission it needs (None: open once signed in, or no key at all).
ROUTES: dict[str, str | None] = {
    "students.put_student": "students.write",
    "students.get_student": "students.read",
    "students.list_faces": "students.read",
    "students.list_students": "students.read",
    "students.delete_student": "students.erase",
    "students.enrol_faces": "students.enrol",
    "students.delete_face": "students.erase",
    "recognition.embeddings": "recognize",
    "recognition.recognize": "recognize",
    "sessions.start_session": "sessions.run",
    "sessions.list_sessions": "sessions.read",
    "sessions.get_session": "sessions.read",
    "sessions.get_attendance": "sessions.read",
    "sessions.stop_session": "sessions.run",
    "sessions.camera_preview": "sessions.read",
    "sessions.get_evidence": "evidence.read",
    "sessions.list_events": "sessions.read",
    "sessions.redeliver": "sessions.run",
    "review.list_review": "review.read",
    "review.act_on_review": "review.decide",
    "models.models": "models.read",
    "models.needs_reenrolment": "models.read",
    "docs.openapi": "docs",
    "health.health": "service.read",
    "health.prometheus_metrics": "service.read",
    "health.live": None,
    "health.ready": None,
    "console.login": None,
    "console.logout": None,
    "console.static": None,
    "console.sessions": "sessions.read",
    "console.session_page": "sessions.read",
    "console.attendance_csv": "sessions.read",
    "console.attendance_print": "sessions.read",
    "console.evidence": "evidence.read",
    "console.camera_preview": "sessions.read",
    "console.review": "review.decide",
    "console.stop": "sessions.run",
    "console.students": "students.read",
    "console.student": "students.read",
    "console.enrol": "students.enrol",
    "console.delete_face": "students.erase",
    "console.delete_student": "students.erase",
    "console.service": "service.read",
    "console.redeliver": "sessions.run",
}

ADMIN_ONLY = "admin"  # what an unlisted route needs


def allowed(role: str | None, permission: str) -> bool:
    return permission in GRANTS.get(role or "", frozenset())


def needed(endpoint: str | None) -> str | None:
    """The permission an endpoint needs; ADMIN_ONLY for one not in the table."""
    if endpoint is None:
        return None  # no route matched: the 404 or 405 follows
    return ROUTES.get(endpoint, ADMIN_ONLY)


def may(role: str | None, endpoint: str | None) -> bool:
    permission = needed(endpoint)
    if permission is None:
        return True
    if permission == ADMIN_ONLY:
        return role == "admin"
    return allowed(role, permission)


def refusal(role: str | None, permission: str) -> str:
    """The 403 message: what was refused, and which roles may."""
    who = [r for r in ROLES if (r == "admin" if permission == ADMIN_ONLY else allowed(r, permission))]
    what = PERMISSIONS.get(permission, "use this route")
    return f"this key's role ({role}) may not {what}; that needs a key with the role {' or '.join(who)}"
