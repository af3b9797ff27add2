"""Every background job of the agent runs through one guard: a crash is counted and shown.

The agent's work outside the request paths (push, pull, checkpoint, the label spoolers,
the scanner loops) runs in scheduler or worker threads, where an exception nobody catches
ends up as a traceback in a log nobody reads, or ends the thread. :class:`JobHealth` runs
each of them instead: a failure is counted per job, logged as one structured line, and
raised as a status-page alert until the job runs cleanly again. Jobs still handle the
failures they expect themselves (central unreachable, a printer out of paper); this is for
the ones they do not.

Error texts are built by :func:`describe_error`, which never quotes the input of a
validation error: that input may be a secret file's content, or a whole request body.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from jxc.logs import redact

log = logging.getLogger("edge_agent.jobs")

T = TypeVar("T")

MAX_ERROR_CHARS = 300
"""How much of an exception's text the status page and the log line keep."""


def describe_error(exc: BaseException) -> str:
    """``exc`` in one line, for a log line or the status page.

    A pydantic :class:`ValidationError` is described by its locations and messages only;
    its own text quotes the input, which may be a secret or a whole request.
    """
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        text = f"{exc.error_count()} problem(s) in {exc.title}: {problems}"
    else:
        detail = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    return redact(text[:MAX_ERROR_CHARS])


@dataclass
class JobRecord:
    """How one job has fared since the agent started."""

    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_failed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_failed_at": self.last_failed_at.isoformat() if self.last_failed_at else None,
        }


class JobHealth:
    """Runs the agent's jobs and keeps their record; safe to read from any thread."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    def guard(self, name: str, job: Callable[[], object]) -> Callable[[], None]:
        """``job`` as a callable that never raises, for a scheduler to run."""

        def guarded() -> None:
            self.run(name, job, None)

        guarded.__name__ = guarded.__qualname__ = f"{name} job"  # as the scheduler names it
        return guarded

    def run(self, name: str, job: Callable[[], T], on_error: T) -> T:
        """Run ``job`` once: its result, or ``on_error`` after the failure was recorded."""
        try:
            result = job()
        except Exception as exc:
            self.failed(name, exc)
            return on_error
        self.succeeded(name)
        return result

    def succeeded(self, name: str) -> None:
        """Record a clean run of ``name`` (for a loop that catches on its own)."""
        with self._lock:
            record = self._jobs.setdefault(name, JobRecord())
            record.runs += 1
            record.consecutive_failures = 0

    def failed(self, name: str, exc: Exception) -> None:
        """Record and log a failure of ``name`` (for a loop that catches on its own)."""
        error = describe_error(exc)
        with self._lock:
            record = self._jobs.setdefault(name, JobRecord())
            record.runs += 1
            record.failures += 1
            record.consecutive_failures += 1
            record.last_error = error
            record.last_failed_at = datetime.now(UTC)
            failures, in_a_row = record.failures, record.consecutive_failures
        # The frames say where it broke; the exception's own text is left out of them and
        # given once, described, since it may quote input.
        where = "".join(traceback.format_tb(exc.__traceback__)[-5:])
        log.error(
            "job failed",
            extra={
                "event": "job_failed",
                "job": name,
                "error": error,
                "failures": failures,
                "consecutive_failures": in_a_row,
                "where": where,
            },
        )

    def last_error(self, name: str) -> str | None:
        with self._lock:
            record = self._jobs.get(name)
            return record.last_error if record else None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: record.as_dict() for name, record in sorted(self._jobs.items())}


def job_alerts(jobs: dict[str, dict[str, Any]]) -> list[str]:
    """One alert per job whose last run failed, from one :meth:`JobHealth.as_dict` snapshot
    (so the alerts and the counts on a status page agree)."""
    return [
        f"job {name} is failing: {record['consecutive_failures']} time(s) in a row, "
        f"{record['failures']} since start; last error: {record['last_error']} (see the log)"
        for name, record in jobs.items()
        if record["consecutive_failures"]
    ]
