"""The PostgreSQL seam: a per-process ThreadedConnectionPool behind `get_db_conn()`."""

from __future__ import annotations

import logging
import os
import select
import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from recognition_service.errors import DatabaseBusy, DatabaseUnavailable

log = logging.getLogger(__name__)

APPLICATION_NAME = "recognition-service"
_BROKEN = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Database:
    """A bounded connection pool, created lazily in the process that uses it (never across a fork)."""

    def __init__(self, dsn: str, *, minconn: int = 1, maxconn: int = 8, timeout_s: float = 5.0,
                 connect_timeout_s: int = 5, statement_timeout_ms: int = 30_000, on_wait=None, on_use=None):
        self.dsn = dsn
        self.minconn, self.maxconn, self.timeout_s = minconn, maxconn, timeout_s
        self._connect_kwargs = dict(
            connect_timeout=connect_timeout_s, application_name=APPLICATION_NAME,
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
            options=f"-c statement_timeout={statement_timeout_ms}",
        )
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        # ThreadedConnectionPool raises at once when exhausted; the semaphore turns that into a bounded wait.
        self._slots = threading.BoundedSemaphore(maxconn)
        self.waits = 0
        self._in_use = 0
        self._count_lock = threading.Lock()
        self._on_wait = on_wait or (lambda: None)
        self._on_use = on_use or (lambda n: None)

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        if self._pool is not None and self._pid == os.getpid():
            return self._pool
        with self._lock:
            if self._pid not in (None, os.getpid()):
                raise RuntimeError("database pool was created before a fork; create it in each worker")
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self.minconn, self.maxconn, self.dsn, **self._connect_kwargs)
                except psycopg2.Error as exc:
                    raise DatabaseUnavailable(f"cannot connect to the database: {_first_line(exc)}") from exc
                self._pid = os.getpid()
            return self._pool

    def open(self) -> None:
        """Create the pool now (for example in a Gunicorn worker after fork)."""
        self._get_pool()

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.closeall()
            self._pool, self._pid = None, None

    @contextmanager
    def get_db_conn(self) -> Iterator[psycopg2.extensions.connection]:
        """Lend a connection: commit on success, roll back on error, discard it when broken."""
        if not self._slots.acquire(blocking=False):
            self.waits += 1
            self._on_wait()
            if not self._slots.acquire(timeout=self.timeout_s):
                raise DatabaseBusy(f"no database connection free within {self.timeout_s:g} s")
        self._count_use(+1)
        try:
            conn = self._checkout()
            try:
                yield conn
                conn.commit()
            except BaseException as exc:
                broken = isinstance(exc, _BROKEN) or conn.closed
                if not broken:
                    try:
                        conn.rollback()
                    except _BROKEN:
                        broken = True
                self._release(conn, broken)
                if isinstance(exc, _BROKEN):
                    raise DatabaseUnavailable(f"database error: {_first_line(exc)}") from exc
                raise
            else:
                self._release(conn, False)
        finally:
            self._count_use(-1)
            self._slots.release()

    def _count_use(self, delta: int) -> None:
        with self._count_lock:
            self._in_use += delta
            in_use = self._in_use
        self._on_use(in_use)

    def _checkout(self) -> psycopg2.extensions.connection:
        pool = self._get_pool()
        for _ in range(self.maxconn + 1):
            try:
                conn = pool.getconn()
            except psycopg2.pool.PoolError as exc:
                raise DatabaseBusy(f"database pool exhausted: {exc}") from exc
            except psycopg2.Error as exc:
                raise DatabaseUnavailable(f"cannot connect to the database: {_first_line(exc)}") from exc
            if _is_alive(conn):
                return conn
            log.info("discarding a dead pooled database connection")
            pool.putconn(conn, close=True)
        raise DatabaseUnavailable("no live database connection could be made")

    def _release(self, conn, broken: bool) -> None:
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            conn.close()
            return
        pool.putconn(conn, close=broken or bool(conn.closed))

    def ping(self) -> None:
        """Raise DatabaseUnavailable/DatabaseBusy unless a trivial query succeeds."""
        with self.get_db_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def stats(self) -> dict:
        pool = self._pool
        in_use = len(pool._used) if pool is not None else 0  # noqa: SLF001 - psycopg2 exposes no accessor
        idle = len(pool._pool) if pool is not None else 0  # noqa: SLF001
        return {"in_use": in_use, "idle": idle, "max": self.maxconn, "waits": self.waits}


def _is_alive(conn) -> bool:
    """True unless the connection is closed or the server already sent something (a termination or EOF)."""
    if conn.closed:
        return False
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return False
    # An idle connection has nothing to read: anything there means the backend went away.
    return not readable


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__

