"""A session running in this process: its recorder and one CameraWorker per camera, wired together."""

from __future__ import annotations

import threading
import time

from recognition_service.recognition.detection import DetectionSettings
from recognition_service.recognition.engine import detection_for
from recognition_service.sessions import store
from recognition_service.sessions.camera_worker import CameraJob, CameraWorker, short_changed
from recognition_service.sessions.recorder import SessionRecorder


def camera_detection(settings, stored: dict | None) -> DetectionSettings:
    """A camera's detection settings: what the session asked for it, the service's defaults for the rest."""
    stored = stored or {}
    roi = stored.get("roi")
    return detection_for(settings, stored.get("mode"),
                         min_face_px=stored.get("min_face_px", settings.CAMERA_MIN_FACE_PX),
                         roi=tuple((float(x), float(y)) for x, y in roi) if roi else None)


class SessionRun:
    """Built by the supervisor from a claimed session and the collaborators its cameras need."""

    def __init__(self, spec: store.SessionSpec, *, engine, db, runner_id: str, settings, scheduler,
                 shadow=None):
        self.spec = spec
        self.stopped = threading.Event()
        self.recorder = SessionRecorder(db=db, runner_id=runner_id, spec=spec, evidence_dir=settings.evidence_dir,
                                        evidence_max_side=settings.EVIDENCE_FRAME_MAX_SIDE, stopped=self.stopped)
        self.cameras = {
            cid: CameraWorker(CameraJob(spec.slot_id, cid, url, spec.frame_interval_ms / 1000, spec.threshold,
                                        spec.roster, cid in spec.offline_cameras,
                                        camera_detection(settings, spec.detection.get(cid))),
                              engine=engine, recorder=self.recorder, settings=settings, stopped=self.stopped,
                              scheduler=scheduler, shadow=shadow)
            for cid, url in spec.cameras.items()}

    @property
    def session_id(self) -> int:
        return self.spec.session_id

    def start(self) -> None:
        for camera in self.cameras.values():
            camera.start()

    def stop(self) -> None:
        self.stopped.set()

    def lost(self) -> None:
        """The lease is gone (stopped, failed or taken over): stop recording here."""
        self.recorder.lease_lost()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for camera in self.cameras.values():
            camera.join(max(0.0, end - time.monotonic()))

    def flush(self, offline_grace_s: float) -> None:
        """Write camera states kept while the database was down and the frame counters; fail the session
        when every camera has been offline for the grace."""
        self.recorder.flush_cameras()
        if all(cam.offline for cam in self.cameras.values()):
            self.recorder.fail_if_all_offline(offline_grace_s)
            if self.stopped.is_set():
                return
        self.recorder.add_counts({cid: cam.take_counts() for cid, cam in self.cameras.items()},
                                 {cid: cam.rates() for cid, cam in self.cameras.items()})

    def short_changed(self) -> int:
        """Cameras of this session processing fewer frames per second than asked (a worker over capacity)."""
        return sum(short_changed(cam.fps_asked, cam.rate.rate()) for cam in self.cameras.values()
                   if not cam.offline)
