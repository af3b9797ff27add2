"""Structured logs: one JSON object per line on stderr, the same in every jxc process.

The processes of a site run unattended; a log a machine can filter (by ``event``, ``site``,
``device``) is worth more there than pretty text.

A process that holds a secret registers it with :func:`never_log`; every line is then
rendered without it, whatever put it there (a message quoting another system's answer, a
traceback). Code never puts a secret in a message on purpose: this is the net below that.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

REDACTED = "[redacted]"

_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()

_SHORTEST_SECRET = 16
"""Shorter values are not registered: replacing a common short string everywhere would
garble the log and protect nothing (a real secret is long and random)."""


def never_log(secret: str) -> None:
    """Keep ``secret`` out of every log line and every text passed through :func:`redact`."""
    global _secrets  # noqa: PLW0603 - one registry per process, read without a lock
    if len(secret) < _SHORTEST_SECRET:
        return
    as_in_json = json.dumps(secret, ensure_ascii=False)[1:-1]  # how it looks inside a line
    with _secrets_lock:
        _secrets = _secrets | {secret, as_in_json}


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


_context_providers: list[Callable[[], dict[str, Any]]] = []
_CONTEXT_ATTRIBUTE = "_jxc_context"


def add_log_context(provider: Callable[[], dict[str, Any]]) -> None:
    """Add ``provider()``'s fields to every line (a field set by ``extra=`` wins).

    Central adds the id of the request being served, so every line written while serving
    it (an ingest warning, a refused login) can be found with the request's access line
    and the edge's own line for the same push (``X-Request-ID``). The fields are read
    when the record is made, in the thread and context that logs, whatever handler
    renders it later.
    """
    if provider in _context_providers:
        return
    _context_providers.append(provider)
    if len(_context_providers) == 1:
        make_record = logging.getLogRecordFactory()

        def with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            fields: dict[str, Any] = {}
            for each in _context_providers:
                fields.update(each())
            setattr(record, _CONTEXT_ATTRIBUTE, fields)
            return record

        logging.setLogRecordFactory(with_context)


class JsonFormatter(logging.Formatter):
    """Render a record and whatever was passed in ``extra=`` as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in getattr(record, _CONTEXT_ATTRIBUTE, {}).items():
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The scheduler reports every run of every job at INFO: a line per push, ten a second.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
