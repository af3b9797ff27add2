"""Looking for a secret in logs and pages, and the secret files an operator gets wrong.

A leak rarely shows the secret whole: pydantic cuts a long input in the middle, a line may
be wrapped. So any run of :data:`WINDOW` characters of the secret counts as a leak; the
secrets are random URL-safe text, so such a run never turns up by chance.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jxc.logs import JsonFormatter

WINDOW = 12


def leaked(secret: str, text: str) -> str | None:
    """The first run of ``WINDOW`` characters of ``secret`` found in ``text``, if any."""
    for start in range(len(secret) - WINDOW + 1):
        piece = secret[start : start + WINDOW]
        if piece in text:
            return piece
    return None


def assert_no_leak(secrets: Iterable[str], texts: Iterable[str]) -> None:
    texts = list(texts)
    for secret in secrets:
        for text in texts:
            piece = leaked(secret, text)
            assert piece is None, f"secret leaked ({piece!r}) in: {text[:2000]}"


def pem_body(path: Path) -> str:
    """The base64 text of a PEM file (a private key), without its BEGIN/END lines, which
    are no secret: what must never turn up in a log line or a page."""
    return "".join(path.read_text().splitlines()[1:-1])


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """Every record of every logger, at every level, as the agent's JSON lines."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


Writer = Callable[[Path, str], None]
"""Puts a would-be secret into the file at ``path`` the way an operator got it wrong."""


def _bytes(content: Callable[[str], bytes]) -> Writer:
    return lambda path, secret: path.write_bytes(content(secret))


def _directory(path: Path, secret: str) -> None:
    path.mkdir()


def _missing(path: Path, secret: str) -> None:
    pass


BAD_SECRET_FILES: dict[str, tuple[Writer, str]] = {
    # name: (how the file is spoiled, what the error must say)
    "not-utf8": (_bytes(lambda s: s.encode() + b"\xff\xfe\n"), "not UTF-8 text"),
    "trailing-junk": (_bytes(lambda s: (s + "!\n").encode()), "not a site secret"),
    "space-inside": (_bytes(lambda s: f"{s[:20]} {s[20:]}\n".encode()), "not a site secret"),
    "toml-line": (_bytes(lambda s: f'secret = "{s}"\n'.encode()), "not a site secret"),
    "twice": (_bytes(lambda s: f"{s}\n{s}\n".encode()), "not a site secret"),
    "too-long": (_bytes(lambda s: (s * 4).encode()), "longer than"),
    "too-large": (_bytes(lambda s: (s + "\n").encode() * 200), "larger than"),
    "empty": (_bytes(lambda s: b"\n"), "file is empty"),
    "directory": (_directory, "it is a directory"),
    "missing": (_missing, "No such file"),
}
"""Every way a secret file can be unusable that a test can make without privileges; an
unreadable one (permissions) needs a process of another user, see the integration test."""
