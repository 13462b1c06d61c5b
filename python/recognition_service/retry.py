"""One backoff policy for everything that tries again: camera reconnects and callback deliveries."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base_s doubling per failure up to max_s, times a random factor."""

    base_s: float
    max_s: float
    jitter: tuple[float, float] = (0.8, 1.2)

    def delay(self, failures: int, rand=random.uniform) -> float:
        """Seconds to wait after `failures` failures in a row (1 = the first)."""
        return min(self.max_s, self.base_s * 2 ** max(0, failures - 1)) * rand(*self.jitter)
