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


class JsonFormatter(logging.Formatter):
    """Render a record and whatever was passed in ``extra=`` as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
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
