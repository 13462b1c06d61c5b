"""The operator console at /console: server-rendered pages over the same operations as the API.

Sign-in takes an API key once; the session cookie then holds who signed in (a database key by its
sha256, never the key), signed with a secret kept in PostgreSQL so every worker accepts it, HttpOnly
and SameSite=Strict. Every form carries the session's CSRF token. A revoked key ends its console
sessions at the next request. The same rate limit and audit log as the API apply.
"""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import datetime, timedelta
from functools import wraps

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from recognition_service.api import review as review_api
from recognition_service.api import sessions as sessions_api
from recognition_service.api import students as students_api
from recognition_service.api.auth import count_failure, limit_actor, refuse_while_blocked
from recognition_service.api.context import get_db, service_state
from recognition_service.api.models import model_change_status
from recognition_service.callbacks import outbox
from recognition_service.errors import ApiError
from recognition_service.recognition.thresholds import describe
from recognition_service.review import store as review_store
from recognition_service.security.api_keys import hash_key
from recognition_service.sessions import store as sessions_store
from recognition_service.sessions.camera_worker import SHORT_CHANGED
from recognition_service.students import store as students_store

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


class _SharedSecretSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the secret read from PostgreSQL when first needed (not at import:
    the database may not answer yet), so every worker and server signs and accepts the same cookies."""

    def open_session(self, app, request):
        if not request.path.startswith("/console"):
            return None  # the API has no cookies: a null session, and no database read for the secret
        if not app.secret_key:
            state = app.extensions["recognition"]
            state.ensure_schema()
            app.secret_key = _secret(state.db)
        return super().open_session(app, request)


def init_console(app) -> None:
    app.session_interface = _SharedSecretSessions()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME="console_session", SESSION_COOKIE_PATH="/console",
                      SESSION_COOKIE_SECURE=service_settings(app).CONSOLE_COOKIE_SECURE,
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=12))
    app.register_blueprint(bp, url_prefix="/console")


def service_settings(app):
    return app.extensions["recognition"].settings


def _secret(db) -> bytes:
    """The cookie-signing secret: made once per database, shared by every worker and server."""
    with db.get_db_conn() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO console_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                    (os.urandom(32),))
        cur.execute("SELECT secret FROM console_secret WHERE id = 1")
        return bytes(cur.fetchone()[0])


@bp.before_request
def _signed_in():
    state = service_state()
    g.actor = "anonymous"
    if request.endpoint in ("console.login", "console.static"):
        return None
    actor = session.get("actor")
    keys = state.keys
    if actor is None and not keys.keys_configured():
        actor = "anonymous"  # no key exists anywhere: the console is as open as the API
    if actor is None or not keys.check_signed_in(actor, session.get("key_sha256")):
        session.clear()
        if request.method == "GET":
            return redirect(url_for("console.login", next=request.path))
        abort(401)
    g.actor = actor
    limit_actor(state, actor)
    if request.method == "POST":
        _check_csrf()
    return None


def _check_csrf() -> None:
    token = request.form.get("csrf_token", "")
    if not token or not hmac.compare_digest(token, session.get("csrf", "")):
        abort(400, "the form's CSRF token is missing or wrong: reload the page and try again")


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.app_context_processor
def _template_globals():
    return {"csrf_token": _csrf if request.path.startswith("/console") else (lambda: "")}


def _action(redirect_to):
    """Run a form action; an API error becomes a message on the page instead of an error page."""
    def decorate(view):
        @wraps(view)
        def run(*args, **kwargs):
            try:
                message = view(*args, **kwargs)
                if message:
                    flash(message, "ok")
            except ApiError as exc:
                flash(f"{exc.message} ({exc.code})", "error")
            return redirect(redirect_to(*args, **kwargs))
        return run
    return decorate


# ---- sign-in ------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    state = service_state()
    if request.method == "GET":
        return render_template("console/login.html", next=request.args.get("next", ""))
    _check_csrf()
    key = request.form.get("api_key", "").strip()
    bucket = f"failed-key:{request.remote_addr}"
    refuse_while_blocked(state, bucket)
    result = state.keys.check(key or None)
    if result.status not in ("ok", "open"):
        count_failure(state, bucket)
        flash("that API key is not valid" if result.status != "revoked" else "that API key has been revoked",
              "error")
        return render_template("console/login.html", next=request.form.get("next", "")), 401
    session.clear()
    session.permanent = True
    session["actor"] = result.actor
    session["key_sha256"] = hash_key(key) if result.actor.startswith("key:") else None
    session["csrf"] = secrets.token_urlsafe(32)
    target = request.form.get("next", "")
    return redirect(target if target.startswith("/console/") else url_for("console.sessions"))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))


# ---- sessions -----------------------------------------------------------------------------------

@bp.get("/")
def sessions():
    with get_db() as conn:
        items, total = sessions_store.list_sessions(conn, status=None, limit=50, offset=0)
    return render_template("console/sessions.html", sessions=items, total=total, live=True)


@bp.get("/sessions/<int:slot_id>")
def session_page(slot_id: int):
    with get_db() as conn:
        found = sessions_store.get_session(conn, slot_id)
        if found is None:
            abort(404)
        items = review_store.list_items(conn, slot_id, "open") or []
    started = datetime.fromisoformat(found["started_at"])
    end = datetime.fromisoformat(found["stopped_at"]) if found["stopped_at"] else datetime.now(started.tzinfo)
    return render_template("console/session.html", s=found, review=items, live=True,
                           elapsed=max(1.0, (end - started).total_seconds()),
                           small_px=service_state().settings.SMALL_FACE_PX, short_share=SHORT_CHANGED)


@bp.get("/sessions/<int:slot_id>/evidence/<evidence_id>")
def evidence(slot_id: int, evidence_id: str):
    return sessions_api.send_evidence(slot_id, evidence_id)


@bp.get("/sessions/<int:slot_id>/cameras/<int:camera_id>/preview")
def camera_preview(slot_id: int, camera_id: int):
    return sessions_api.camera_preview(slot_id, camera_id)


@bp.post("/sessions/<int:slot_id>/review/<item_id>")
@_action(lambda slot_id, item_id: url_for("console.session_page", slot_id=slot_id))
def review(slot_id: int, item_id: str):
    form = request.form
    try:
        body = review_api.ReviewAction(action=form.get("action", ""), student_id=form.get("student_id") or None,
                                       name=form.get("name") or None, enrol=form.get("enrol") == "on")
    except ValueError as exc:
        raise ApiError(f"the form is not valid: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
                       code="validation_failed", status=422) from None
    result = review_api.act(slot_id, item_id, body)
    if body.action == "reject":
        return "marked as a stranger"
    enrolled = " and enrolled the face" if result.get("face_id") else ""
    return f"confirmed as {body.student_id}{enrolled}"


@bp.post("/sessions/<int:slot_id>/stop")
@_action(lambda slot_id: url_for("console.session_page", slot_id=slot_id))
def stop(slot_id: int):
    with get_db() as conn:
        if not sessions_store.stop_session(conn, slot_id):
            raise ApiError("no running session for this slot", code="session_not_found", status=404)
    service_state().wake_sessions()
    return "stopping"


# ---- students -----------------------------------------------------------------------------------

@bp.get("/students")
def students():
    query = request.args.get("q", "").strip()[:128]
    with get_db() as conn:
        found = students_store.search_students(conn, query, limit=100)
    return render_template("console/students.html", students=found, q=query)


@bp.get("/students/<student_id>")
def student(student_id: str):
    with get_db() as conn:
        found = students_store.get_student(conn, student_id) if students_store.STUDENT_ID_RE.fullmatch(
            student_id) else None
        if found is None:
            abort(404)
        faces = students_store.list_faces(conn, student_id)
    return render_template("console/student.html", st=found, faces=faces, confirm=request.args.get("confirm"))


@bp.post("/students/<student_id>/faces")
@_action(lambda student_id: url_for("console.student", student_id=student_id)
         if students_store.STUDENT_ID_RE.fullmatch(student_id) else url_for("console.students"))
def enrol(student_id: str):
    images = [f.read() for f in request.files.getlist("image") if f.filename]
    if not images:
        raise ApiError("choose a photo to enrol", code="missing_image", status=400)
    enrolled, rejected = students_api.enrol(student_id, images, request.form.get("name") or None)
    return f"{len(enrolled)} photo(s) enrolled" + (f", {len(rejected)} refused" if rejected else "")


@bp.post("/students/<student_id>/faces/<int:face_id>/delete")
@_action(lambda student_id, face_id: url_for("console.student", student_id=student_id))
def delete_face(student_id: str, face_id: int):
    if request.form.get("confirmed") != "yes":
        raise ApiError("tick the box to confirm", code="not_confirmed", status=400)
    students_api.remove_face(student_id, face_id)
    return f"face {face_id} deleted"


@bp.post("/students/<student_id>/delete")
def delete_student(student_id: str):
    if request.form.get("confirmed") != "yes":
        flash("tick the box to confirm (not_confirmed)", "error")
        return redirect(url_for("console.student", student_id=student_id))
    try:
        students_api.erase(student_id)
    except ApiError as exc:
        flash(f"{exc.message} ({exc.code})", "error")
        return redirect(url_for("console.students"))
    flash(f"student {student_id} and everything about them erased", "ok")
    return redirect(url_for("console.students"))


# ---- service ------------------------------------------------------------------------------------

@bp.get("/service")
def service():
    state = service_state()
    model = state.models.loaded
    with get_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT runner_id, host, pid, sessions, seen_at FROM session_runners ORDER BY runner_id")
        runners = cur.fetchall()
        cur.execute("""SELECT s.slot_id, count(*) FILTER (WHERE d.status = 'pending') AS pending,
                              count(*) FILTER (WHERE d.status = 'dead') AS dead
                       FROM deliveries d JOIN sessions s USING (session_id)
                       GROUP BY s.slot_id HAVING count(*) FILTER (WHERE d.status IN ('pending', 'dead')) > 0
                       ORDER BY s.slot_id""")
        backlog = cur.fetchall()
        change = model_change_status(conn)
    return render_template("console/service.html", model=model.info.to_dict() if model else None,
                           threshold=describe(state.settings, model.info) if model else None, change=change,
                           runners=runners, backlog=backlog, pool=state.db.stats(), live=True)


@bp.post("/service/redeliver/<int:slot_id>")
@_action(lambda slot_id: url_for("console.service"))
def redeliver(slot_id: int):
    with get_db() as conn:
        count = outbox.redeliver_dead(conn, slot_id)
    service_state().wake_callbacks()
    return f"{count} dead letter(s) of slot {slot_id} queued again"
