#!/usr/bin/env python3
"""Start the recognition service on Linux/macOS: Gunicorn with gthread workers and gunicorn.conf.py.

Checks dependencies, configuration, the model folder and the database before any worker is forked,
and says in one line what is wrong. SIGTERM and SIGINT stop it gracefully: requests in flight finish
(within GRACEFUL_TIMEOUT_S), then each worker closes its database pool.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

# Metrics of all workers add up through files in this folder (a fresh one per start). It must be set
# before prometheus_client is first imported (the dependency check imports it, the app's metrics use it).
def _remove_orphaned_metrics_dirs() -> None:
    """Folders of earlier starts whose master is gone without its atexit (killed, power cut): months of
    unattended restarts must not fill the temporary folder. Each name carries its master's pid."""
    for old in Path(tempfile.gettempdir()).glob("recognizer-metrics-*-*"):
        pid = old.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that master still runs (its folder is in use)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            continue  # another user's process: alive, and not ours


_remove_orphaned_metrics_dirs()
METRICS_DIR = tempfile.mkdtemp(prefix=f"recognizer-metrics-{os.getpid()}-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
# Workers are forked inside run_gunicorn() and unwind through main() and atexit when they exit (a
# recycle, a crash): only this process may remove the folder every worker writes to. atexit also
# covers --help, a failed check and --dev.
MASTER_PID = os.getpid()


def _remove_metrics_dir() -> None:
    if os.getpid() == MASTER_PID:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)


atexit.register(_remove_metrics_dir)

from recognition_service.serving import preflight  # noqa: E402
from recognition_service.serving.malloc_tuning import tune_malloc  # noqa: E402

PROG = "start_production"


def parse_args(argv=None) -> argparse.Namespace:
    parser = preflight.base_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, help="worker processes (WORKERS, default 2)")
    parser.add_argument("--dev", action="store_true", help="Flask's development server instead (not for production)")
    return parser.parse_args(argv)


def run_gunicorn() -> None:
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.arbiter import Arbiter

    class GracefulArbiter(Arbiter):
        # Gunicorn treats SIGINT as a quick shutdown; here Ctrl+C drains requests like SIGTERM.
        def handle_int(self):
            raise StopIteration

    class Application(WSGIApplication):
        def run(self):
            GracefulArbiter(self).run()

    sys.argv = [PROG, "--config", str(ROOT / "gunicorn.conf.py")]
    Application("%(prog)s [OPTIONS]").run()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.dev:  # one process: plain metrics. Before the dependency check, which imports prometheus_client.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        _remove_metrics_dir()
    tune_malloc()
    preflight.export_options({"HOST": args.host, "PORT": args.port, "WORKERS": args.workers, "THREADS": args.threads})
    try:
        preflight.check_dependencies({"gunicorn": "gunicorn"}, install=args.install_deps)
        settings = preflight.load_checked_settings()
        preflight.check_port(settings.HOST, settings.PORT)
        preflight.check_model(settings)
        preflight.prepare_database(settings)
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)

    if args.dev:
        # SIGTERM ends the server like Ctrl+C: sessions released, pool closed, embedded PostgreSQL stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"{PROG}: WARNING: Flask development server: single process, not for production", file=sys.stderr)
        from recognition_service import create_app

        app = create_app(warm_up=True)
        state = app.extensions["recognition"]
        state.start_background()
        try:
            app.run(host=settings.HOST, port=settings.PORT, threaded=True)
        finally:
            state.close(timeout=settings.GRACEFUL_TIMEOUT_S)
        return

    run_gunicorn()


if __name__ == "__main__":
    main()
