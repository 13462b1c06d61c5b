"""The shadow model's side of a model change: a sample of recognitions matched again with the next model.

/recognize (a sampled request) and camera workers (a sampled batch of embedded faces) offer the aligned
crops and who the model in use named in them, face by face; a background thread
embeds them with the shadow model, matches them against the shadow model's gallery (its own threshold,
the same margin and roster) and adds the outcome to the totals in PostgreSQL, which every process and
/health share. The request never waits for the shadow: a full queue drops the sample (counted).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from dataclasses import dataclass

import numpy as np

from recognition_service import metrics
from recognition_service.model_change import store

log = logging.getLogger(__name__)

_QUEUE = 32  # samples waiting; more are dropped rather than delay anything


def outcome(active: str | None, shadow: str | None) -> str:
    """How the two models' answers for one face compare (a key of store.OUTCOMES)."""
    if active == shadow:
        return "agreed"  # the same student, or both "not a known student"
    if shadow is None:
        return "only_active_named"
    if active is None:
        return "only_shadow_named"
    return "named_differently"


@dataclass(frozen=True)
class Sample:
    active_fingerprint: str
    crops: list[np.ndarray]
    named: list[str | None]  # the model in use's answer per crop
    roster: list[str] | None


class ShadowComparer:
    """Takes samples without blocking and compares them on its own thread."""

    def __init__(self, *, engine, db, sample_rate: float, rng=random.random):
        self._engine, self._db = engine, db  # engine: a RecognitionEngine of the shadow model
        self._rate, self._rng = sample_rate, rng
        self._queue: queue.Queue[Sample | None] = queue.Queue(_QUEUE)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shadow-model", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout)

    def wants_sample(self) -> bool:
        """Whether this request is one of the sample (decided before the work, to keep its crops)."""
        return self._rate > 0 and self._rng() < self._rate

    def offer(self, sample: Sample) -> None:
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            metrics.SHADOW_DROPPED.labels("queue_full").inc()

    def _run(self) -> None:
        while True:
            sample = self._queue.get()
            if sample is None:
                return
            try:
                self.compare(sample)
            except Exception as exc:  # noqa: BLE001 - a lost sample only slows the agreement figure
                log.warning("shadow comparison skipped: %s", exc)

    def compare(self, sample: Sample) -> dict[str, int]:
        """Match the sample with the shadow model and record the outcomes; returns them (none while the shadow
        model has not embedded every kept crop yet: a half-filled gallery would make the rate meaningless)."""
        model = self._engine.model()
        with self._db.get_db_conn() as conn:
            if store.has_pending(conn, model.info.fingerprint):
                metrics.SHADOW_DROPPED.labels("reembedding").inc()
                return {}
        who = self._engine.identify(model, model.embed(sample.crops), roster=sample.roster)
        counts: dict[str, int] = {}
        for active, shadow in zip(sample.named, who, strict=True):
            kind = outcome(active, shadow.student_id)
            counts[kind] = counts.get(kind, 0) + 1
            metrics.SHADOW_COMPARISONS.labels(kind).inc()
        with self._db.get_db_conn() as conn:
            store.record_comparisons(conn, sample.active_fingerprint, model.info.fingerprint, counts)
            rate = store.agreement(conn, sample.active_fingerprint, model.info.fingerprint)["rate"]
        if rate is not None:
            metrics.SHADOW_AGREEMENT.set(rate)
        return counts
