"""A per-request time budget (REQUEST_TIMEOUT_S), checked between stages and while queueing for the model."""

from __future__ import annotations

import time

from recognition_service.errors import ServiceUnavailable


class RequestTimeout(ServiceUnavailable):
    code = "timeout"


class Deadline:
    """Seconds left for a request; `check` raises 503 `timeout` once they are spent."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def check(self, stage: str) -> None:
        if self.remaining() <= 0:
            raise RequestTimeout(f"the request ran past REQUEST_TIMEOUT_S={self.seconds:g} s ({stage})")

    def acquire(self, semaphore, stage: str) -> None:
        """Wait for a semaphore no longer than the time left."""
        if not semaphore.acquire(timeout=max(0.0, self.remaining())):
            raise RequestTimeout(f"the request ran past REQUEST_TIMEOUT_S={self.seconds:g} s "
                                 f"waiting for the model ({stage})")
