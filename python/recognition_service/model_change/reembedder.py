"""One thread per process that gives every kept face crop an embedding of each loaded model.

The models are the one in use and, during a model change, the shadow model (SHADOW_MODEL_DIR). Per
model, one process at a time holds the job through a lease in PostgreSQL (reembedding_jobs, renewed
with every batch, as sessions are); each batch's embeddings and the lease renewal commit together, so a
process killed mid-batch leaves nothing half-done and the next owner starts from the crops still
lacking an embedding: no photo is embedded twice. Paced by REEMBED_MAX_FACES_PER_S beside live traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from recognition_service import metrics
from recognition_service.background import BackgroundLoop
from recognition_service.errors import ServiceUnavailable
from recognition_service.model_change import store
from recognition_service.recognition.images import decode_crop
from recognition_service.retry import Backoff

log = logging.getLogger(__name__)

IN_USE_EVERY_S = 60.0  # how often a process says which models it uses (purge-model trusts 10 minutes of it)


class Reembedder(BackgroundLoop):
    """Claims each loaded model's re-embedding job in turn and works through the kept crops it lacks."""

    def __init__(self, *, db, models, settings, runner_id: str, ensure_schema=lambda: None):
        super().__init__("reembedder", settings.REEMBED_POLL_S, Backoff(1.0, 60.0))
        self._db, self._models, self._settings = db, models, settings  # models: ModelProviders
        self.runner_id = runner_id
        self._ensure_schema = ensure_schema
        self._crops_checked = False
        self._said_in_use = float("-inf")
        self._host, self._pid = socket.gethostname(), os.getpid()

    def stop(self, timeout: float) -> None:
        """Stop after the batch in hand and release the jobs so another process resumes at once."""
        super().stop(timeout)
        try:
            with self._db.get_db_conn() as conn:
                store.release_jobs(conn, self.runner_id)
                store.forget_in_use(conn, self._host, self._pid)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.info("re-embedding jobs not released at stop: %s", exc)

    def _say_in_use(self, loaded: dict[str, str]) -> None:
        """Record the models this process uses (purge-model refuses them), once a minute."""
        if loaded and time.monotonic() - self._said_in_use >= IN_USE_EVERY_S:
            with self._db.get_db_conn() as conn:
                store.say_in_use(conn, self._host, self._pid, loaded)
            self._said_in_use = time.monotonic()

    def tick(self) -> bool:
        self._ensure_schema()
        if not self._crops_checked:
            self._forget_crops_unless_kept()
            self._crops_checked = True
        loaded, models = {}, []
        for setting, provider in zip(("MODEL_DIR", "SHADOW_MODEL_DIR"), self._models):  # in use, then shadow
            try:
                model = provider.get()
            except ServiceUnavailable:
                continue  # the model reports its own failure; its job waits
            loaded.setdefault(model.info.fingerprint, setting)
            models.append(model)
        self._say_in_use(loaded)
        worked = False
        for model in models:
            if self.stopping:
                break
            worked |= self.work_on(model)
        return worked

    def _forget_crops_unless_kept(self) -> None:
        if self._settings.KEEP_FACE_CROPS:
            return
        with self._db.get_db_conn() as conn:
            removed = store.delete_all_crops(conn)
        if removed:
            log.info("KEEP_FACE_CROPS is off: %d kept face crops deleted", removed)

    def work_on(self, model) -> bool:
        """Embed this model's missing crops while this process holds its job; True when it did any work."""
        s, fingerprint = self._settings, model.info.fingerprint
        with self._db.get_db_conn() as conn:
            if not store.has_pending(conn, fingerprint):
                return False
            if not store.claim_job(conn, fingerprint, model.info.name, self.runner_id, s.REEMBED_LEASE_S):
                return False  # another process is on it
        log.info("re-embedding kept face crops with %s (%s)", model.info.name, fingerprint[:12])
        size = s.REEMBED_BATCH
        if s.REEMBED_MAX_FACES_PER_S > 0:  # a paced batch must end well inside the lease it renews
            size = max(1, min(size, int(s.REEMBED_MAX_FACES_PER_S * s.REEMBED_LEASE_S / 3)))
        done, counted = 0, float("-inf")
        while not self.stopping:
            with self._db.get_db_conn() as conn:
                batch = store.pending_crops(conn, fingerprint, size)
                if not batch or time.monotonic() - counted >= 5:  # a count of every crop: not per batch
                    metrics.REEMBED_REMAINING.labels(model.info.name).set(
                        store.progress(conn, fingerprint)["remaining"] if batch else 0)
                    counted = time.monotonic()
                if not batch:
                    store.finish_job(conn, fingerprint, self.runner_id)
                    log.info("re-embedding with %s done: %d faces embedded by this process", model.info.name, done)
                    return True
            started = time.perf_counter()
            readable, crops = [], []
            for item in batch:
                try:
                    crops.append(decode_crop(item.png))
                    readable.append(item)
                except ValueError as exc:
                    log.error("kept crop of %s unreadable (%s): dropped; that photo needs enrolling again",
                              item.student_id, exc)
                    with self._db.get_db_conn() as conn:
                        store.drop_crop(conn, item.student_id, item.image_sha256)
            embeddings = model.embed(crops)
            busy = time.perf_counter() - started
            try:
                with self._db.get_db_conn() as conn:
                    added = store.store_batch(conn, fingerprint, self.runner_id, s.REEMBED_LEASE_S, readable,
                                              embeddings, busy)
            except store.JobLost:
                log.warning("re-embedding with %s taken over by another process", model.info.name)
                return True
            done += len(readable)
            metrics.REEMBEDDED.labels(model.info.name).inc(added)
            if s.REEMBED_MAX_FACES_PER_S > 0:
                self.pause(max(0.0, len(readable) / s.REEMBED_MAX_FACES_PER_S - busy))
        return True
