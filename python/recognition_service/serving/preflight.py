"""Checks the start scripts run before serving: dependencies, configuration, model folder, database."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# import name -> package in requirements.txt
REQUIRED_MODULES = {
    "flask": "flask", "psycopg2": "psycopg2-binary", "pgserver": "pgserver", "insightface": "insightface",
    "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless", "PIL": "pillow", "numpy": "numpy",
    "requests": "requests", "pydantic_settings": "pydantic-settings", "prometheus_client": "prometheus-client",
}


class PreflightError(Exception):
    """The service cannot start; the message is one line saying why."""


def missing_packages(extra: dict[str, str] | None = None) -> list[str]:
    """Packages whose module does not import."""
    missing = []
    for module, package in {**REQUIRED_MODULES, **(extra or {})}.items():
        try:
            with warnings.catch_warnings():  # import-time noise (platformdirs on XDG_RUNTIME_DIR) is not an error
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a broken install counts as missing
            missing.append(package)
    return missing


def check_dependencies(extra: dict[str, str] | None = None, install: bool = False) -> None:
    """Raise PreflightError naming missing packages; with install=True, pip-install requirements.txt first."""
    missing = missing_packages(extra)
    if missing and install:
        import bootstrap  # python/bootstrap.py: the same install (one headless OpenCV) as setup.sh and Windows

        try:
            bootstrap.install_into(sys.executable, REPO_ROOT)
        except bootstrap.BootstrapError as exc:
            raise PreflightError(str(exc)) from None
        importlib.invalidate_caches()
        missing = missing_packages(extra)
    if missing:
        raise PreflightError(f"missing Python packages: {', '.join(missing)} (run scripts/setup.sh, or on Windows "
                             "start_recognizer_windows.bat, or start with --install-deps)")


def load_checked_settings():
    """Validated settings, or PreflightError naming the bad variable."""
    from recognition_service.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        raise PreflightError(str(exc)) from None


def check_model(settings) -> Path:
    """The model pack folder, checked to hold a detector and a recogniser."""
    from recognition_service.recognition.model import find_pack_models, resolve_model_pack

    try:
        pack = resolve_model_pack(settings)
        find_pack_models(pack)
    except Exception as exc:  # noqa: BLE001 - download or file errors all mean: no usable model
        raise PreflightError(f"model not usable: {exc} (set MODEL_DIR to a model pack folder; "
                             "see README, Installing buffalo_l offline)") from None
    if settings.shadow_path is not None:
        try:
            find_pack_models(settings.shadow_path)
        except Exception as exc:  # noqa: BLE001
            raise PreflightError(f"SHADOW_MODEL_DIR not usable: {exc} (a model pack folder, or unset it; "
                                 "see README, Change the model)") from None
    return pack


def prepare_database(settings, *, for_serving: bool = True) -> str:
    """Start the embedded PostgreSQL when no DATABASE_URL is set, check it answers, apply migrations.

    For serving, also refuse a non-loopback address when no API key exists (`check_exposure`).
    """
    import psycopg2

    from recognition_service.storage.embedded_pg import start_embedded_postgres
    from recognition_service.storage.migrate import apply_migrations

    url = settings.DATABASE_URL
    where = "DATABASE_URL" if url else f"embedded PostgreSQL in {settings.DATA_DIR.resolve() / 'pgdata'}"
    if url is None:
        try:
            url = start_embedded_postgres(settings.DATA_DIR)
        except Exception as exc:  # noqa: BLE001
            raise PreflightError(f"embedded PostgreSQL did not start in {settings.DATA_DIR}: {exc}") from None
    try:
        conn = psycopg2.connect(url, connect_timeout=settings.DB_CONNECT_TIMEOUT_S)
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise PreflightError(f"database unreachable (DATABASE_URL): {first}") from None
    try:
        with conn:
            apply_migrations(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FROM api_keys")
                db_keys, all_db_keys = cur.fetchone()
    finally:
        conn.close()  # closed before any fork: workers open their own pools
    os.environ["DATABASE_URL"] = url
    if for_serving:
        check_exposure(settings, db_keys, all_db_keys)
    # Only once nothing stops the start: a refusal stays one line.
    print(f"data folder: {settings.DATA_DIR.resolve()} (database: {where})", file=sys.stderr)
    if for_serving:
        print(f"console: {console_url(settings)} (sign in with an API key)", file=sys.stderr)
    return url


def console_url(settings) -> str:
    """Where a person opens the console; a wildcard address is named as this machine's."""
    host = settings.HOST
    if host in ("0.0.0.0", "::", ""):
        host = "<this machine's address>"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.PORT}/console/"


LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def check_exposure(settings, db_keys: int, all_db_keys: int = 0) -> None:
    """Without any API key, serve on loopback only (unless ALLOW_UNAUTHENTICATED); say so either way."""
    if settings.api_keys or db_keys:
        return
    if all_db_keys:  # the API checks keys once any was made: with all of them revoked it refuses everyone
        print(f"WARNING: all {all_db_keys} API key(s) in the database are revoked: every /api/v1 request is "
              "refused (401) until you create one with python/manage_api_keys.py or set API_KEYS", file=sys.stderr)
        return
    if settings.HOST in LOOPBACK_HOSTS or settings.HOST.startswith("127."):
        print("WARNING: no API key configured: the API is open to anyone on this machine "
              "(set API_KEYS or create one with python/manage_api_keys.py)", file=sys.stderr)
        return
    if not settings.ALLOW_UNAUTHENTICATED:
        raise PreflightError(f"no API key configured: refusing to serve on {settings.HOST} without one; "
                             "set API_KEYS, create a key with python/manage_api_keys.py, or set "
                             "ALLOW_UNAUTHENTICATED=1")
    print(f"WARNING: ALLOW_UNAUTHENTICATED=1: the API on {settings.HOST} accepts requests without a key",
          file=sys.stderr)


_EPILOG = """Everything else is set by environment variables (or a .env file in the current folder); the ones
a first start needs:
  MODEL_DIR      a model pack folder (detector + recogniser .onnx); else MODEL_ROOT/models/MODEL_NAME
                 (~/.insightface/models/buffalo_l, downloaded on first use when online)
  DATABASE_URL   PostgreSQL; unset: an embedded PostgreSQL in DATA_DIR
  DATA_DIR       database and evidence images (default: data/ in the repository)
  API_KEYS       comma-separated keys; without any key the service listens on loopback only
The README's Configuration section lists every variable."""


def check_port(host: str, port: int) -> None:
    """Refuse at once when the address is taken (Gunicorn would retry for 5 s, then exit with a traceback)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is fine
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PreflightError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server "
                                 "there? set PORT or --port)") from None


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options both start scripts share."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to bind (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (PORT, default 8000)")
    parser.add_argument("--threads", type=int, help="threads per process (THREADS, default 4)")
    parser.add_argument("--install-deps", action="store_true",
                        help="pip-install requirements.txt if anything is missing")
    return parser


def export_options(values: dict[str, object]) -> None:
    """Command-line options win over the environment: put the given ones there for settings to read."""
    for name, value in values.items():
        if value is not None:
            os.environ[name] = str(value)


def fail(program: str, error: Exception) -> None:
    """Print one clear line and exit non-zero."""
    print(f"{program}: error: {error}", file=sys.stderr)
    raise SystemExit(2)
