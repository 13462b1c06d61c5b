"""Writes what a session's cameras see (sightings, camera states, counters) to PostgreSQL, fenced by the lease."""

from __future__ import annotations

import logging
import threading

import psycopg2

from recognition_service import metrics
from recognition_service.errors import ServiceUnavailable
from recognition_service.review import store as review_store
from recognition_service.security.audit import log_ref
from recognition_service.sessions import store
from recognition_service.sessions.evidence import remove_files, save_evidence
from recognition_service.sessions.track_decision import Sighting

log = logging.getLogger(__name__)

_RAISE_EPS = 0.01  # a later sighting is written only when it beats the recorded best by this much


class SessionRecorder:
    """One running session's writes. A lost lease, or a session that just failed, sets `stopped`.

    Camera states that cannot be written (database down) are kept and written by the next flush, so no
    camera_offline / camera_recovered event is lost.
    """

    def __init__(self, *, db, runner_id: str, spec: store.SessionSpec, evidence_dir, evidence_max_side: int,
                 stopped: threading.Event):
        self._db, self._runner_id, self.spec = db, runner_id, spec
        self._evidence_dir, self._evidence_max_side = evidence_dir, evidence_max_side
        self.stopped = stopped
        self._lock = threading.Lock()
        self._pending: dict[int, tuple] = {}  # camera states not yet written

    def lease_lost(self) -> None:
        if not self.stopped.is_set():
            log.info("session of slot %s is no longer owned here; stopping its cameras", self.spec.slot_id)
        self.stopped.set()

    def sighting(self, camera_id: int, seen: Sighting) -> None:
        """Record the first sighting of a student (with evidence) or raise their best similarity."""
        student_id, similarity = seen.student_id, seen.similarity
        with self._lock:
            best = self.spec.seen.get(student_id)
            if best is not None and similarity <= best + _RAISE_EPS:
                return
            self.spec.seen[student_id] = similarity if best is None else max(best, similarity)
        first = best is None
        root = self._evidence_dir
        evidence = save_evidence(root, seen.frame, seen.bbox, frame_max_side=self._evidence_max_side) if first else None
        if first and evidence is None:
            metrics.EVIDENCE_SKIPPED.inc()
        try:
            with self._db.get_db_conn() as conn:
                created = store.record_recognition(conn, self._runner_id, self.spec.session_id,
                                                   student_id=student_id, name=seen.name, camera_id=camera_id,
                                                   similarity=similarity, track_similarity=seen.track_similarity,
                                                   evidence=evidence)
        except (store.LeaseLost, ServiceUnavailable, psycopg2.Error) as exc:
            with self._lock:  # not recorded: the next sighting tries again
                if first:
                    self.spec.seen.pop(student_id, None)
                else:
                    self.spec.seen[student_id] = best
            if evidence:
                remove_files(root, [evidence[1:]])
            if isinstance(exc, store.LeaseLost):
                self.lease_lost()
            raise
        if evidence and not created:
            remove_files(root, [evidence[1:]])
        if created:
            metrics.SESSION_RECOGNITIONS.inc()
            log.info("slot %s: %s recognised on camera %s (%.3f, track %.3f)", self.spec.slot_id,
                     log_ref(student_id), camera_id, similarity, seen.track_similarity)

    def review(self, camera_id: int, *, fingerprint: str, embedding, weight: float, reason: str,
               candidates: list[dict], view) -> None:
        """File an unnamed track for review (merged into the item of the same person when there is one)."""
        root = self._evidence_dir
        evidence = save_evidence(root, view.frame, view.bbox, frame_max_side=self._evidence_max_side)
        try:
            with self._db.get_db_conn() as conn:
                item_id, merged = review_store.add_unnamed(
                    conn, self._runner_id, self.spec.session_id, camera_id=camera_id, fingerprint=fingerprint,
                    embedding=embedding, weight=weight, reason=reason, candidates=candidates, evidence=evidence)
        except Exception as exc:  # not filed: its evidence files go too
            if evidence:
                remove_files(root, [evidence[1:]])
            if isinstance(exc, store.LeaseLost):
                self.lease_lost()
            raise
        if merged and evidence:
            remove_files(root, [evidence[1:]])
        metrics.REVIEW_ITEMS.labels("merged" if merged else "new").inc()
        log.info("slot %s: unnamed face on camera %s %s review item %s (%s)", self.spec.slot_id, camera_id,
                 "joined" if merged else "opened", item_id, reason)

    def preview(self, camera_id: int, view) -> None:
        """Replace the camera's view for the installer (best effort: it is no attendance record)."""
        try:
            with self._db.get_db_conn() as conn:
                store.set_preview(conn, self._runner_id, self.spec.session_id, camera_id, view)
        except store.LeaseLost:
            self.lease_lost()
        except (ServiceUnavailable, psycopg2.Error) as exc:
            log.info("camera %s of slot %s: preview not written: %s", camera_id, self.spec.slot_id, exc)

    def camera_state(self, camera_id: int, status: str | None, failures: int, error: str | None,
                     event: str | None) -> None:
        """Write a camera's state now, or keep it for the next flush when the database is unavailable."""
        with self._lock:
            previous = self._pending.get(camera_id)
            if previous is not None and previous[3] and not event:
                event = previous[3]  # an unwritten camera_offline/recovered event must not be lost
            if status is None:
                status = previous[0] if previous is not None else None
            self._pending[camera_id] = (status, failures, error, event)
        self.flush_cameras()

    def flush_cameras(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            for camera_id, (status, failures, error, event) in list(pending.items()):
                with self._db.get_db_conn() as conn:
                    store.set_camera_status(conn, self._runner_id, self.spec.session_id, camera_id,
                                            status, failures=failures, error=error, event=event)
                del pending[camera_id]
        except store.LeaseLost:
            self.lease_lost()
        except (ServiceUnavailable, psycopg2.Error) as exc:
            log.warning("camera state of slot %s not written yet: %s", self.spec.slot_id, exc)
            with self._lock:
                for camera_id, item in pending.items():
                    self._pending.setdefault(camera_id, item)

    def fail_if_all_offline(self, grace_s: float) -> None:
        """End the session as failed when every camera has been offline for `grace_s` (none came back)."""
        try:
            with self._db.get_db_conn() as conn:
                failed = store.fail_if_all_offline(conn, self._runner_id, self.spec.session_id, grace_s)
        except store.LeaseLost:
            self.lease_lost()
            return
        if failed:
            log.warning("session of slot %s failed: every camera offline for %.0f s", self.spec.slot_id, grace_s)
            self.stopped.set()

    def add_counts(self, counts: dict[int, tuple[int, int, int, int, int]],
                   rates: dict[int, tuple[float | None, float | None, float | None, bool]] | None = None) -> None:
        """Add (frames, detector runs, faces detected, faces embedded, tile runs) per camera to the counters,
        and write each camera's (asked, delivered) frames per second once the delivered rate is measured, with
        how its stream is decoded (keyframe interval, keyframes only)."""
        counts = {cid: c for cid, c in counts.items() if any(c)}
        rates = {cid: r for cid, r in (rates or {}).items() if r[1] is not None}
        if not counts and not rates:
            return
        try:
            with self._db.get_db_conn() as conn:
                store.add_camera_stats(conn, self._runner_id, self.spec.session_id, counts, rates)
        except store.LeaseLost:
            self.lease_lost()
