"""How a refusal quotes what it refused: a short excerpt that any encoder can write.

A 422 names the value it refused, which helps the person reading an edge's log, but the
value is the attacker's or the faulty device's: it may be ten megabytes, nested a
thousand deep, or hold a lone surrogate (``"\\ud800"`` is valid JSON, and Python keeps it
in a ``str``) that no UTF-8 encoder can write, so the answer explaining the refusal
failed with a 500. Every part of a refusal that can carry input (the value itself, the
message, the location, which names a refused key) goes through :func:`quote` before it
is answered or logged: at most :data:`MAX_EXCERPT` characters of any text, a few levels
and entries of any structure, and every character that is not plain printable text
spelled as an escape. What is quoted is for a person to recognise; it is never parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

MAX_EXCERPT = 100
"""Characters of one refused text that are quoted back; the rest is counted, not shown."""

MAX_ENTRIES = 10
"""Entries of a refused list or object that are quoted back."""

MAX_DEPTH = 3
"""Levels of a refused structure that are quoted back; deeper ones become ``"..."``."""

SENSITIVE_NAMES = frozenset({"secret", "password", "token", "access_token", "authorization"})
"""Fields whose value is never quoted, whatever it holds: a would-be secret refused for a
stray character is still most of a secret, and a 422's body reaches the caller's log (the
edge logs an answer's text). A new credential field is covered by its name, or added here."""

REDACTED = "[redacted]"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
"""Characters quoted as escapes: control characters (C0, DEL, C1), the two Unicode line
separators, and surrogates, which cannot be encoded alone."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """``text`` cut to ``limit`` characters, unsafe ones escaped, and its length said if cut.

    Always valid UTF-8 and one line, so it can go into JSON, a log line or a terminal.
    """
    shown = _UNSAFE.sub(_escape, text[:limit])
    if len(text) > limit:
        shown += f"... ({len(text)} characters in all)"
    return shown


def sensitive(name: object) -> bool:
    """Whether a field of this name holds a credential (see :data:`SENSITIVE_NAMES`)."""
    return isinstance(name, str) and name.lower() in SENSITIVE_NAMES


def quote(value: Any, *, limit: int = MAX_EXCERPT, _depth: int = 0) -> Any:
    """A JSON-ready, bounded, encodable stand-in for a refused value.

    Strings are excerpted; numbers stay numbers unless they are too long to be worth
    showing (a 10,000-digit integer) or JSON cannot carry them (``NaN``); exact decimals
    are their string; lists and objects keep a few entries, a few levels deep; anything
    else is the excerpt of its ``str``.
    """
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if _depth >= MAX_DEPTH:
            return "..."
        return _quote_structure(value, limit, _depth + 1)
    return _quote_scalar(value, limit)


def _quote_scalar(value: Any, limit: int) -> Any:
    if value is None or isinstance(value, bool):
        quoted: Any = value
    elif isinstance(value, bytes | bytearray):
        quoted = excerpt(bytes(value[: limit * 4]).decode("utf-8", "replace"), limit)
    elif isinstance(value, int):
        quoted = value if -(10**18) < value < 10**18 else excerpt(_int_text(value), limit)
    elif isinstance(value, float):
        quoted = value if math.isfinite(value) else str(value)
    else:  # str, Decimal (its exact spelling), anything else
        quoted = excerpt(value if isinstance(value, str) else str(value), limit)
    return quoted


def _quote_structure(value: Any, limit: int, depth: int) -> Any:
    if isinstance(value, Mapping):
        items = list(value.items())
        quoted = {
            excerpt(str(key), limit): REDACTED
            if sensitive(key)
            else quote(item, limit=limit, _depth=depth)
            for key, item in items[:MAX_ENTRIES]
        }
        if len(items) > MAX_ENTRIES:
            quoted["..."] = f"{len(items) - MAX_ENTRIES} more entries"
        return quoted
    entries = list(value)
    shown: list[Any] = [quote(item, limit=limit, _depth=depth) for item in entries[:MAX_ENTRIES]]
    if len(entries) > MAX_ENTRIES:
        shown.append(f"... {len(entries) - MAX_ENTRIES} more entries")
    return shown


def _int_text(value: int) -> str:
    """The integer's digits, or its size when Python refuses to spell it out (over 4300
    digits by default): the answer must not fail on the number it refuses."""
    try:
        return str(value)
    except ValueError:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
