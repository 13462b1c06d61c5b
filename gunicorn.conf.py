"""Gunicorn settings for the recognition service (Linux/macOS); start it with python/start_production.py.

Every value comes from the validated settings (environment / .env). No preload: each worker imports the
app after fork, then post_worker_init loads the model and opens the database pool in that worker.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "python"))

from recognition_service.config import load_settings  # noqa: E402
from recognition_service.serving.logging_setup import dict_config  # noqa: E402

_settings = load_settings()

wsgi_app = "recognizer_service:app"
pythonpath = os.path.join(_HERE, "python")
bind = [f"{_settings.HOST}:{_settings.PORT}"]
worker_class = "gthread"
workers = _settings.WORKERS
threads = _settings.THREADS
timeout = _settings.WORKER_TIMEOUT_S
graceful_timeout = _settings.GRACEFUL_TIMEOUT_S
# An idle keep-alive connection holds one of the worker's threads: let it go after 2 s (clients reconnect
# cheaply; behind nginx, the proxy keeps its own pool of connections to Gunicorn busy instead).
keepalive = 2
preload_app = False
# A leak guard: each worker is replaced after this many requests (jittered so they don't restart together).
max_requests = _settings.MAX_REQUESTS
max_requests_jitter = _settings.MAX_REQUESTS_JITTER
# The heartbeat file lives in memory: a slow or full disk must not get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
# The app logs one line per request (request id, route, status, latency, faces); Gunicorn's access
# log is off (see logging_setup.dict_config). Its format, if switched on, still carries id and latency.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s request_id=%({x-request-id}o)s latency_ms=%(M)s'
loglevel = _settings.LOG_LEVEL.lower()
logconfig_dict = dict_config(_settings.LOG_LEVEL, _settings.LOG_FORMAT)


def post_fork(server, worker):
    server.log.info("worker %s forked", worker.pid)


def post_worker_init(worker):
    """Load the model, open the pool and start the session runner in this worker, before it accepts requests."""
    import signal

    # Ctrl+C reaches every process of the group: the master drains the workers, so they ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = worker.wsgi.extensions["recognition"]
    state.warm_up()
    state.start_background()
    gunicorn_on_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        # Stop claiming sessions at once; cameras stop and leases are released in worker_exit.
        if state.sessions is not None:
            state.sessions.begin_drain()
        if callable(gunicorn_on_term):
            gunicorn_on_term(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def worker_exit(server, worker):
    """Stop this worker's session cameras (releasing their leases) and close its database pool."""
    app = getattr(worker, "wsgi", None)
    if app is not None and "recognition" in getattr(app, "extensions", {}):
        # Leave time inside graceful_timeout: the master kills a worker that overstays it.
        app.extensions["recognition"].close(timeout=max(1.0, _settings.GRACEFUL_TIMEOUT_S - 2))


def child_exit(server, worker):
    """Drop a dead worker's live metrics gauges (master side)."""
    # prometheus_client directly: importing the service's metrics module would create the master's own
    # (always zero) samples, such as recognizer_process_rss_bytes{pid=<master>} 0.
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
