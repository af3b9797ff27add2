"""The driver's memory of jobs, optionally on disk, so a job id means the same after a restart.

The one record that matters is ``sending``: it is written (and flushed to disk) *before* a
job's bytes leave, with the printer's label count at that moment. An agent killed while a
label was on the wire comes back, finds ``sending``, and asks the printer whether its count
moved instead of printing the label again.

The file is JSON lines, one state change per line, last line per job wins; a torn last line
(power cut mid-write) is skipped. It is rewritten with only the newest records when it
grows past a bound, so a printer that ran for years does not need a large file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, get_args

__all__ = ["JobJournal", "JobRecord", "JobState"]

log = logging.getLogger("device_drivers.printer")

JobState = Literal["sending", "printed", "delivered", "not_printed", "in_doubt"]

_KEEP = 2000
"""Jobs remembered; far more than a station retries, few enough to load in a blink."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    state: JobState
    quantity: int = 1
    counter_before: int | None = None
    attempts: int = 0
    detail: str | None = None

    def moved_to(self, state: JobState, detail: str | None = None) -> JobRecord:
        return replace(self, state=state, detail=detail)


class JobJournal:
    """Job records by id, newest last; written through to ``path`` when one is given."""

    def __init__(self, path: Path | None = None, *, keep: int = _KEEP) -> None:
        self.path = path
        self.keep = keep
        self._lock = threading.Lock()
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._lines = 0
        if path is not None:
            self._load(path)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._records.get(job_id)

    def record(self, record: JobRecord) -> None:
        """Remember ``record``; on disk it is durable when this returns."""
        with self._lock:
            self._records.pop(record.job_id, None)
            self._records[record.job_id] = record
            while len(self._records) > self.keep:
                self._records.popitem(last=False)
            if self.path is None:
                return
            if self._lines >= 2 * self.keep:
                self._rewrite(self.path)
                return
            line = json.dumps(asdict(record), separators=(",", ":")) + "\n"
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._lines += 1

    def _load(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                self._lines += 1
                try:
                    raw = json.loads(line)
                    record = JobRecord(**raw)
                    if record.state not in get_args(JobState):
                        raise ValueError(f"unknown state {record.state!r}")
                except (ValueError, TypeError) as exc:
                    log.warning("print journal %s line %d skipped: %s", path, number, exc)
                    continue
                self._records.pop(record.job_id, None)
                self._records[record.job_id] = record
        while len(self._records) > self.keep:
            self._records.popitem(last=False)

    def _rewrite(self, path: Path) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for record in self._records.values():
                handle.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._lines = len(self._records)
