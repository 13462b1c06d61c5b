"""Runs one session's cameras in the process that holds its lease: read, detect, track, embed, match, record."""

from __future__ import annotations

import logging
import random
import threading
import time

import numpy as np
import psycopg2

from . import metrics
from . import sessions as store
from .cameras import FrameGrabber
from .egress import check_camera_url
from .errors import ServiceUnavailable
from .evidence import remove_files, save_evidence
from .pipeline import norm_crop
from .privacy import log_ref
from .students import names_for
from .thresholds import in_force
from .tracking import FaceTracker, face_signature

log = logging.getLogger(__name__)

_RAISE_EPS = 0.01  # a later sighting is written only when it beats the recorded best by this much


class CameraWorker:
    """One camera: a grabber thread (newest frame only) and a processing thread (one frame per interval)."""

    def __init__(self, handle: "SessionHandle", camera_id: int, url: str, failed: bool):
        s = handle.settings
        self.handle, self.camera_id = handle, camera_id
        self.failures = s.CAMERA_MAX_FAILURES if failed else 0
        self.dead = failed
        self.tracker = FaceTracker(s.TRACK_REEMBED_S)
        self.counts = [0, 0, 0]  # frames, faces detected, faces embedded since the last flush
        self._counts_lock = threading.Lock()
        name = f"cam-{handle.spec.slot_id}-{camera_id}"
        self.grabber = FrameGrabber(url, open_timeout_s=s.CAMERA_OPEN_TIMEOUT_S, read_timeout_s=s.CAMERA_READ_TIMEOUT_S,
                                    on_event=self._on_source_event, next_delay=self._backoff, name=name + "-read",
                                    check=lambda u: check_camera_url(u, s.CAMERA_ALLOWED_NETWORKS, s.CAMERA_FILE_ROOT))
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.grabber.start()
        self._thread.start()

    def stop(self) -> None:
        self.grabber.stop()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        self._thread.join(max(0.0, end - time.monotonic()))
        self.grabber.join(max(0.0, end - time.monotonic()))

    def take_counts(self) -> tuple[int, int, int]:
        with self._counts_lock:
            counts, self.counts = tuple(self.counts), [0, 0, 0]
        return counts

    def _backoff(self) -> float:
        s = self.handle.settings
        delay = min(s.CAMERA_RETRY_MAX_S, s.CAMERA_RETRY_BASE_S * 2 ** max(0, self.failures - 1))
        return delay * random.uniform(0.8, 1.2)

    def _on_source_event(self, kind: str, error: str | None) -> None:
        if kind == "failed":
            self.failures += 1
            metrics.CAMERA_FAILURES.inc()
            newly_dead = not self.dead and self.failures >= self.handle.settings.CAMERA_MAX_FAILURES
            if newly_dead:
                self.dead = True
                log.warning("camera %s of slot %s is dead after %d failures: %s",
                            self.camera_id, self.handle.spec.slot_id, self.failures, error)
            elif not self.dead:
                log.info("camera %s of slot %s: %s (failure %d, retrying)",
                         self.camera_id, self.handle.spec.slot_id, error, self.failures)
            self.handle.report_camera(self.camera_id, "failed" if self.dead else None, self.failures, error,
                                      "camera_failed" if newly_dead else None)
        elif kind == "frame":
            recovered = self.dead
            self.failures, self.dead = 0, False
            if recovered:
                log.info("camera %s of slot %s recovered", self.camera_id, self.handle.spec.slot_id)
            self.handle.report_camera(self.camera_id, "active", 0, None, "camera_recovered" if recovered else None)

    def _loop(self) -> None:
        interval = self.handle.spec.frame_interval_ms / 1000
        stop = self.handle.stopped
        seq, next_due = 0, 0.0
        while not stop.is_set():
            wait = next_due - time.monotonic()
            if wait > 0:
                stop.wait(wait)
                continue
            frame, seq = self.grabber.newest(seq, timeout=1.0)
            if frame is None:
                continue
            started = time.monotonic()
            next_due = started + interval
            try:
                self._process(frame, started)
            except store.LeaseLost:
                self.handle.lost()
                return
            except ServiceUnavailable as exc:
                log.warning("camera %s of slot %s paused: %s", self.camera_id, self.handle.spec.slot_id, exc.message)
                stop.wait(2.0)
            except Exception:  # noqa: BLE001 - a bad frame must not end the camera
                log.exception("camera %s of slot %s: frame failed", self.camera_id, self.handle.spec.slot_id)
                stop.wait(1.0)
            finally:
                del frame

    def _process(self, frame: np.ndarray, now: float) -> None:
        handle = self.handle
        model = handle.state.models.get()
        with handle.camera_slots:
            boxes, kps = model.detect(frame, handle.settings.DET_SIZE)
        # Aligned crops of every face (a warp each: cheap next to detection): their thumbnails tell the
        # tracker when the face in a box has changed; the ones to embed go to the recogniser.
        aligned = [norm_crop(frame, landmark=k, image_size=112) for k in kps]
        signatures = [face_signature(c) for c in aligned]
        tracks, to_embed = self.tracker.update(boxes[:, :4], now, signatures)
        with self._counts_lock:
            self.counts[0] += 1
            self.counts[1] += len(boxes)
            self.counts[2] += len(to_embed)
        metrics.CAMERA_FRAMES.inc()
        metrics.CAMERA_FACES.labels("detected").inc(len(boxes))
        metrics.CAMERA_FACES.labels("embedded").inc(len(to_embed))
        if not to_embed:
            return
        crops = [aligned[i] for i in to_embed]
        with handle.camera_slots:
            embeddings = model.embed(crops)
        del crops, aligned
        matches = handle.match(model, embeddings)
        for i, match in zip(to_embed, matches, strict=True):
            track = tracks[i]
            track.embedded_at, track.student_id, track.signature = now, match.student_id, signatures[i]
            if match.student_id:
                handle.sighting(self.camera_id, match.student_id, float(match.similarity), frame, boxes[i, :4])


class SessionHandle:
    """A running session in this process: its cameras, the students already recorded, its DB writes."""

    def __init__(self, supervisor, spec: store.SessionSpec):
        self.supervisor = supervisor
        self.state = supervisor.state
        self.settings = supervisor.settings
        self.camera_slots = supervisor.camera_slots
        self.spec = spec
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple] = {}  # camera states not yet written (database was down)
        self._last_refresh = 0.0
        self.cameras = {cid: CameraWorker(self, cid, url, cid in spec.failed_cameras)
                        for cid, url in spec.cameras.items()}

    @property
    def session_id(self) -> int:
        return self.spec.session_id

    def start(self) -> None:
        for camera in self.cameras.values():
            camera.start()

    def stop(self) -> None:
        self.stopped.set()
        for camera in self.cameras.values():
            camera.stop()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for camera in self.cameras.values():
            camera.join(max(0.0, end - time.monotonic()))

    def lost(self) -> None:
        """The lease is gone (stopped, failed or taken over): stop recording here."""
        if not self.stopped.is_set():
            log.info("session of slot %s is no longer owned here; stopping its cameras", self.spec.slot_id)
        self.stop()

    # ---- matching and recording ------------------------------------------------------------

    def match(self, model, embeddings: np.ndarray):
        gallery = self.state.gallery(model)
        now = time.monotonic()
        if now - self._last_refresh >= 1.0:  # enrolments made during the class are picked up within a second
            with self.state.db.get_db_conn() as conn:
                gallery.refresh(conn)
            self._last_refresh = now
        threshold = self.spec.threshold if self.spec.threshold is not None else in_force(self.settings, model.info)
        return gallery.match(embeddings, threshold=threshold, margin=self.settings.MATCH_MARGIN,
                             roster=self.spec.roster)

    def sighting(self, camera_id: int, student_id: str, similarity: float, frame: np.ndarray, bbox) -> None:
        """Record the first sighting of a student (with evidence) or raise their best similarity."""
        with self._lock:
            best = self.spec.seen.get(student_id)
            if best is not None and similarity <= best + _RAISE_EPS:
                return
            self.spec.seen[student_id] = similarity if best is None else max(best, similarity)
        first = best is None
        root = self.settings.evidence_dir
        evidence = (save_evidence(root, frame, bbox, frame_max_side=self.settings.EVIDENCE_FRAME_MAX_SIDE)
                    if first else None)
        if first and evidence is None:
            metrics.EVIDENCE_SKIPPED.inc()
        try:
            with self.state.db.get_db_conn() as conn:
                name = names_for(conn, {student_id}).get(student_id, student_id)
                created = store.record_recognition(conn, self.supervisor.runner_id, self.session_id,
                                                   student_id=student_id, name=name, camera_id=camera_id,
                                                   similarity=similarity, evidence=evidence)
        except (store.LeaseLost, ServiceUnavailable, psycopg2.Error):
            with self._lock:  # not recorded: the next sighting tries again
                if first:
                    self.spec.seen.pop(student_id, None)
                else:
                    self.spec.seen[student_id] = best
            if evidence:
                remove_files(root, [evidence[1:]])
            raise
        if evidence and not created:
            remove_files(root, [evidence[1:]])
        if created:
            metrics.SESSION_RECOGNITIONS.inc()
            log.info("slot %s: %s recognised on camera %s (%.3f)", self.spec.slot_id, log_ref(student_id), camera_id,
                     similarity)

    def report_camera(self, camera_id: int, status: str | None, failures: int, error: str | None,
                      event: str | None) -> None:
        """Write a camera's state now, or keep it for the next flush when the database is unavailable."""
        with self._lock:
            previous = self._pending.get(camera_id)
            if previous is not None and previous[3] and not event:
                event = previous[3]  # an unwritten camera_failed/recovered event must not be lost
            if status is None:
                status = previous[0] if previous is not None else None
            self._pending[camera_id] = (status, failures, error, event)
        self.flush_cameras()

    def flush_cameras(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            for camera_id, (status, failures, error, event) in list(pending.items()):
                with self.state.db.get_db_conn() as conn:
                    ended = store.set_camera_status(conn, self.supervisor.runner_id, self.session_id, camera_id,
                                                    status, failures=failures, error=error, event=event)
                del pending[camera_id]
                if ended == "failed":
                    log.warning("session of slot %s failed: all cameras failed", self.spec.slot_id)
                    self.stop()
                    return
        except store.LeaseLost:
            self.lost()
        except (ServiceUnavailable, psycopg2.Error) as exc:
            log.warning("camera state of slot %s not written yet: %s", self.spec.slot_id, exc)
            with self._lock:
                for camera_id, item in pending.items():
                    self._pending.setdefault(camera_id, item)

    def flush_counts(self, conn) -> None:
        counts = {cid: cam.take_counts() for cid, cam in self.cameras.items()}
        counts = {cid: c for cid, c in counts.items() if any(c)}
        if counts:
            store.add_camera_stats(conn, self.supervisor.runner_id, self.session_id, counts)
