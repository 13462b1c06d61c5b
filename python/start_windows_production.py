#!/usr/bin/env python3
"""Start the recognition service with Waitress (Windows, also runs on Linux).

The model and the database pool are created once before serving. Ctrl+C or SIGTERM stops accepting
connections, lets requests in flight finish (within GRACEFUL_TIMEOUT_S), closes the pool and exits 0.
"""

from __future__ import annotations

import _thread
import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from recognition_service.serving import preflight  # noqa: E402
from recognition_service.serving.malloc_tuning import tune_malloc  # noqa: E402

PROG = "start_windows_production"
log = logging.getLogger("recognition_service.waitress")


def parse_args(argv=None) -> argparse.Namespace:
    parser = preflight.base_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument("--channel-timeout", type=int,
                        help="idle connection timeout in s (CHANNEL_TIMEOUT_S, default 30)")
    return parser.parse_args(argv)


class InFlight:
    """WSGI wrapper counting requests being handled, so shutdown can wait for them."""

    def __init__(self, app):
        self.app, self.count, self._lock = app, 0, threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.count += 1
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.count -= 1


def serve(settings, channel_timeout: int) -> None:
    from recognition_service import create_app
    from waitress import create_server

    app = create_app(settings)
    state = app.extensions["recognition"]
    state.warm_up()
    state.start_background()
    wrapped = InFlight(app)
    # connection_limit: Waitress stops accepting past it (its default, 100, is reached by a port scanner or a
    # few idle clients); cleanup_interval: how often idle connections are looked for (default 30 s)
    server = create_server(wrapped, host=settings.HOST, port=settings.PORT, threads=settings.THREADS,
                           channel_timeout=channel_timeout, max_request_body_size=settings.max_upload_bytes,
                           connection_limit=settings.WAITRESS_CONNECTION_LIMIT,
                           cleanup_interval=max(1, min(5, channel_timeout)), ident="recognizer")
    stopping, drained = threading.Event(), threading.Event()

    def drain_then_stop():
        deadline = time.monotonic() + settings.GRACEFUL_TIMEOUT_S
        while wrapped.count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the event loop write the last responses
        drained.set()
        _thread.interrupt_main()  # runs on_signal in the main thread, which ends Waitress's loop

    def on_signal(signum, _frame):
        if drained.is_set():
            raise KeyboardInterrupt  # Waitress's run() catches it and shuts its threads down
        if stopping.is_set():
            return
        stopping.set()
        if state.sessions is not None:
            state.sessions.begin_drain()
        log.info("signal %s: no new connections; waiting for %d request(s) in flight", signum, wrapped.count)
        server.accepting = False
        threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGBREAK"):  # Ctrl+Break in a Windows console
        signal.signal(signal.SIGBREAK, on_signal)
    log.info("serving on http://%s:%s with %d threads", settings.HOST, settings.PORT, settings.THREADS)
    try:
        server.run()
    finally:
        state.close(timeout=settings.GRACEFUL_TIMEOUT_S)
        log.info("stopped")


def main(argv=None) -> None:
    args = parse_args(argv)
    tune_malloc()
    preflight.export_options({"HOST": args.host, "PORT": args.port, "THREADS": args.threads,
                              "CHANNEL_TIMEOUT_S": args.channel_timeout})
    try:
        preflight.check_dependencies({"waitress": "waitress"}, install=args.install_deps)
        settings = preflight.load_checked_settings()
        preflight.check_port(settings.HOST, settings.PORT)
        preflight.check_model(settings)
        preflight.prepare_database(settings)
        settings = preflight.load_checked_settings()  # now with the embedded database's URL
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)
    serve(settings, settings.CHANNEL_TIMEOUT_S)


if __name__ == "__main__":
    main()
