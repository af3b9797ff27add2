"""Retry pacing shared by the sync jobs: exponential backoff with full jitter.

Full jitter (a uniform draw up to the exponential ceiling) keeps a chain's hundred sites
from retrying in step after headquarters comes back.

A busy central says when to come back (``503`` or ``429`` with ``Retry-After``): the job
then waits at least that long, never less, and up to half as long again so that sites
told the same number do not all return in the same instant.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 300.0
"""The longest ``Retry-After`` honoured: a larger (or garbled) one is taken as this, so a
wrong header can delay sync by minutes, not days."""


def retry_after_s(header: str | None, *, now: datetime | None = None) -> float | None:
    """The wait an HTTP ``Retry-After`` asks for, in seconds (RFC 9110 §10.2.3: a number
    of seconds, or an HTTP date); None without a usable one."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may come naive
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


class Backoff:
    """Tracks consecutive failures of one job and when it may try again."""

    def __init__(self, *, base_s: float = 0.5, max_s: float = 60.0) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.failures = 0
        self._next_attempt_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._next_attempt_at

    def failed(self, *, at_least_s: float | None = None) -> float:
        """Count a failure; returns the delay chosen before the next attempt.

        ``at_least_s`` (central's ``Retry-After``) is a floor: the delay is never shorter,
        and is drawn up to half as long again above it.
        """
        self.failures += 1
        ceiling = min(self.max_s, self.base_s * 2 ** min(self.failures, 16))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
        if at_least_s is not None and at_least_s > 0:
            floor = min(at_least_s, MAX_RETRY_AFTER_S)
            delay = max(delay, floor * random.uniform(1.0, 1.5))  # noqa: S311
        self._next_attempt_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next_attempt_at = 0.0
