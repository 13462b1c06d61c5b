"""One thread per process that owns sessions through leases in PostgreSQL and runs their cameras.

Each tick (SESSION_POLL_S): end any live session whose planned end has come (whoever owns it), drop
sessions this process no longer owns (stopped elsewhere, ended, failed, taken over), renew the leases it holds (every third of SESSION_LEASE_S), say it is alive with its
session count, and claim one unowned or lease-expired session when it holds no more than the least
loaded live process; that spreads sessions over workers and servers. A dead owner's sessions are
claimed by another process within SESSION_LEASE_S + SESSION_POLL_S; a graceful shutdown releases the
leases so the next owner starts at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from recognition_service import metrics
from recognition_service.background import BackgroundLoop, new_runner_id
from recognition_service.sessions import store
from recognition_service.sessions.evidence import remove_files
from recognition_service.sessions.runner import SessionRun
from recognition_service.sessions.scheduler import ModelScheduler

log = logging.getLogger(__name__)


class SessionSupervisor(BackgroundLoop):
    """Claims, renews and releases session leases for this process and runs the owned sessions."""

    def __init__(self, state):
        super().__init__("session-supervisor", state.settings.SESSION_POLL_S)
        self.state = state
        self.settings = state.settings
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.runner_id = new_runner_id()
        self.scheduler = ModelScheduler(self.settings.CAMERA_INFERENCE_CONCURRENCY)  # all cameras share the model
        self.handles: dict[int, SessionRun] = {}
        self._last_renew = 0.0
        self._last_sweep = 0.0

    def start(self) -> None:
        if self._thread is None:
            super().start()
            log.info("session runner %s started", self.runner_id)

    def begin_drain(self) -> None:
        """Stop claiming; safe to call from a signal handler."""
        self._stop.set()
        self._wake.set()

    def shutdown(self, timeout: float) -> None:
        """Stop the cameras within `timeout` and release the leases so another process resumes at once."""
        self.begin_drain()
        if self._thread is not None:
            self._thread.join(min(timeout, 5.0))
        handles = list(self.handles.values())
        for handle in handles:
            handle.stop()
        end = time.monotonic() + max(0.5, timeout - 1.0)
        for handle in handles:
            handle.join(max(0.0, end - time.monotonic()))
        self.handles.clear()
        metrics.SESSIONS_OWNED.set(0)
        if self._thread is None:
            return
        try:
            with self.state.db.get_db_conn() as conn:
                released = store.release_leases(conn, self.runner_id)
                store.remove_runner(conn, self.runner_id)
            log.info("session runner %s stopped; %d session(s) released", self.runner_id, released)
        except Exception as exc:  # noqa: BLE001 - the leases then expire by themselves
            log.warning("could not release session leases (they expire in %ss): %s", self.settings.SESSION_LEASE_S, exc)

    def tick(self) -> bool:
        """One round of the duties, each a small function: drop, renew, flush, claim, sweep; then a pause."""
        self.state.ensure_schema()
        self._end_due()
        self._drop_ended()
        fewest = self._renew_and_heartbeat()
        self._flush()
        self._claim_if_least_loaded(fewest)
        metrics.SESSIONS_OWNED.set(len(self.handles))
        metrics.CAMERAS_SHORT_CHANGED.set(sum(h.short_changed() for h in self.handles.values()))
        self._sweep_evidence()
        return False  # every SESSION_POLL_S, or sooner when woken

    def _end_due(self) -> None:
        """End every live session whose planned end has come, whoever runs it (the owner then drops it)."""
        with self.state.db.get_db_conn() as conn:
            ended = store.end_due_sessions(conn)
        for slot in ended:
            log.info("session of slot %s ended at its planned end", slot)

    def _drop_ended(self) -> None:
        """Forget sessions whose cameras stopped here (lease lost, all cameras failed)."""
        for sid in [sid for sid, h in self.handles.items() if h.stopped.is_set()]:
            self.handles.pop(sid).join(0.1)

    def _renew_and_heartbeat(self) -> int:
        """Renew the leases held (every third of the lease), stop what is no longer ours, say we are alive.

        Returns the session count of the least loaded live runner."""
        s, now, owned = self.settings, time.monotonic(), list(self.handles)
        with self.state.db.get_db_conn() as conn:
            if now - self._last_renew >= s.SESSION_LEASE_S / 3:
                alive = store.renew_leases(conn, self.runner_id, owned, s.SESSION_LEASE_S)
                self._last_renew = now
            else:
                alive = store.still_owned(conn, self.runner_id, owned)
            for sid in set(owned) - alive:
                self.handles.pop(sid).lost()
            return store.heartbeat_runner(conn, self.runner_id, self.host, self.pid, len(self.handles),
                                          s.SESSION_LEASE_S)

    def _flush(self) -> None:
        """Camera states kept while the database was down, and frame counters."""
        for handle in list(self.handles.values()):
            handle.flush(self.settings.CAMERA_OFFLINE_GRACE_S)

    def _claim_if_least_loaded(self, fewest: int) -> None:
        held = len(self.handles)
        if not self.stopping and held < self.settings.MAX_SESSIONS_PER_WORKER and held <= fewest:
            self._claim_one()

    def _claim_one(self) -> None:
        with self.state.db.get_db_conn() as conn:
            spec = store.claim_session(conn, self.runner_id, self.settings.SESSION_LEASE_S)
        if spec is None:
            return
        log.info("session of slot %s (id %s) claimed by %s: %d camera(s), %d student(s) already recognised",
                 spec.slot_id, spec.session_id, self.runner_id, len(spec.cameras), len(spec.seen))
        handle = SessionRun(spec, engine=self.state.engine, db=self.state.db, runner_id=self.runner_id,
                            settings=self.settings, scheduler=self.scheduler, shadow=self.state.shadow)
        self.handles[spec.session_id] = handle
        handle.start()
        self._wake.set()  # look again soon: there may be more to take

    def _sweep_evidence(self) -> None:
        """Evidence past EVIDENCE_RETENTION_DAYS goes (every EVIDENCE_SWEEP_S, one process at a time)."""
        if time.monotonic() - self._last_sweep < self.settings.EVIDENCE_SWEEP_S:
            return
        self._last_sweep = time.monotonic()
        with self.state.db.get_db_conn() as conn:
            expired = store.expired_evidence(conn, self.settings.EVIDENCE_RETENTION_DAYS)
        if expired:
            removed = remove_files(self.settings.evidence_dir, expired)
            log.info("evidence retention: %d item(s) expired, %d file(s) removed", len(expired), removed)
