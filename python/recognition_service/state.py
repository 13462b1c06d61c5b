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
        self.sessions = None  # the SessionSupervisor, once start_sessions() ran in this process
        self.callbacks = None  # the CallbackSender, idem
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
        try:
            self.models.get()
        except ServiceUnavailable as exc:
            log.warning("%s", exc.message)
        try:
            self.ensure_schema()
        except ServiceUnavailable as exc:
            log.warning("database not ready: %s", exc.message)

    def start_sessions(self) -> None:
        """Run session cameras and the callback sender in this process (server processes only, after fork)."""
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
        self.db.close()

