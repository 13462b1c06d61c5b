"""One daemon thread per background duty (callback delivery, re-embedding): the loop they share."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from recognition_service.retry import Backoff

log = logging.getLogger(__name__)


def new_runner_id() -> str:
    """How a process names itself in the leases it holds (sessions, re-embedding jobs): host, pid, a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BackgroundLoop:
    """Runs `tick()` until stopped. A tick that did work (True) is followed at once by the next; an idle one
    sleeps `poll_s` unless woken. A failing tick (the database is down) is logged when its message changes
    and retried after `backoff` (else after `poll_s`): the duty outlives any outage."""

    def __init__(self, name: str, poll_s: float, backoff: Backoff | None = None):
        self._name, self._poll_s, self._backoff = name, poll_s, backoff
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._last_error = ""

    def tick(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        self._wake.set()

    def pause(self, seconds: float) -> None:
        """Sleep within a tick, ending early when the loop is stopped."""
        self._stop.wait(seconds)

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick()
                self._failures, self._last_error = 0, ""
            except Exception as exc:  # noqa: BLE001 - logged; the next tick tries again
                self._failures += 1
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if message != self._last_error:
                    log.warning("%s: %s", self._name, message)
                self._last_error = message
                self._stop.wait(self._backoff.delay(self._failures) if self._backoff else self._poll_s)
                continue
            if not busy:
                self._wake.wait(self._poll_s)
                self._wake.clear()
