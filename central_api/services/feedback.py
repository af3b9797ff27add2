"""Feedback from the console's users: a note about a page, tagged and resolved by an admin,
summed up each month for the next release (issue 20; ``docs/console.md``, "Feedback").

Who sees what
-------------
Any signed-in user may send a note; it records the page (its path, never its query,
which may hold search words), the sender, their roles, and their one site when their
account is limited to exactly one. Reading, tagging, resolving and the summary need
``feedback.manage``, within the reader's sites: a reader limited to sites sees the notes
of those sites, a reader of every site sees all of them. A screenshot sent by someone
who saw amounts is shown only to a reader who sees them too: it may show prices.

The screenshot
--------------
Whatever the browser sends is checked by its first bytes, not by its declared type:
PNG, JPEG or WebP, at most :data:`MAX_SCREENSHOT_BYTES`; anything else is a 422 (too
large: 413) that says so, and the note is not stored, so nothing is half-saved.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, insert, or_, select, update

from central_api.errors import ConflictError, ForbiddenError, InvalidError, TooLargeError
from central_api.models.feedback import feedback
from central_api.services.audit import AuditContext
from central_api.services.documents import (
    UnknownDocumentError,
    check_limit,
    check_version,
    document_write,
    new_document_id,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.reports import Column
from jxc.paths import CONSOLE

MAX_SCREENSHOT_BYTES: Final = 700_000
"""Enough for a full-width screenshot of a desk's screen as PNG; below the 1 MiB every
route takes (``JXC_CENTRAL_MAX_BODY_BYTES``) even when the API sends it as base64."""
MAX_NOTE: Final = 2000
MAX_RESOLUTION: Final = 1000
MAX_PAGE_PATH: Final = 500
MAX_TAGS: Final = 8
TAG_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
SUGGESTED_TAGS: Final = ("bug", "question", "idea", "training", "data", "speed")
"""Offered by the inbox; any other word of :data:`TAG_PATTERN` is taken too."""

OPEN: Final = "open"
RESOLVED: Final = "resolved"
STATUSES: Final = (OPEN, RESOLVED)

_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)

_LISTED = [column for column in feedback.c if column.name != "screenshot"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One note as the inbox shows it (never the screenshot's bytes)."""

    feedback_id: str
    page: str
    note: str
    sender: str
    roles: list[str]
    site_id: str | None
    financial: bool
    language: str
    screenshot_type: str | None
    tags: list[str]
    status: str
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    version: int
    created_at: datetime
    changed_at: datetime

    @property
    def has_screenshot(self) -> bool:
        return self.screenshot_type is not None


@dataclass(frozen=True, slots=True)
class Screenshot:
    content: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One line of the monthly summary: notes about one page, or with one tag, or all."""

    kind: str
    """``all``, ``page`` or ``tag``."""
    key: str
    total: int
    open: int
    resolved: int


@dataclass(slots=True)
class Summary:
    month: str
    rows: list[SummaryRow] = field(default_factory=list)


# --- checks ---------------------------------------------------------------------------


def image_type(content: bytes) -> str:
    """The media type of a screenshot by its first bytes; a 422 or 413 if it is none."""
    if len(content) > MAX_SCREENSHOT_BYTES:
        raise TooLargeError(
            f"screenshot: {len(content)} bytes is more than {MAX_SCREENSHOT_BYTES}; "
            "send a smaller picture (a screenshot of one screen is far less)"
        )
    for signature, media_type in _SIGNATURES:
        if content.startswith(signature):
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    raise InvalidError("screenshot: must be a PNG, JPEG or WebP picture")


def page_path(page: str) -> str:
    """The path of the page a note is about, without its query or fragment."""
    path = re.split(r"[?#]", page.strip(), maxsplit=1)[0]
    below = path == CONSOLE or path.startswith(f"{CONSOLE}/")
    # The inbox links to it: only a page of this console, never ``//host`` or a scheme.
    if (
        not below
        or "//" in path
        or "\\" in path
        or len(path) > MAX_PAGE_PATH
        or not path.isprintable()
    ):
        raise InvalidError(
            f"page: must be the path of a console page (/console/...), at most "
            f"{MAX_PAGE_PATH} characters"
        )
    if any(char.isspace() for char in path):
        raise InvalidError("page: a path has no spaces")
    return path


def note_text(note: str) -> str:
    text = note.strip()
    if not text:
        raise InvalidError("note: say what happened or what you would like")
    if len(text) > MAX_NOTE:
        raise InvalidError(f"note: at most {MAX_NOTE} characters, got {len(text)}")
    return text


def tag_words(tags: Sequence[str]) -> list[str]:
    """Tags as stored: lower case, each once, sorted; a word that is no tag is refused."""
    words: set[str] = set()
    for given in tags:
        for word in given.lower().replace(",", " ").split():
            if not TAG_PATTERN.fullmatch(word):
                raise InvalidError(
                    f"tags: {word[:40]!r} is not a tag: 1-24 of a-z 0-9 _ -, starting with a "
                    "letter or digit"
                )
            words.add(word)
    if len(words) > MAX_TAGS:
        raise InvalidError(f"tags: at most {MAX_TAGS}, got {len(words)}")
    return sorted(words)


def month_range(month: str) -> tuple[datetime, datetime]:
    """``2026-12`` -> its first instant and the next month's, in UTC."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if found is None or not 1 <= int(found[2]) <= 12 or not 1 <= int(found[1]) <= 9998:
        raise InvalidError(f"month: {month[:20]!r} is not a month like 2026-12")
    year, number = int(found[1]), int(found[2])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


# --- reading ----------------------------------------------------------------------------


def _visible(visible: frozenset[str] | None) -> Any:
    if visible is None:
        return True
    return feedback.c.site_id.in_(sorted(visible))


def _feedback(row: Any) -> Feedback:
    return Feedback(
        feedback_id=row.feedback_id,
        page=row.page,
        note=row.note,
        sender=row.sender,
        roles=row.roles.split(),
        site_id=row.site_id,
        financial=bool(row.financial),
        language=row.language,
        screenshot_type=row.screenshot_type,
        tags=row.tags.split(),
        status=row.status,
        resolution=row.resolution,
        resolved_by=row.resolved_by,
        resolved_at=utc(row.resolved_at),
        version=row.version,
        created_at=utc(row.created_at) or row.created_at,
        changed_at=utc(row.changed_at) or row.changed_at,
    )


def get_feedback(
    connection: Connection, feedback_id: str, *, visible: frozenset[str] | None = None
) -> Feedback:
    with read_snapshot(connection):
        row = connection.execute(
            select(*_LISTED).where(and_(feedback.c.feedback_id == feedback_id, _visible(visible)))
        ).one_or_none()
    if row is None:
        raise UnknownDocumentError("feedback", feedback_id)
    return _feedback(row)


def list_feedback(
    connection: Connection,
    *,
    visible: frozenset[str] | None,
    status: str | None = None,
    tag: str | None = None,
    month: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> tuple[list[Feedback], str | None]:
    """Newest first; ``after``: the last id of the previous page."""
    check_limit(limit)
    if status is not None and status not in STATUSES:
        raise InvalidError(f"status: must be one of {', '.join(STATUSES)}")
    conditions = [_visible(visible)]
    if status is not None:
        conditions.append(feedback.c.status == status)
    for word in tag_words([tag]) if tag else []:  # several words: notes with each of them
        conditions.append(
            or_(
                feedback.c.tags == word,
                feedback.c.tags.like(f"{word} %"),
                feedback.c.tags.like(f"% {word}"),
                feedback.c.tags.like(f"% {word} %"),
            )
        )
    if month:
        start, end = month_range(month)
        conditions += [feedback.c.created_at >= start, feedback.c.created_at < end]
    if after:
        conditions.append(feedback.c.feedback_id < after)
    with read_snapshot(connection):
        rows = connection.execute(
            select(*_LISTED)
            .where(and_(*conditions))
            .order_by(feedback.c.feedback_id.desc())
            .limit(limit + 1)
        ).all()
    found = [_feedback(row) for row in rows[:limit]]
    return found, (found[-1].feedback_id if len(rows) > limit else None)


def screenshot_of(
    connection: Connection,
    feedback_id: str,
    *,
    visible: frozenset[str] | None,
    financial: bool,
) -> Screenshot:
    """A note's screenshot; 404 without one, 403 for a reader who may not see amounts when
    the sender could (the picture may show them)."""
    with read_snapshot(connection):
        row = connection.execute(
            select(feedback.c.screenshot, feedback.c.screenshot_type, feedback.c.financial).where(
                and_(feedback.c.feedback_id == feedback_id, _visible(visible))
            )
        ).one_or_none()
    if row is None or row.screenshot is None:
        raise UnknownDocumentError("screenshot of feedback", feedback_id)
    if row.financial and not financial:
        raise ForbiddenError(
            f"the screenshot of feedback {feedback_id} may show amounts, which your roles "
            "do not show"
        )
    return Screenshot(content=bytes(row.screenshot), media_type=row.screenshot_type)


def monthly_summary(
    connection: Connection, *, month: str, visible: frozenset[str] | None
) -> Summary:
    """Notes sent in ``month`` (UTC), counted in all, by page and by tag (a note with two
    tags counts under each; one without any under ``-``), each split open / resolved as
    they stand now."""
    start, end = month_range(month)
    with read_snapshot(connection):
        rows = connection.execute(
            select(feedback.c.page, feedback.c.tags, feedback.c.status).where(
                and_(
                    _visible(visible),
                    feedback.c.created_at >= start,
                    feedback.c.created_at < end,
                )
            )
        ).all()
    counts: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        keys: list[tuple[str, str]] = [("all", ""), ("page", str(row.page))]
        keys += [("tag", tag) for tag in (str(row.tags).split() or ["-"])]
        for counted_as in keys:
            counts.setdefault(counted_as, Counter())[row.status] += 1
    order = {"all": 0, "page": 1, "tag": 2}
    summary = Summary(month=f"{start:%Y-%m}")
    if not rows:
        counts[("all", "")] = Counter()
    for (kind, key), counted in sorted(
        counts.items(), key=lambda item: (order[item[0][0]], -sum(item[1].values()), item[0][1])
    ):
        summary.rows.append(
            SummaryRow(
                kind=kind,
                key=key,
                total=sum(counted.values()),
                open=counted[OPEN],
                resolved=counted[RESOLVED],
            )
        )
    return summary


# --- writing ----------------------------------------------------------------------------


def send_feedback(
    connection: Connection,
    *,
    page: str,
    note: str,
    sender: str,
    roles: Sequence[str],
    sites: frozenset[str] | None,
    financial: bool,
    language: str,
    screenshot: bytes | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None,
) -> Feedback:
    """Store a note (checked whole first: a refused screenshot stores nothing). A retried
    key raises ``IdempotentReplay`` naming the note the first request stored."""
    path, text = page_path(page), note_text(note)
    media_type = image_type(screenshot) if screenshot else None
    site_id = next(iter(sites)) if sites is not None and len(sites) == 1 else None
    with document_write(connection, action="feedback.create", audit=audit, claim=claim) as written:
        feedback_id = new_document_id(
            connection, sequence="#feedback", prefix="FB", column=feedback.c.feedback_id
        )
        connection.execute(
            insert(feedback).values(
                feedback_id=feedback_id,
                page=path,
                note=text,
                sender=sender,
                roles=" ".join(sorted(roles))[:400],
                site_id=site_id,
                financial=financial,
                language=language[:16],
                screenshot=screenshot if media_type else None,
                screenshot_type=media_type,
                tags="",
                status=OPEN,
                version=1,
                created_at=written.now,
                changed_at=written.now,
            )
        )
        written.doc_id, written.site_id = feedback_id, site_id
        written.after = {
            "page": path,
            "note": text,
            "roles": sorted(roles),
            "screenshot": media_type,
        }
    return get_feedback(connection, feedback_id)


def _locked(
    connection: Connection, feedback_id: str, visible: frozenset[str] | None, if_match: str | None
) -> Any:
    row = connection.execute(
        select(*_LISTED)
        .where(and_(feedback.c.feedback_id == feedback_id, _visible(visible)))
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise UnknownDocumentError("feedback", feedback_id)
    check_version("feedback", feedback_id, row.version, if_match)
    return row


def tag_feedback(
    connection: Connection,
    feedback_id: str,
    *,
    tags: Sequence[str],
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Feedback:
    """Set a note's tags (all of them: the words given replace the ones it had). A resolved
    note may be tagged still: the summary sorts by tag whatever the state."""
    words = tag_words(tags)
    with document_write(connection, action="feedback.tag", audit=audit, claim=claim) as written:
        row = _locked(connection, feedback_id, visible, if_match)
        connection.execute(
            update(feedback)
            .where(feedback.c.feedback_id == feedback_id)
            .values(tags=" ".join(words), version=row.version + 1, changed_at=written.now)
        )
        written.doc_id, written.site_id = feedback_id, row.site_id
        written.before = {"tags": row.tags.split()}
        written.after = {"tags": words}
    return get_feedback(connection, feedback_id)


def resolve_feedback(
    connection: Connection,
    feedback_id: str,
    *,
    resolution: str,
    actor: str,
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Feedback:
    """Close a note with what was done about it (fixed, answered, planned for a release)."""
    text = resolution.strip()
    if not text or len(text) > MAX_RESOLUTION:
        raise InvalidError(f"resolution: say what was done, at most {MAX_RESOLUTION} characters")
    with document_write(connection, action="feedback.resolve", audit=audit, claim=claim) as written:
        row = _locked(connection, feedback_id, visible, if_match)
        if row.status == RESOLVED:
            raise ConflictError(f"feedback {feedback_id} is resolved already")
        connection.execute(
            update(feedback)
            .where(feedback.c.feedback_id == feedback_id)
            .values(
                status=RESOLVED,
                resolution=text,
                resolved_by=actor,
                resolved_at=written.now,
                version=row.version + 1,
                changed_at=written.now,
            )
        )
        written.doc_id, written.site_id = feedback_id, row.site_id
        written.before = {"status": row.status}
        written.after = {"status": RESOLVED, "resolution": text}
    return get_feedback(connection, feedback_id)


# --- the summary as a file ----------------------------------------------------------------

SUMMARY_COLUMNS: Final = (
    Column("kind", "Grouped by"),
    Column("key", "Page or tag"),
    Column("total", "Notes", "int"),
    Column("open", "Open", "int"),
    Column("resolved", "Resolved", "int"),
)
"""The summary's columns; each label is a msgid of the console's catalogue too."""


def summary_rows(summary: Summary) -> list[dict[str, Any]]:
    return [
        {
            "kind": row.kind,
            "key": row.key,
            "total": row.total,
            "open": row.open,
            "resolved": row.resolved,
        }
        for row in summary.rows
    ]
