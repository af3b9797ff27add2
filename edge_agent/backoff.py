"""Retry pacing shared by the sync jobs: exponential backoff with full jitter.

Full jitter (a uniform draw up to the exponential ceiling) keeps a chain's hundred sites
from retrying in step after headquarters comes back.
"""

from __future__ import annotations

import random
import time


class Backoff:
    """Tracks consecutive failures of one job and when it may try again."""

    def __init__(self, *, base_s: float = 0.5, max_s: float = 60.0) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.failures = 0
        self._next_attempt_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._next_attempt_at

    def failed(self) -> float:
        """Count a failure; returns the delay chosen before the next attempt."""
        self.failures += 1
        ceiling = min(self.max_s, self.base_s * 2 ** min(self.failures, 16))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
        self._next_attempt_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next_attempt_at = 0.0
