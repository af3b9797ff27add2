"""The frame every business document is built on (purchase orders, requisitions,
receipts, returns, invoices, sales orders and whatever document comes next).

A document is a state machine whose every change is a *create* or a *command* that runs
in one write transaction. What is the same for all of them lives here, so that a new
document writes only what is its own (its lines, its checks, its stock movements):

* :func:`document_write`: the transaction. It first replays the answer when the
  request's ``Idempotency-Key`` was used before (so a retry of a command that succeeded
  is answered with the document, not refused because the state moved on), lets the body
  work, then remembers the key and appends the audit entry *last* (the audit chain's lock
  is held until the commit);
* :func:`locked_document` and :func:`visible_document`: the document read (locked ``FOR
  UPDATE`` on PostgreSQL; SQLite's write transaction already holds the database), one of
  a site outside the caller's scope answered as not existing (404), a stale ``If-Match``
  refused (412);
* :func:`check_state`: a command that does not start from the current state is a 409
  naming both;
* :func:`new_document_id`: gapless-enough numbers per kind (``PO000001``) from the
  shared ``code_sequences`` table, skipping one taken by hand;
* :func:`base_quantity`, :func:`check_site`, :func:`site_conditions`, :func:`read_page`:
  a line's quantity in the item's base unit with its exact factor, the site checks and
  the cursor pages every list shares.

``docs/architecture.md`` ("Documents") says how a new document service is put together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Connection, Row, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central_api.core.db import write_transaction
from central_api.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PreconditionFailedError,
)
from central_api.models.items import items
from central_api.models.master import code_sequences, item_units
from central_api.models.master import sites as site_table
from central_api.services import idempotency
from central_api.services.audit import AuditContext, record
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from jxc.contract import MAX_ABS_AMOUNT

MAX_PAGE = 500
"""The most documents one list page answers."""
MAX_LINES = 500
"""The most lines one document may have."""


# --- refusals ------------------------------------------------------------------------


class UnknownDocumentError(NotFoundError):
    def __init__(self, kind: str, doc_id: str) -> None:
        super().__init__(f"{kind} {doc_id!r} does not exist")


class DocumentStateError(ConflictError):
    """A command that does not start from the document's current state."""

    def __init__(self, kind: str, doc_id: str, status: str, command: str, allowed: str) -> None:
        super().__init__(f"{kind} {doc_id} is {status}: {command} needs it to be {allowed}")


class StaleVersionError(PreconditionFailedError):
    def __init__(self, kind: str, doc_id: str, offered: str, current: int) -> None:
        super().__init__(
            f"{kind} {doc_id} changed since you read it: If-Match is {offered}, the current "
            f'version is "{current}"; read it again and redo your change'
        )


class SegregationOfDutiesError(ForbiddenError):
    def __init__(self, kind: str, doc_id: str, who: str) -> None:
        super().__init__(
            f"{who} created {kind} {doc_id} and may not approve it (segregation of duties): "
            "another person with the approve action must"
        )


# --- small values ----------------------------------------------------------------------


_ONE = Decimal(1)


def plain(value: Decimal) -> Decimal:
    """The shortest spelling of an amount: ``840``, not ``840.0`` or ``8.4E+2``.

    A whole amount is quantized to units, any other normalized; the same result as
    normalizing first and quantizing when the exponent is positive, at half the cost
    (an ATP read spells thousands of lots' amounts: ``bench/sales.py``)."""
    if value == value.to_integral_value():
        return value.quantize(_ONE)
    return value.normalize()


def now_utc() -> datetime:
    """The time a document change is recorded at."""
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC time (SQLite gives them back naive)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_version(kind: str, doc_id: str, current: int, if_match: str | None) -> None:
    """Refuse (412) an ``If-Match`` that does not name ``current`` (``*`` matches any)."""
    if if_match is None:
        return
    offered = [tag.strip() for tag in if_match.split(",")]
    wanted = {f'"{current}"', f'W/"{current}"', "*"}
    if not wanted.intersection(offered):
        raise StaleVersionError(kind, doc_id, if_match[:80], current)


def check_state(kind: str, doc_id: str, status: str, verb: str, starts: frozenset[Any]) -> None:
    """Refuse (409) a command ``verb`` that does not start from ``status``."""
    if status not in starts:
        raise DocumentStateError(kind, doc_id, status, verb, " or ".join(sorted(starts)))


# --- numbers ------------------------------------------------------------------------------


def _next_number(connection: Connection, sequence: str) -> int:
    maker = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    taken = (
        maker(code_sequences)
        .values(prefix=sequence, last_value=1)
        .on_conflict_do_update(
            index_elements=[code_sequences.c.prefix],
            set_={"last_value": code_sequences.c.last_value + 1},
        )
        .returning(code_sequences.c.last_value)
    )
    return int(connection.execute(taken).scalar_one())


def new_document_id(connection: Connection, *, sequence: str, prefix: str, column: Any) -> str:
    """The next number of a document kind (``PO000001``); one taken by hand is skipped.
    ``sequence`` names the counter in ``code_sequences`` (``#purchase_order``)."""
    while True:
        doc_id = f"{prefix}{_next_number(connection, sequence):06d}"
        if connection.execute(select(column).where(column == doc_id)).first() is None:
            return doc_id


# --- lines and sites -----------------------------------------------------------------------


def base_quantity(
    connection: Connection, where: str, item_code: str, qty: Decimal, uom: str | None
) -> tuple[str, Decimal, str]:
    """``(uom, base_qty, base_uom)`` of a line: the item's exact factor, or a 422 naming
    ``where`` (a quantity that is not exact in the base unit is refused, not rounded)."""
    item = connection.execute(
        select(items.c.uom, items.c.active, items.c.archived).where(items.c.item_code == item_code)
    ).one_or_none()
    if item is None:
        raise InvalidError(f"{where}.item_code: item {item_code!r} does not exist")
    if not item.active or item.archived:
        raise InvalidError(f"{where}.item_code: item {item_code!r} is inactive")
    if not Decimal(0) < qty < MAX_ABS_AMOUNT:
        raise InvalidError(f"{where}.qty: must be positive, got {qty}")
    base_uom = str(item.uom)
    if uom is None or uom == base_uom:
        return base_uom, qty, base_uom
    factor = connection.execute(
        select(item_units.c.factor).where(
            item_units.c.item_code == item_code, item_units.c.uom == uom
        )
    ).scalar_one_or_none()
    if factor is None:
        known = connection.execute(
            select(item_units.c.uom).where(item_units.c.item_code == item_code)
        ).scalars()
        units = ", ".join([base_uom, *known])
        raise InvalidError(f"{where}.uom: item {item_code!r} has no unit {uom!r} (it has {units})")
    try:
        with localcontext() as exact:
            exact.prec = 40
            exact.traps[Inexact] = True
            base = qty * factor
        if base != base.quantize(Decimal("0.000001")) or abs(base) >= MAX_ABS_AMOUNT:
            raise InvalidOperation
    except (Inexact, InvalidOperation):
        raise InvalidError(
            f"{where}.qty: {qty} {uom} is {qty * factor} {base_uom}, more than the six decimal "
            "places or the size a quantity may have"
        ) from None
    return (
        uom,
        base.normalize() if base != base.to_integral_value() else base.quantize(Decimal(1)),
        base_uom,
    )


def check_site(connection: Connection, site_id: str, visible: frozenset[str] | None) -> None:
    """A document's site must be in the caller's scope (403) and an active site (422)."""
    if visible is not None and site_id not in visible:
        raise ForbiddenError(f"site_id: site {site_id} is outside your sites")
    found = connection.execute(
        select(site_table.c.active).where(site_table.c.site_id == site_id)
    ).scalar_one_or_none()
    if found is None:
        raise InvalidError(f"site_id: site {site_id!r} is not in the site master")
    if not found:
        raise InvalidError(f"site_id: site {site_id!r} is inactive")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")


def site_conditions(
    column: Any, site_id: str | None, visible: frozenset[str] | None
) -> list[ColumnElement[bool]]:
    """A list's site filter: the site asked for (403 outside the caller's scope), else
    every site of the scope (None: every site)."""
    if site_id is not None:
        if visible is not None and site_id not in visible:
            raise ForbiddenError(f"site_id: site {site_id} is outside your sites")
        return [column == site_id]
    if visible is not None:
        return [column.in_(sorted(visible))]
    return []


_Found = TypeVar("_Found")


def read_page(
    connection: Connection,
    table: Table,
    key: Any,
    conditions: Sequence[ColumnElement[bool]],
    *,
    limit: int,
    build: Callable[[Sequence[Row[Any]]], list[_Found]],
) -> tuple[list[_Found], Any]:
    """A page of documents ordered by ``key`` and the cursor of the next page (None at
    the end), read in one snapshot; ``build`` turns the page's rows into documents."""
    with read_snapshot(connection):
        rows = connection.execute(
            select(table).where(*conditions).order_by(key).limit(limit + 1)
        ).all()
        found = build(rows[:limit])
    more = len(rows) > limit and found
    return found, (getattr(rows[limit - 1], key.name) if more else None)


def read_one(
    connection: Connection,
    table: Table,
    key: Any,
    doc_id: str,
    *,
    build: Callable[[Sequence[Row[Any]]], list[_Found]],
    lock: bool = False,
) -> _Found | None:
    """One document by its key (its row locked ``FOR UPDATE`` with ``lock``), built by
    the same ``build`` as its list pages, or None."""
    query = select(table).where(key == doc_id)
    if lock:
        query = query.with_for_update()
    found = build(connection.execute(query).all())
    return found[0] if found else None


def list_page(
    connection: Connection,
    table: Table,
    *,
    filters: Sequence[ColumnElement[bool]],
    scope: tuple[str | None, frozenset[str] | None],
    after: str | None,
    limit: int,
    build: Callable[[Sequence[Row[Any]]], list[_Found]],
) -> tuple[list[_Found], Any]:
    """A page of a document list keyed by its primary key: the ``filters`` asked for, the
    site asked for within the caller's ``scope`` (``(site_id, visible)``), from ``after``."""
    check_limit(limit)
    key = next(iter(table.primary_key.columns))
    site_id, visible = scope
    conditions = [*filters, *site_conditions(table.c.site_id, site_id, visible)]
    if after is not None:
        conditions.append(key > after)
    return read_page(connection, table, key, conditions, limit=limit, build=build)


def auditable_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Document lines as the audit log keeps them: amounts and days as exact text."""
    return [
        {k: str(v) if isinstance(v, Decimal | date) else v for k, v in row.items()} for row in rows
    ]


# --- the document read -----------------------------------------------------------------------


class Scoped(Protocol):
    """What the scope check needs of a document: its site."""

    @property
    def site_id(self) -> str: ...


class Document(Scoped, Protocol):
    """What the frame needs of a document: its site (for the scope) and version."""

    @property
    def version(self) -> int: ...


_Doc = TypeVar("_Doc", bound=Document)
_Seen = TypeVar("_Seen", bound=Scoped)


def visible_document(
    found: _Seen | None, kind: str, doc_id: str, visible: frozenset[str] | None
) -> _Seen:
    """``found``, unless it is missing or of a site outside ``visible`` (404 alike: the
    caller learns nothing of other sites' documents)."""
    if found is None or (visible is not None and found.site_id not in visible):
        raise UnknownDocumentError(kind, doc_id)
    return found


def fetch_document(
    connection: Connection,
    read: Callable[..., _Doc | None],
    kind: str,
    doc_id: str,
    visible: frozenset[str] | None,
) -> _Doc:
    """The document as ``read(connection, doc_id)`` gives it, in one snapshot."""
    with read_snapshot(connection):
        found = read(connection, doc_id)
    return visible_document(found, kind, doc_id, visible)


def locked_document(
    connection: Connection,
    read: Callable[..., _Doc | None],
    kind: str,
    doc_id: str,
    visible: frozenset[str] | None,
    *,
    if_match: str | None = None,
) -> _Doc:
    """The document read ``lock=True`` inside a write, its ``If-Match`` checked."""
    found = visible_document(read(connection, doc_id, lock=True), kind, doc_id, visible)
    check_version(kind, doc_id, found.version, if_match)
    return found


class Stateful(Document, Protocol):
    @property
    def status(self) -> StrEnum: ...


def moved(
    before: Stateful, after: Stateful, reason: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The audit entry's ``before`` and ``after`` of a command: the states and versions,
    and the reason when one was given."""
    return (
        {"status": before.status.value, "version": before.version},
        {
            "status": after.status.value,
            "version": after.version,
            **({"reason": reason} if reason else {}),
        },
    )


# --- the write -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandGuard:
    """Who runs a command, and what guards it: their sites, the version they read
    (``If-Match``), the request's idempotency claim; the reason they gave. A document's
    own command adds the id by its name (``PoCommand.po_id``)."""

    actor: str
    visible: frozenset[str] | None
    if_match: str | None
    audit: AuditContext
    claim: IdempotencyClaim | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DocCommand(CommandGuard):
    """A command on the document ``doc_id``."""

    doc_id: str


@dataclass(slots=True)
class Written:
    """What the body of :func:`document_write` says it did, for the key and the audit:
    the document's id (remembered with the key), its site and the before/after states."""

    now: datetime
    doc_id: str = ""
    site_id: str | None = None
    before: Any = None
    after: Any = None
    audit_id: str | None = None
    """The audit entry's resource id when it is not ``doc_id`` (a command on several)."""


@contextmanager
def document_write(
    connection: Connection,
    *,
    action: str,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
    now: datetime | None = None,
) -> Iterator[Written]:
    """One write transaction of a create or command: replay first (``IdempotentReplay``
    for a retried key), the body, then the key and the audit entry ``action`` last.

    The body fills in the :class:`Written` it is given; an exception from it rolls
    everything back, the key included, so the request can be sent again."""
    written = Written(now=now or now_utc())
    with write_transaction(connection):
        idempotency.check(connection, claim)
        yield written
        idempotency.remember(connection, claim, written.doc_id, now=written.now)
        record(
            connection,
            audit,
            action=action,
            resource=action.split(".", 1)[0],
            resource_id=written.doc_id if written.audit_id is None else written.audit_id,
            site_id=written.site_id,
            before=written.before,
            after=written.after,
            at=written.now,
        )
