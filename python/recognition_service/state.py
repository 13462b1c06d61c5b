"""Per-process service state: settings, database pool, model, galleries, engine and background loops."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from recognition_service import metrics
from recognition_service.config import Settings
from recognition_service.errors import ServiceUnavailable
from recognition_service.recognition.engine import RecognitionEngine
from recognition_service.recognition.gallery import Gallery
from recognition_service.recognition.model import FaceModel, ModelProvider
from recognition_service.storage.db import Database
from recognition_service.storage.embedded_pg import start_embedded_postgres
from recognition_service.storage.migrate import apply_migrations

log = logging.getLogger(__name__)


class ServiceState:
    """Everything a worker process holds; nothing here opens a connection or a model until used."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.started_at = datetime.now(timezone.utc)
        self._started_monotonic = time.monotonic()
        dsn = settings.DATABASE_URL or start_embedded_postgres(settings.DATA_DIR)
        self.db = Database(dsn, minconn=settings.DB_POOL_MIN, maxconn=settings.DB_POOL_MAX,
                           timeout_s=settings.DB_POOL_TIMEOUT_S, connect_timeout_s=settings.DB_CONNECT_TIMEOUT_S,
                           statement_timeout_ms=settings.DB_STATEMENT_TIMEOUT_MS,
                           on_wait=metrics.POOL_WAITS.inc, on_use=metrics.POOL_IN_USE.set)
        self.models = ModelProvider(settings, on_loaded=lambda info: metrics.MODEL_LOAD_SECONDS.set(info.load_seconds))
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._galleries: dict[str, Gallery] = {}
        self._gallery_lock = threading.Lock()
        self.engine = RecognitionEngine(settings, self.models, self.gallery, self.db, self.ensure_schema)
        # During a model change, the next model with an engine of its own (its own threshold, same rules).
        self.shadow_models = self.shadow_engine = None
        if settings.SHADOW_MODEL_DIR is not None:
            self.shadow_models = ModelProvider(settings, pack=settings.shadow_path)
            own_threshold = {"RECOGNITION_THRESHOLD": settings.SHADOW_RECOGNITION_THRESHOLD}
            shadow_settings = settings.model_copy(update=own_threshold)
            self.shadow_engine = RecognitionEngine(shadow_settings, self.shadow_models, self.gallery, self.db,
                                                   self.ensure_schema)
        self.sessions = None  # the SessionSupervisor, once start_background() ran in this process
        self.callbacks = None  # the CallbackSender, idem
        self.reembedder = None  # the Reembedder, idem
        self.shadow = None  # the ShadowComparer, idem (with a shadow model)
        self.keys = None  # the API key checker (auth.init_auth)

    @property
    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self._started_monotonic, 1)

    def ensure_schema(self) -> None:
        """Apply pending migrations once per process (retried until the database answers)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self.db.get_db_conn() as conn:
                applied = apply_migrations(conn)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
            self._schema_ready = True

    def gallery(self, model: FaceModel) -> Gallery:
        """The gallery of the loaded model's fingerprint."""
        fingerprint = model.info.fingerprint
        gallery = self._galleries.get(fingerprint)
        if gallery is None:
            with self._gallery_lock:
                gallery = self._galleries.setdefault(fingerprint, Gallery(fingerprint, model.info.embedding_size))
        return gallery

    def warm_up(self) -> None:
        """Load the model and migrate the database now instead of on the first request."""
        for provider in filter(None, (self.models, self.shadow_models)):
            try:
                provider.get()
            except ServiceUnavailable as exc:
                log.warning("%s", exc.message)
        try:
            self.ensure_schema()
        except ServiceUnavailable as exc:
            log.warning("database not ready: %s", exc.message)

    def start_background(self) -> None:
        """Run session cameras, the callback sender, re-embedding and the shadow model's comparisons in this
        process (server processes only, after fork)."""
        if self.settings.SESSIONS_ENABLED and self.sessions is None:
            from recognition_service.sessions.supervisor import SessionSupervisor

            self.sessions = SessionSupervisor(self)
            self.sessions.start()
        if self.callbacks is None:
            from recognition_service.callbacks.sender import CallbackSender
            from recognition_service.callbacks.transport import HttpTransport

            s = self.settings
            transport = HttpTransport(s.CALLBACK_CONNECT_TIMEOUT_S, s.CALLBACK_READ_TIMEOUT_S)
            self.callbacks = CallbackSender(db=self.db, settings=s, post=transport.post,
                                            ensure_schema=self.ensure_schema)
            self.callbacks.start()
        if self.reembedder is None:
            from recognition_service.background import new_runner_id
            from recognition_service.model_change.reembedder import Reembedder

            self.reembedder = Reembedder(db=self.db, models=[p for p in (self.models, self.shadow_models) if p],
                                         settings=self.settings, runner_id=new_runner_id(),
                                         ensure_schema=self.ensure_schema)
            self.reembedder.start()
        if self.shadow is None and self.shadow_engine is not None:
            from recognition_service.model_change.shadow import ShadowComparer

            self.shadow = ShadowComparer(engine=self.shadow_engine, db=self.db,
                                         sample_rate=self.settings.SHADOW_SAMPLE_RATE)
            self.shadow.start()

    def wake_callbacks(self) -> None:
        """Send new events now rather than at the sender's next poll."""
        if self.callbacks is not None:
            self.callbacks.wake()

    def wake_sessions(self) -> None:
        if self.sessions is not None:
            self.sessions.wake()

    def close(self, timeout: float = 10.0) -> None:
        """Stop session cameras (releasing their leases), then close the pool."""
        if self.sessions is not None:
            self.sessions.shutdown(timeout)
        if self.callbacks is not None:
            self.callbacks.stop(min(timeout, 5.0))
        if self.shadow is not None:
            self.shadow.stop(1.0)
        if self.reembedder is not None:
            self.reembedder.stop(min(timeout, 5.0))
        self.db.close()

