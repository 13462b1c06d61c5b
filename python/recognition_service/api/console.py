"""The operator console at /console: server-rendered pages over the same operations as the API.

Sign-in takes an API key once and opens a console session kept in PostgreSQL
(security/console_sessions.py); the cookie holds only its random id and the CSRF token, signed with a
secret kept in PostgreSQL so every worker accepts it, HttpOnly and SameSite=Strict. Sign-out, an idle
timeout, and a key revoked (or removed from API_KEYS) end the session everywhere; a replayed cookie
opens nothing. Every form carries the session's CSRF token; every page and action needs its role's
permission (security/roles.py). Pages are sent with a Content-Security-Policy that allows only the
console's own files and no framing, and are never cached. The same rate limit and audit log as the API.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from functools import wraps
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from recognition_service.api import review as review_api
from recognition_service.api import sessions as sessions_api
from recognition_service.api import students as students_api
from recognition_service.api.auth import count_failure, limit_actor, refuse_while_blocked
from recognition_service.api.context import get_db, service_state
from recognition_service.api.health import health_report
from recognition_service.api.models import model_change_status
from recognition_service.callbacks import outbox
from recognition_service.errors import ApiError
from recognition_service.recognition.thresholds import describe
from recognition_service.review import store as review_store
from recognition_service.api.auth import authorize
from recognition_service.security import console_sessions
from recognition_service.security.api_keys import actor_names, last_used, list_keys, shared_secret
from recognition_service.security.roles import may
from recognition_service.sessions import store as sessions_store
from recognition_service.sessions.camera_worker import SHORT_CHANGED
from recognition_service.storage import disk
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
            app.secret_key = shared_secret(state.db)
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


# Only the console's own files; no inline code, no framing (clickjacking), forms post only here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


@bp.after_request
def _page_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"  # names and faces of children: not after sign-out (Back)
    return response


def _signed_in_as(state) -> tuple[str, str | None]:
    """Who this request is signed in as and with which role: its console session's key, if the session and
    the key still live (role None: not signed in)."""
    sid = session.get("sid")
    if sid is None:  # no key anywhere: the console is as open as the API
        return "anonymous", None if state.keys.keys_configured() else state.keys.role_of("anonymous")
    s = state.settings
    with get_db() as conn:
        actor = console_sessions.touch(conn, sid, s.CONSOLE_IDLE_TIMEOUT_S, s.CONSOLE_SESSION_MAX_S)
        role = state.keys.role_of(actor) if actor is not None else None
        if actor is not None and role is None:
            console_sessions.end(conn, sid, "key_gone")
        g.actor_name = actor_names(conn, {actor}).get(actor) if role is not None else None
    return actor or "anonymous", role


@bp.before_request
def _signed_in():
    state = service_state()
    g.actor, g.role = "anonymous", None
    if request.endpoint in ("console.login", "console.static"):
        return None
    actor, role = _signed_in_as(state)
    if role is None:  # never signed in, signed out, idle too long, or its key was revoked
        if session:
            session.clear()  # only a cookie that was sent is replaced: a cross-site link carries none
        if request.method == "GET":
            return redirect(url_for("console.login", next=request.path))
        abort(401)
    g.actor, g.role = actor, role
    limit_actor(state, actor)
    state.keys.used(actor)
    if request.method == "POST":
        _check_csrf()
    authorize()
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
    zone = _zone()
    offset = datetime.now(zone).strftime("%z")  # +0700
    return {"csrf_token": _csrf if request.path.startswith("/console") else (lambda: ""),
            "can": lambda endpoint: may(g.get("role"), endpoint),
            "time_zone": f"{zone.key} (UTC{offset[:3]}:{offset[3:]})"}


def _zone() -> ZoneInfo:
    return ZoneInfo(service_state().settings.TZ_NAME)


def _local(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(_zone())


@bp.app_template_filter("when")
def _when(value) -> str:
    """Every date and time in the console in one form, in the service's time zone (the footer names it)."""
    moment = _local(value)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


@bp.app_template_filter("size")
def _size(value: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


@bp.app_template_filter("duration")
def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return (f"{days} d " if days else "") + f"{rest // 3600} h {rest % 3600 // 60} min"


@bp.app_template_filter("clock")
def _clock(value) -> str:
    """A time of today's session, to the second, in the service's time zone."""
    moment = _local(value)
    return moment.strftime("%H:%M:%S") if moment else ""


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

def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (no other site, no header-splitting characters)."""
    target = target or ""
    if target.startswith("/console/") and not target.startswith("//") and target.isprintable() \
            and "\\" not in target and len(target) <= 512:
        return target
    return ""


def _login_csrf() -> str:
    """The sign-in form's CSRF token, in its own cookie: showing the sign-in page must not replace the
    session cookie (a cross-site link reaches it without the Strict cookie, which is still valid)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not token or len(token) > 64:
        token = g.setdefault("login_csrf", secrets.token_urlsafe(32))
    return token


LOGIN_CSRF_COOKIE = "console_login_csrf"


def _login_page(status: int = 200):
    token = _login_csrf()
    response = make_response(render_template("console/login.html", next=_safe_next(
        request.values.get("next")), login_csrf=token), status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/console/login",
                        secure=service_state().settings.CONSOLE_COOKIE_SECURE)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    state = service_state()
    if request.method == "GET":
        return _login_page()
    sent = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not hmac.compare_digest(request.form.get("csrf_token", ""), sent):
        abort(400, "the form's CSRF token is missing or wrong: reload the page and try again")
    key = request.form.get("api_key", "").strip()
    bucket = f"failed-key:{request.remote_addr}"
    refuse_while_blocked(state, bucket)
    result = state.keys.check(key or None)
    if result.status not in ("ok", "open"):
        count_failure(state, bucket)
        flash("that API key is not valid" if result.status != "revoked" else "that API key has been revoked",
              "error")
        return _login_page(401)
    old = session.get("sid")
    with get_db() as conn:
        if old:
            console_sessions.end(conn, old, "signed_out")  # a new sign-in never continues an old session
        sid = console_sessions.open_session(conn, result.actor)
    session.clear()
    session.permanent = True
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)
    response = redirect(_safe_next(request.form.get("next")) or url_for("console.sessions"))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@bp.post("/logout")
def logout():
    sid = session.get("sid")
    if sid:
        with get_db() as conn:
            console_sessions.end(conn, sid, "signed_out")  # the cookie, replayed, opens nothing
    session.clear()
    return redirect(url_for("console.login"))


# ---- sessions -----------------------------------------------------------------------------------

# A review candidate this far under the threshold is shown as a weak match (a grey button that says so):
# one click must not make a random closest student look like the answer.
WEAK_MATCH_BAND = 0.15


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
        confirmers = actor_names(conn, {r["confirmed_by"] for r in found["recognized_students"]
                                        if r["confirmed_by"]})
    state = service_state()
    try:  # below this, a candidate is a weak match: shown, but not as the obvious choice
        weak_below = state.engine.threshold(state.engine.model(), found["threshold"]) - WEAK_MATCH_BAND
    except ApiError:  # the model is not loaded yet in this worker
        weak_below = None
    started = datetime.fromisoformat(found["started_at"])
    end = datetime.fromisoformat(found["stopped_at"]) if found["stopped_at"] else datetime.now(started.tzinfo)
    return render_template("console/session.html", s=found, review=items, live=True, confirmers=confirmers,
                           weak_below=weak_below,
                           elapsed=max(1.0, (end - started).total_seconds()),
                           small_px=service_state().settings.SMALL_FACE_PX, short_share=SHORT_CHANGED)


@bp.get("/sessions/<int:slot_id>/attendance.csv")
def attendance_csv(slot_id: int):
    return sessions_api.csv_response(_attendance_or_404(slot_id))


@bp.get("/sessions/<int:slot_id>/attendance")
def attendance_print(slot_id: int):
    """The attendance on one printable page (the browser's Print makes the paper or the PDF)."""
    return render_template("console/attendance.html", a=_attendance_or_404(slot_id))


def _attendance_or_404(slot_id: int) -> dict:
    try:
        return sessions_api.attendance_of(slot_id)
    except ApiError as exc:
        if exc.status == 404:
            abort(404)
        raise


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
    action = form.get("action", "")
    # which button: a candidate's or the roster's one-click choice, or the typed id (the fallback)
    choice = form.get("choice", "typed")
    student_id = (choice[5:] if choice.startswith("pick:") else form.get("roster_pick") if choice == "roster"
                  else form.get("student_id")) if action == "confirm" else None
    try:
        body = review_api.ReviewAction(action=action, student_id=(student_id or "").strip() or None,
                                       name=(form.get("name") or None) if choice == "typed" else None,
                                       enrol=form.get("enrol") == "on",
                                       allow_duplicate=form.get("allow_duplicate") == "on")
    except ValueError as exc:
        raise ApiError(f"the form is not valid: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
                       code="validation_failed", status=422) from None
    result = review_api.act(slot_id, item_id, body)
    if body.action == "reject":
        return "marked as a stranger"
    enrolled = " and enrolled the face" if result.get("face_id") else ""
    name = result["item"].get("resolved_name") or body.student_id
    return f"confirmed as {name} ({body.student_id}){enrolled}"


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
    if not query.isprintable():
        abort(400, "the search may not contain control characters")
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
    enrolled, rejected = students_api.enrol(student_id, images, request.form.get("name") or None,
                                            allow_duplicate=request.form.get("allow_duplicate") == "on")
    if rejected:
        flash("; ".join(f"photo {r['index'] + 1} refused: {r['message']}" for r in rejected), "error")
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
        keys = list_keys(conn)
        env_actors = state.keys.env_actors()
        env_used = last_used(conn, env_actors)
        signed_in = console_sessions.signed_in(conn)
        names = actor_names(conn, {s["actor"] for s in signed_in})
        usage = disk.usage(state.settings.DATA_DIR, state.settings.evidence_dir, conn)
    for s in signed_in:
        s["name"] = names[s["actor"]]
    return render_template("console/service.html", model=model.info.to_dict() if model else None,
                           threshold=describe(state.settings, model.info) if model else None, change=change,
                           runners=runners, backlog=backlog, pool=state.db.stats(), health=health_report(),
                           keys=keys, env_keys=[{"actor": a, "last_used_at": env_used.get(a)} for a in env_actors],
                           signed_in=signed_in, disk=usage, live=True)


@bp.post("/service/redeliver/<int:slot_id>")
@_action(lambda slot_id: url_for("console.service"))
def redeliver(slot_id: int):
    with get_db() as conn:
        count = outbox.redeliver_dead(conn, slot_id)
    service_state().wake_callbacks()
    return f"{count} dead letter(s) of slot {slot_id} queued again"
