"""One camera of a running session: where a camera frame goes.

grabber (newest frame only) -> face_finder (native-resolution detection, re-run only in the regions whose
picture changed; nothing changed: the frame is skipped) -> align each face -> tracker (which faces need an
embedding) -> engine embeds those in one batch -> track_decision (name tracks from their accumulated
embeddings) -> recorder.sighting. During a model change, a sample of embedded frames also goes to the
shadow model (model_change/shadow.py), matched frame by frame.

The worker is given everything it uses (the engine, the recorder, a clock, its settings, the stop event,
the model scheduler, the shadow comparer); it holds no reference to the session or the supervisor above it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from recognition_service import metrics
from recognition_service.errors import ServiceUnavailable
from recognition_service.model_change.shadow import Sample
from recognition_service.recognition.engine import align
from recognition_service.retry import Backoff
from recognition_service.security.egress import check_camera_url
from recognition_service.sessions import store
from recognition_service.sessions.cameras import FrameGrabber
from recognition_service.recognition.detection import DetectionSettings
from recognition_service.sessions.face_finder import FaceFinder
from recognition_service.sessions.motion import RegionGate
from recognition_service.sessions.preview import render as render_preview
from recognition_service.sessions.track_decision import decide, face_weight, observe
from recognition_service.sessions.tracking import FaceTracker, face_signature

log = logging.getLogger(__name__)

# An unnamed track is worth a review when its faces weigh at least this (track_decision.face_weight: detection
# score x size up to 112 px): one clear face is enough, a small or doubtful one must be seen a few times.
REVIEW_MIN_WEIGHT = 0.5
# A face still unnamed after this long is filed for review while it is there (so a reviewer sees it during
# the class), not only when it leaves; the store merges every filing of one person into one item.
REVIEW_AFTER_S = 10.0
# The review band: an unnamed face whose closest student is within this of the threshold is a `near_miss`
# (most likely that student, on a poor enrolment photo or a bad angle), the rest `below_threshold`.
REVIEW_BAND = 0.1
# A camera is behind when its frames come more than twice the asked interval plus this apart.
BEHIND_SLACK_S = 0.5
# A camera delivering under this share of the frames per second it was asked for is short-changed.
SHORT_CHANGED = 0.8
# Whether a camera is behind is judged over this many seconds (the reported rate uses CAMERA_RATE_WINDOW_S:
# a new camera must not do a slow camera's optional work for a whole window before it is judged).
BEHIND_WINDOW_S = 5.0


class RateMeter:
    """Frames processed per second over the last `window` seconds (None until a whole window has passed)."""

    def __init__(self, window: float, clock):
        self.window, self.clock = window, clock
        self._times: deque[float] = deque()
        self._started: float | None = None

    def tick(self) -> None:
        now = self.clock()
        if self._started is None:
            self._started = now
        self._times.append(now)

    def rate(self) -> float | None:
        now = self.clock()
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if self._started is None or now - self._started < self.window:
            return None
        return len(self._times) / self.window


def short_changed(asked: float | None, delivered: float | None) -> bool:
    """Asked for `asked` frames/s (None: as fast as possible), processed `delivered`: too few?"""
    return asked is not None and delivered is not None and delivered < SHORT_CHANGED * asked


@dataclass(frozen=True)
class CameraJob:
    """What one camera of a session is asked to do."""

    slot_id: int
    camera_id: int
    url: str
    frame_interval_s: float
    threshold: float | None         # None: the model's threshold in force
    roster: list[str] | None        # None: every enrolled student
    offline: bool = False           # it was already offline when the session was claimed
    detection: DetectionSettings = DetectionSettings()  # where it looks for faces (mode, ROI, minimum size)


class CameraWorker:
    """A grabber thread (newest frame only) and a processing thread (one frame per interval)."""

    def __init__(self, job: CameraJob, *, engine, recorder, settings, stopped: threading.Event,
                 scheduler, clock=time.monotonic, shadow=None):
        self.job, self.engine, self.recorder, self.settings = job, engine, recorder, settings
        self.shadow = shadow  # a ShadowComparer during a model change, else None
        self.stopped, self.scheduler, self.clock = stopped, scheduler, clock
        self.failures = settings.CAMERA_MAX_FAILURES if job.offline else 0
        self.offline = job.offline  # CAMERA_MAX_FAILURES failed opens or reads in a row; still retried
        self.backoff = Backoff(settings.CAMERA_RETRY_BASE_S, settings.CAMERA_RETRY_MAX_S)
        self.tracker = FaceTracker(settings.TRACK_REEMBED_S)
        self.finder = FaceFinder(job.detection, RegionGate(settings.MOTION_THRESHOLD, settings.MOTION_MAX_SKIP_S))
        self._preview_due = float("-inf")
        self._last_frame_at: float | None = None
        self.rate = RateMeter(settings.CAMERA_RATE_WINDOW_S, clock)
        self.recent = RateMeter(BEHIND_WINDOW_S, clock)
        # frames, frames the detector ran on, faces detected, faces embedded, native tile runs, since the last take
        self.counts = [0, 0, 0, 0, 0]
        self._counts_lock = threading.Lock()
        name = f"cam-{job.slot_id}-{job.camera_id}"
        s = settings
        self.grabber = FrameGrabber(job.url, open_timeout_s=s.CAMERA_OPEN_TIMEOUT_S,
                                    read_timeout_s=s.CAMERA_READ_TIMEOUT_S, on_event=self._on_source_event,
                                    next_delay=self._backoff, name=name + "-read", every_s=job.frame_interval_s,
                                    site_options=s.CAMERA_FFMPEG_OPTIONS,
                                    check=lambda u: check_camera_url(u, s.CAMERA_ALLOWED_NETWORKS, s.CAMERA_FILE_ROOT))
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.grabber.start()
        self._thread.start()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        self._thread.join(max(0.0, end - time.monotonic()))
        self.grabber.stop()
        self.grabber.join(max(0.0, end - time.monotonic()))

    @property
    def fps_asked(self) -> float | None:
        """The frames per second this camera should process: one per frame_interval_ms, but never more than
        its stream sends (a 10 frames/s camera asked for 20 is not short-changed by the worker)."""
        if self.job.frame_interval_s <= 0:
            return None
        asked = 1.0 / self.job.frame_interval_s
        return min(asked, self.grabber.source_fps) if self.grabber.source_fps else asked

    def rates(self) -> tuple[float | None, float | None, float | None, bool]:
        """(asked, delivered) frames per second, and how the stream is decoded (keyframe interval, keyframes only)."""
        grabber = self.grabber
        return self.fps_asked, self.rate.rate(), grabber.keyframe_interval_s, grabber.keyframes_only

    def take_counts(self) -> tuple[int, int, int, int, int]:
        with self._counts_lock:
            counts, self.counts = tuple(self.counts), [0, 0, 0, 0, 0]
        return counts

    def _turn(self):
        return self.scheduler.turn(self)

    def _backoff(self) -> float:
        return self.backoff.delay(self.failures)

    def _on_source_event(self, kind: str, error: str | None) -> None:
        job = self.job
        if kind == "failed":
            self.failures += 1
            metrics.CAMERA_FAILURES.inc()
            newly_offline = not self.offline and self.failures >= self.settings.CAMERA_MAX_FAILURES
            if newly_offline:
                self.offline = True
                log.warning("camera %s of slot %s is offline after %d failures (still retried): %s",
                            job.camera_id, job.slot_id, self.failures, error)
            elif not self.offline:
                log.info("camera %s of slot %s: %s (failure %d, retrying)", job.camera_id, job.slot_id, error,
                         self.failures)
            self.recorder.camera_state(job.camera_id, "offline" if self.offline else None, self.failures, error,
                                       "camera_offline" if newly_offline else None)
        elif kind == "frame":
            recovered = self.offline
            self.failures, self.offline = 0, False
            if recovered:
                log.info("camera %s of slot %s recovered", job.camera_id, job.slot_id)
            self.recorder.camera_state(job.camera_id, "active", 0, None, "camera_recovered" if recovered else None)

    def _loop(self) -> None:
        stop, job = self.stopped, self.job
        seq, next_due = 0, 0.0
        try:
            while not stop.is_set():
                wait = next_due - time.monotonic()
                if wait > 0:
                    stop.wait(wait)
                    continue
                asked = time.monotonic()
                frame, seq = self.grabber.newest(seq, timeout=1.0)
                if frame is None:
                    continue
                # the next frame is due an interval after this one was asked for, not after it arrived (the
                # grabber converts the next frame it reads once asked: up to one frame period later)
                next_due = asked + job.frame_interval_s
                try:
                    self.process(frame)
                except store.LeaseLost:
                    return  # the recorder has set `stopped`
                except ServiceUnavailable as exc:
                    log.warning("camera %s of slot %s paused: %s", job.camera_id, job.slot_id, exc.message)
                    stop.wait(2.0)
                except Exception:  # noqa: BLE001 - a bad frame must not end the camera
                    log.exception("camera %s of slot %s: frame failed", job.camera_id, job.slot_id)
                    stop.wait(1.0)
                finally:
                    self.scheduler.frame_done(self)  # processed or given up: the next turn is for a new frame
                    del frame
        finally:
            self.grabber.stop()
            self._file_remaining()
            self.scheduler.forget(self)

    def process(self, frame: np.ndarray) -> None:
        """One frame: find faces (where the picture changed), track, embed what needs it, decide, record."""
        now = self.clock()
        # Behind: frames come much further apart than asked (the worker is over capacity). Optional work
        # (the re-embed timer; unnamed faces past SETTLE_AFTER_BEHIND embeddings) is then skipped, so a slow
        # camera does not grow slower still; detection stays bounded by the region gate (a still picture's
        # refresh comes every MOTION_MAX_SKIP_S and at most once in 3 frames).
        # Measured both ways: this frame came late, or over the last window fewer frames came than asked (a
        # frame that happens to come on time must not set off every postponed re-embedding at once).
        behind = ((self._last_frame_at is not None
                   and now - self._last_frame_at > 2 * self.job.frame_interval_s + BEHIND_SLACK_S)
                  or short_changed(self.fps_asked, self.recent.rate()))
        self._last_frame_at = now
        self.rate.tick()
        self.recent.tick()
        model = self.engine.model()
        found = self.finder.find(model, frame, now, self._turn)
        self._count(frames=1, runs=int(found is not None), tiles=found.tiles_run if found else 0)
        metrics.CAMERA_FRAMES.inc()
        if found is None:
            metrics.CAMERA_DETECTIONS_SKIPPED.inc()
            return
        boxes, kps = found.boxes, found.kps
        if now >= self._preview_due:  # the installer's view of this camera: the frame and what was found
            self._preview_due = now + self.settings.CAMERA_PREVIEW_S
            self.recorder.preview(self.job.camera_id, render_preview(frame, boxes, roi=self.job.detection.roi,
                                                                      small_px=self.settings.SMALL_FACE_PX))
        # Aligned crops of every face (a warp each: cheap next to detection): their thumbnails tell the
        # tracker when the face in a box has changed; the ones to embed go to the recogniser.
        aligned = align(frame, kps)
        signatures = [face_signature(c) for c in aligned]
        tracks, to_embed = self.tracker.update(boxes[:, :4], now, signatures, refresh=not behind)
        overdue = [t for t in tracks if now - t.born >= REVIEW_AFTER_S]  # _file_unnamed keeps the unnamed
        self._file_unnamed(model, self.tracker.take_ended(), ended=True)
        self._file_unnamed(model, overdue, ended=False)
        self._count(detected=len(boxes), embedded=len(to_embed))
        metrics.CAMERA_FACES.labels("detected").inc(len(boxes))
        metrics.CAMERA_FACES.labels("embedded").inc(len(to_embed))
        if not to_embed:
            return
        crops = [aligned[i] for i in to_embed]
        with self._turn():
            embeddings = model.embed(crops)
        if self.shadow is not None and self.shadow.wants_sample():
            self._offer_to_shadow(model, crops, embeddings)
        del aligned, crops
        embedded = [tracks[i] for i in to_embed]
        views = [observe(tracks[i], emb, face_weight(boxes[i, 4], boxes[i]), frame=frame, bbox=boxes[i, :4],
                         now=now, signature=signatures[i])
                 for i, emb in zip(to_embed, embeddings, strict=True)]
        job = self.job
        sightings = decide(
            embedded, views,
            identify=lambda vectors: self.engine.identify(model, vectors, threshold=job.threshold,
                                                          roster=job.roster, max_age_s=1.0),
            similarity_to=lambda vectors, sid: self.engine.similarity_to(model, vectors, sid),
            small_px=self.settings.SMALL_FACE_PX, small_min_views=self.settings.SMALL_FACE_MIN_VIEWS)
        for seen in sightings:
            self.recorder.sighting(job.camera_id, seen)

    def _offer_to_shadow(self, model, crops, embeddings) -> None:
        """The shadow model judges these faces one frame at a time, so the model in use is asked the same way
        here (not through its tracks): the agreement compares the two models, nothing else."""
        job = self.job
        single = self.engine.identify(model, embeddings, threshold=job.threshold, roster=job.roster, max_age_s=1.0)
        self.shadow.offer(Sample(model.info.fingerprint, crops, [w.student_id for w in single], job.roster))

    def _file_unnamed(self, model, tracks, *, ended: bool) -> None:
        """Unnamed tracks that `ended` (or are still there after REVIEW_AFTER_S) become review items, one per
        person (the store groups them)."""
        job = self.job
        for track in tracks:
            if track.student_id is not None or track.filed or track.weight < REVIEW_MIN_WEIGHT or not track.views:
                continue
            track.filed = True
            vector = track.aggregate()
            who = self.engine.identify(model, vector[None], threshold=job.threshold, roster=job.roster,
                                       max_age_s=1.0)[0]
            if who.student_id is not None and not ended:
                track.filed = False  # still there: its next sighting names it (an enrolment during the class,
                continue             # a small face with enough views at last), or it is filed when it ends
            candidates = self.engine.candidates(model, vector, roster=job.roster)
            # A track that ended matching a student but never named: a small face seen fewer times than
            # SMALL_FACE_MIN_VIEWS (a door passed in a second), or an enrolment made after it was last
            # embedded. No later sighting will record it: a person decides, with that student on top.
            reason = "near_miss" if who.student_id is not None else who.reason or "below_threshold"
            if (reason == "below_threshold" and candidates
                    and candidates[0]["similarity"] >= self.engine.threshold(model, job.threshold) - REVIEW_BAND):
                reason = "near_miss"
            if job.roster is not None and who.student_id is None:
                # An enrolled student the roster does not list (a visitor from another class, a roster the
                # backend got wrong): not a stranger. A person says whether they count; they come first.
                anyone = self.engine.identify(model, vector[None], threshold=job.threshold, max_age_s=1.0)[0]
                if anyone.student_id is not None and anyone.student_id not in job.roster:
                    reason = "not_on_roster"
                    candidates = [{"student_id": anyone.student_id, "similarity": float(anyone.similarity)},
                                  *candidates[:2]]
            self.recorder.review(job.camera_id, fingerprint=model.info.fingerprint, embedding=vector,
                                 weight=track.weight, reason=reason, candidates=candidates, view=track.views[0])

    def _file_remaining(self) -> None:
        """The camera stops: its unnamed tracks end now (best effort: the database may be gone)."""
        try:
            self._file_unnamed(self.engine.model(), self.tracker.tracks + self.tracker.take_ended(), ended=True)
        except Exception as exc:  # noqa: BLE001 - stopping; a review item is not an acknowledged event
            log.info("camera %s of slot %s: unnamed tracks not filed at stop: %s", self.job.camera_id,
                     self.job.slot_id, exc)

    def _count(self, frames: int = 0, runs: int = 0, detected: int = 0, embedded: int = 0, tiles: int = 0) -> None:
        with self._counts_lock:
            for i, n in enumerate((frames, runs, detected, embedded, tiles)):
                self.counts[i] += n
