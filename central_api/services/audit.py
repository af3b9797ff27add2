"""The audit log (操作日志): one call, :func:`record`, inside the change's own transaction.

Writing
-------
A service that changes something calls :func:`record` on the connection of its write
transaction, as the *last* thing before the commit::

    with write_transaction(connection):
        ...the change...
        record(connection, audit, action="item.update", resource="item",
               resource_id=code, before=old, after=new)

Because the entry is written by the same transaction, a change that rolls back takes its
entry with it, and an entry can never be committed without its change. Callers pass an
:class:`AuditContext` (who, from where, which request); routes get one from
``central_api.api.audit.AuditDep``, commands and tools make one with :func:`system_context`.

The chain
~~~~~~~~~
Entries are numbered 1, 2, 3, ... without gaps, and each carries ``prev_hash`` (the
previous entry's ``hash``; 64 zeros for the first) and ``hash``, the SHA-256 of
:func:`canonical_entry` (the entry's fields, then ``seq`` and ``prev_hash``, as one JSON
array). The single ``audit_head`` row holds the last seq and hash. :func:`record` locks
that row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction's
``BEGIN IMMEDIATE`` already holds the database's write lock), so two transactions can
never extend the chain from the same entry, in one process or many. The lock is held
until the commit, which is why the entry is written last: every audited writer queues on
it for the length of one statement and the commit. On PostgreSQL the lock, the hash, the
insert and the head's move are one statement (one round trip); the server hashes the
content prefix Python sends with the seq and ``prev_hash`` only the locked head knows.

``before`` and ``after`` are stored as canonical JSON *text* (sorted keys, no spaces,
decimals as strings): those exact characters are hashed, so what is read back can be
checked byte for byte on either database.

Verifying
~~~~~~~~~
:func:`verify_chain` walks the whole log in seq order and names the first entry that was
edited (its content no longer matches its hash), deleted (a seq is missing, or the chain
skips a link), or reordered (it links to an entry other than the one before it); and it
compares the last entry with the head, so entries deleted from the end show as well.
Someone who can write the database *and* recompute every hash after the one they edit
can forge a consistent chain; keep the head hash that ``verify`` prints somewhere else
(a ticket, a notebook) and compare it with a later run to catch that too.

Reading
-------
:func:`list_entries` filters and pages the log; :func:`strip_financial` removes the
financial field group from an entry's before/after for readers without it.
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import json
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    LargeBinary,
    Row,
    TextClause,
    and_,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from central_api.core import driver
from central_api.models.audit import audit_head, audit_log

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry, and the head's hash while the log is empty."""

AUDIT_HEAD_ID = 1
MAX_AUDIT_PAGE = 1000


class ActorKind(StrEnum):
    """Who an entry is attributed to."""

    USER = "user"
    """A person, logged in; ``id`` is the user name."""
    SITE = "site"
    """An edge agent, by its site token; ``id`` is the site id."""
    SYSTEM = "system"
    """A command run on central's host (``jxc central ...``); ``id`` names the command."""
    ANONYMOUS = "anonymous"
    """A request without credentials, where a route still allows one; ``id`` is None."""


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str | None


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who is making a change, and through which request: passed to every writing service."""

    actor: Actor
    request_id: str | None = None
    source: str | None = None
    """The client's address, as central saw it."""


def system_context(command: str) -> AuditContext:
    """The context of a command run on central's own host (``jxc central site add``)."""
    return AuditContext(actor=Actor(ActorKind.SYSTEM, command))


@dataclass(frozen=True, slots=True)
class _RequestScope:
    request_id: str | None
    source: str | None
    actor: Callable[[], Actor]
    """Asked when an entry is written: the principal is known only once auth has run."""


_request_scope: ContextVar[_RequestScope | None] = ContextVar("jxc_audit_request", default=None)


@contextmanager
def request_scope(
    *, request_id: str | None, source: str | None, actor: Callable[[], Actor]
) -> Iterator[None]:
    """Make :func:`current_context` answer for one request while the block runs.

    Set by central's request middleware, so that a service called from any route (or
    from a dependency) can record without being handed a context.
    """
    token = _request_scope.set(_RequestScope(request_id, source, actor))
    try:
        yield
    finally:
        _request_scope.reset(token)


def current_request_id() -> dict[str, Any]:
    """``{"request_id": ...}`` of the request being served, for every log line
    (:func:`jxc.logs.add_log_context`); empty outside a request."""
    scope = _request_scope.get()
    return {} if scope is None else {"request_id": scope.request_id}


def current_context() -> AuditContext:
    """Who is acting now: the request being served (see :func:`request_scope`), or,
    outside any request, the operating-system user running a command on central's host."""
    scope = _request_scope.get()
    if scope is None:
        return system_context(f"cli:{_os_user()}")
    return AuditContext(actor=scope.actor(), request_id=scope.request_id, source=scope.source)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a bare container)
        return str(os.getuid())


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry as stored; ``before`` and ``after`` parsed from their JSON."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str | None
    site_id: str | None
    action: str
    resource: str
    resource_id: str | None
    before: Any
    after: Any
    request_id: str | None
    source: str | None
    prev_hash: str
    hash: str


class AuditHeadMissingError(RuntimeError):
    """The ``audit_head`` row is gone: the schema was not made by the migrations."""


# --- writing ------------------------------------------------------------------------


def record(
    connection: Connection,
    context: AuditContext | None = None,
    *,
    action: str,
    resource: str,
    resource_id: str | None = None,
    site_id: str | None = None,
    before: Any = None,
    after: Any = None,
    at: datetime | None = None,
    along: tuple[TextClause, Mapping[str, Any]] | None = None,
) -> int:
    """Append one entry to the audit log in the caller's transaction; return its seq.

    ``action`` is ``<resource>.<verb>`` (``item.update``, ``sync.push``,
    ``purchase_order.approve``); ``site_id`` is the site the change concerns, if any
    (users scoped to sites see only their sites' entries); ``before`` and ``after`` are
    JSON-ready values (decimals, datetimes, UUIDs and enums are written as strings).
    Call it last in the transaction: it holds the chain's lock until the commit.

    Without ``context`` the entry is attributed by :func:`current_context`: the
    principal, id and address of the request being served, or the command line's user.

    ``along``: on PostgreSQL only, a statement made by :func:`appending_after` and its
    write's parameters, to make the change the entry describes in the entry's round trip.
    """
    if context is None:
        context = current_context()
    if not connection.in_transaction():
        raise RuntimeError(
            "audit.record must run inside the transaction of the change it describes"
        )
    at = (at or datetime.now(UTC)).astimezone(UTC)
    content: dict[str, Any] = {
        "at": at,
        "actor_kind": str(context.actor.kind),
        "actor_id": _clip(context.actor.id, 64),
        "site_id": site_id,
        "action": action,
        "resource": resource,
        "resource_id": _clip(resource_id, 256),
        "before": None if before is None else canonical_json(before),
        "after": None if after is None else canonical_json(after),
        "request_id": _clip(context.request_id, 64),
        "source": _clip(context.source, 64),
    }
    if connection.dialect.name == "postgresql":
        return _append_in_one_statement(connection, content, along)
    if along is not None:
        raise ValueError("a write along with the entry is for PostgreSQL only")
    # At the driver (central_api.core.driver): SQLAlchemy's execution of these three cost
    # more than SQLite's; every command and push writes an entry.
    dialect = connection.dialect
    head = driver.rows(connection, driver.prepared(_LOCK_HEAD, dialect), {"head_id": AUDIT_HEAD_ID})
    if not head:
        raise AuditHeadMissingError("table audit_head has no row")
    ((head_seq, head_hash),) = head
    values = {**content, "seq": int(head_seq) + 1, "prev_hash": head_hash}
    values["hash"] = entry_hash(values)
    driver.run(connection, driver.prepared(_INSERT_ENTRY, dialect), values)
    driver.run(
        connection,
        driver.prepared(_MOVE_HEAD, dialect),
        {"head_id": AUDIT_HEAD_ID, "new_seq": values["seq"], "new_hash": values["hash"]},
    )
    return int(values["seq"])


# Built once: building these per entry (coercing each value into a bound parameter,
# then a cache key) cost more than running them (docs/performance.md, "Cost per request").
_LOCK_HEAD = (
    select(audit_head.c.seq, audit_head.c.hash)
    .where(audit_head.c.id == bindparam("head_id"))
    .with_for_update()
)
_INSERT_ENTRY = insert(audit_log).values(
    {column.name: bindparam(column.name, type_=column.type) for column in audit_log.c}
)
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == bindparam("head_id"))
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


_CONTENT = (
    "at",
    "actor_kind",
    "actor_id",
    "site_id",
    "action",
    "resource",
    "resource_id",
    "before",
    "after",
    "request_id",
    "source",
)
"""The hashed fields before ``seq`` and ``prev_hash``, which close the array."""

_APPEND_BODY = """
old AS (
    SELECT seq, hash FROM audit_head WHERE id = :head_id FOR UPDATE
), new AS (
    SELECT seq + 1 AS seq,
           hash AS prev_hash,
           encode(sha256(:prefix || convert_to((seq + 1)::text || ',"' || hash || '"]', 'UTF8')),
                  'hex') AS hash
    FROM old
), entry AS (
    INSERT INTO audit_log (seq, at, actor_kind, actor_id, site_id, action, resource,
                           resource_id, before, after, request_id, source, prev_hash, hash)
    SELECT new.seq, CAST(:at AS TIMESTAMPTZ), CAST(:actor_kind AS VARCHAR),
           CAST(:actor_id AS VARCHAR), CAST(:site_id AS VARCHAR), CAST(:action AS VARCHAR),
           CAST(:resource AS VARCHAR), CAST(:resource_id AS VARCHAR), CAST(:before AS TEXT),
           CAST(:after AS TEXT), CAST(:request_id AS VARCHAR), CAST(:source AS VARCHAR),
           new.prev_hash, new.hash
    FROM new
    RETURNING seq
)
UPDATE audit_head SET seq = entry.seq, hash = new.hash
FROM entry, new
WHERE audit_head.id = :head_id
RETURNING audit_head.seq
"""
_APPEND_TYPES = (
    bindparam("prefix", type_=LargeBinary),
    bindparam("at", type_=DateTime(timezone=True)),
)
_APPEND_SQL = text("WITH" + _APPEND_BODY).bindparams(*_APPEND_TYPES)


def appending_after(write: str, *types: BindParameter[Any]) -> TextClause:
    """PostgreSQL: the entry's one statement, with the caller's ``write`` (a data-modifying
    statement, as SQL text with ``:named`` parameters other than the entry's own, their
    types given by ``types``) run in it as a ``WITH`` query: the change and its entry in
    one round trip. Build it once; pass it to :func:`record` as ``along``. The entry is
    still the transaction's last write, so it holds the chain's lock only to the commit.
    """
    return text(f"WITH written AS ({write}),{_APPEND_BODY}").bindparams(*_APPEND_TYPES, *types)


def _append_in_one_statement(
    connection: Connection,
    content: dict[str, Any],
    along: tuple[TextClause, Mapping[str, Any]] | None = None,
) -> int:
    """PostgreSQL: lock the head, hash, insert and move the head in one round trip.

    Each round trip to the server costs more than the statements themselves, and the
    head stays locked until the commit anyway. The hash is the same SHA-256 of the same
    bytes as :func:`entry_hash`'s: the entry's content (sent as UTF-8, it is all known
    here) followed by the seq and ``prev_hash`` that only the locked head knows, which
    PostgreSQL's ``sha256`` appends as ASCII. Verification recomputes it in Python.
    """
    statement, written = (_APPEND_SQL, {}) if along is None else along
    found = driver.rows(
        connection,
        driver.prepared(statement, connection.dialect),
        {
            **written,
            **content,
            "prefix": _content_prefix(content).encode(),
            "head_id": AUDIT_HEAD_ID,
        },
    )
    if not found:
        raise AuditHeadMissingError("table audit_head has no row")
    return int(found[0][0])


def canonical_json(value: Any) -> str:
    """The one spelling of a JSON value that is stored and hashed: sorted keys, no
    spaces, UTF-8 as is, and exact types (Decimal, datetime, UUID, enum) as strings."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_as_json
    )


def _as_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):  # a PO line's expected date: ISO, as the API spells it
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot be written to the audit log")


def canonical_entry(values: Mapping[str, Any]) -> str:
    """What an entry's hash covers: every field but the hash, in a fixed order, as one
    JSON array (so no field can run into the next), ending with ``seq`` and ``prev_hash``
    (the two that only the chain's head knows; PostgreSQL appends them itself)."""
    return f'{_content_prefix(values)}{int(values["seq"])},"{values["prev_hash"]}"]'


def _content_prefix(values: Mapping[str, Any]) -> str:
    """``[at,actor_kind,...,source,``: the canonical array up to ``seq``."""
    fields = [values[name] for name in _CONTENT]
    fields[0] = _timestamp(fields[0])
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)[:-1] + ","


def entry_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical_entry`."""
    return hashlib.sha256(canonical_entry(values).encode()).hexdigest()


def _timestamp(value: datetime) -> str:
    """UTC with microseconds, whatever the database handed back (SQLite: naive UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")


def request_id_or_new(offered: str | None) -> str:
    """The client's ``X-Request-ID`` if it is a plain token of up to 64 characters
    (so a log line or CSV cell cannot be forged through it), else a fresh UUID."""
    if offered is not None and _REQUEST_ID.fullmatch(offered):
        return offered
    return str(uuid.uuid4())


def source_address(host: str | None) -> str | None:
    """The client's address as text, or None when it is not an IP address (a test
    client's ``testclient``, a Unix socket)."""
    if host is None:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


# --- reading ------------------------------------------------------------------------

FINANCIAL_WORDS = frozenset(
    {"cost", "costs", "price", "prices", "value", "margin", "margins"}
    | {"amount", "amounts", "valuation", "revenue", "credit", "tax"}
)
"""A key is financial when one of its ``_``-separated words is one of these
(``unit_cost``, ``sale_price``, ``stock_value``, ``gross_margin``, ``tax_amount``,
``credit_limit``, a PO line's ``tax_rate``, which the API shows only with the group)."""


def is_financial_key(key: str) -> bool:
    return any(word in FINANCIAL_WORDS for word in key.lower().split("_"))


def strip_financial(value: Any) -> Any:
    """``value`` without any financial key at any depth: absent, not zeroed."""
    if isinstance(value, dict):
        return {
            key: strip_financial(item)
            for key, item in value.items()
            if not (isinstance(key, str) and is_financial_key(key))
        }
    if isinstance(value, list):
        return [strip_financial(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What an auditor asks for; every field left None matches everything."""

    actor_kind: str | None = None
    actor_id: str | None = None
    action: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    site_id: str | None = None
    since: datetime | None = None
    """Inclusive."""
    until: datetime | None = None
    """Exclusive."""
    sites: Collection[str] | None = None
    """The reader's site scope: only entries about these sites; None for no limit."""


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_after: int | None
    """The seq to continue after; None when this page is the last."""


def _conditions(chosen: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    columns = audit_log.c
    for name in ("actor_kind", "actor_id", "action", "resource", "resource_id", "site_id"):
        wanted = getattr(chosen, name)
        if wanted is not None:
            conditions.append(columns[name] == wanted)
    if chosen.since is not None:
        conditions.append(columns.at >= chosen.since.astimezone(UTC))
    if chosen.until is not None:
        conditions.append(columns.at < chosen.until.astimezone(UTC))
    if chosen.sites is not None:
        conditions.append(columns.site_id.in_(sorted(chosen.sites)))
    return conditions


def list_entries(
    *, connection: Connection, chosen: AuditFilter, after: int | None, limit: int
) -> AuditPage:
    """Up to ``limit`` entries matching ``chosen`` after seq ``after``, oldest first."""
    if not 1 <= limit <= MAX_AUDIT_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_AUDIT_PAGE}, got {limit}")
    conditions = _conditions(chosen)
    if after is not None:
        conditions.append(audit_log.c.seq > after)
    query = select(audit_log).order_by(audit_log.c.seq).limit(limit + 1)
    if conditions:
        query = query.where(and_(*conditions))
    if connection.in_transaction():
        rows = connection.execute(query).all()
    else:
        with _reading(connection):
            rows = connection.execute(query).all()
    found = [_entry(row) for row in rows]
    page = found[:limit]
    return AuditPage(entries=page, next_after=page[-1].seq if len(found) > limit else None)


def iter_entries(
    *, connection: Connection, chosen: AuditFilter, page: int = MAX_AUDIT_PAGE
) -> Iterator[AuditEntry]:
    """Every entry matching ``chosen``, oldest first, read a page at a time."""
    after: int | None = None
    while True:
        found = list_entries(connection=connection, chosen=chosen, after=after, limit=page)
        yield from found.entries
        if found.next_after is None:
            return
        after = found.next_after


def without_financial(entry: AuditEntry) -> AuditEntry:
    """The entry as a reader without the financial group sees it."""
    return replace(entry, before=strip_financial(entry.before), after=strip_financial(entry.after))


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=int(row.seq),
        at=_utc(row.at),
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        site_id=row.site_id,
        action=row.action,
        resource=row.resource,
        resource_id=row.resource_id,
        before=None if row.before is None else json.loads(row.before),
        after=None if row.after is None else json.loads(row.after),
        request_id=row.request_id,
        source=row.source,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@contextmanager
def _reading(connection: Connection) -> Iterator[None]:
    """A short read transaction, or the caller's if one is open already."""
    if connection.in_transaction():
        yield
        return
    with connection.begin():
        yield


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- verifying ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify_chain` found."""

    entries: int
    """How many entries were read."""
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    """The first entry that is not as it was written; None if the chain is intact."""
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


_VERIFY_PAGE = 5000


def verify_chain(connection: Connection, *, page: int = _VERIFY_PAGE) -> ChainReport:
    """Walk the whole log in seq order and report the first entry that breaks the chain.

    Reads in pages, each its own short transaction, so a long walk holds no lock; on a
    live central, entries appended during the walk are checked if they are reached,
    and the head is compared only when the walk ends where the head was when it began.
    """
    with _reading(connection):
        head = connection.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == AUDIT_HEAD_ID)
        ).one_or_none()
    if head is None:
        raise AuditHeadMissingError("table audit_head has no row")
    head_seq, head_hash = int(head.seq), str(head.hash)

    expected_seq, previous_hash, count = 1, GENESIS_HASH, 0
    after = 0
    while True:
        with _reading(connection):
            rows = connection.execute(
                select(audit_log)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(page)
            ).all()
        for row in rows:
            count += 1
            problem = _check(connection, row, expected_seq, previous_hash)
            if problem is not None:
                broken_at, reason = problem
                return ChainReport(count, head_seq, head_hash, broken_at, reason)
            expected_seq, previous_hash = int(row.seq) + 1, str(row.hash)
        if len(rows) < page:
            break
        after = int(rows[-1].seq)

    last_seq = expected_seq - 1
    if last_seq < head_seq:
        missing = (
            f"entry {head_seq}"
            if last_seq + 1 == head_seq
            else (f"entries {last_seq + 1} to {head_seq}")
        )
        return ChainReport(
            count,
            head_seq,
            head_hash,
            last_seq + 1,
            f"{missing} deleted: the chain ends at entry {last_seq} but its head is at "
            f"entry {head_seq}",
        )
    if last_seq == head_seq and previous_hash != head_hash:
        return ChainReport(
            count,
            head_seq,
            head_hash,
            last_seq,
            f"entry {last_seq} was changed and its hash recomputed: the chain's head "
            f"records another hash for it",
        )
    return ChainReport(count, head_seq, previous_hash if last_seq > head_seq else head_hash)


def _check(
    connection: Connection, row: Row[Any], expected_seq: int, previous_hash: str
) -> tuple[int, str] | None:
    """The first problem with ``row`` where entry ``expected_seq`` should be, if any."""
    seq = int(row.seq)
    if seq != expected_seq:
        missing = (
            f"entry {expected_seq} is"
            if seq == expected_seq + 1
            else f"entries {expected_seq} to {seq - 1} are"
        )
        return (
            expected_seq,
            f"{missing} missing (deleted): entry {seq} follows entry {expected_seq - 1}",
        )
    values = row._asdict()
    content_matches = entry_hash(values) == row.hash
    links = row.prev_hash == previous_hash
    if content_matches and links:
        return None
    if not links:
        linked_to = _seq_with_hash(connection, str(row.prev_hash))
        if linked_to is not None and linked_to != seq - 1:
            return seq, (
                f"entry {seq} is out of order (reordered): it was written after entry "
                f"{linked_to}, not after entry {seq - 1}"
            )
    if not content_matches:
        return seq, f"entry {seq} was edited: its content no longer matches its hash"
    if seq == 1:
        return seq, "entry 1 does not start the chain: entries before it were deleted"
    return seq - 1, (
        f"entry {seq - 1} was changed and its hash recomputed, or an entry after it was "
        f"deleted: entry {seq} does not link to it"
    )


def _seq_with_hash(connection: Connection, wanted: str) -> int | None:
    """The seq of the entry whose hash is ``wanted``; a full scan, run only on a break."""
    with _reading(connection):
        found = connection.execute(
            select(audit_log.c.seq).where(audit_log.c.hash == wanted).limit(1)
        ).scalar_one_or_none()
    return None if found is None else int(found)
