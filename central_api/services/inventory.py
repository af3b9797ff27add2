"""Inventory documents at central: other receipts and issues (其它入库/出库) and write-offs (报损).

Three single-step documents with the same shape (a site, a reason code from the
``reason_codes`` reference list, lines of location/item/lot/quantity) and one frame:

* an **other receipt** books ``receipt`` events into an active location of the site;
* an **other issue** books ``issue`` events; an expired lot is refused (as on every
  outbound path that supplies goods: transfers too, see :mod:`.transfers`);
* a **write-off** books ``scrap`` events, expired lots included (that is what most
  write-offs are). Its value at cost (the item's ``cost``, else its purchase price) decides
  whether it is booked at once or waits: above ``write_off_approval_value``, or of unknown
  value, it is ``pending`` until someone other than its creator approves (booked) or
  rejects it (nothing moves).

The events are central's own (:mod:`.central_events`), each naming its document line
(``doc_type`` ``other_receipt`` / ``other_issue`` / ``write_off``), validated before they
exist: an outbound line beyond what the location holds is a 409 naming it, and nothing is
written. Commands follow the purchasing frame: ``Idempotency-Key`` checked first inside the
write transaction, the site's stream locked before the document, ``If-Match`` against the
version, a 409 naming the state, an audit entry with before and after.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.inventory import stock_document_lines, stock_documents
from central_api.models.items import items
from central_api.models.master import locations, reference_entries
from central_api.services import central_events
from central_api.services.audit import Actor, ActorKind, AuditContext, record
from central_api.services.central_events import Movement, lot_expiry
from central_api.services.documents import (
    MAX_LINES,
    DocCommand,
    SegregationOfDutiesError,
    base_quantity,
    check_limit,
    check_site,
    check_state,
    document_write,
    fetch_document,
    locked_document,
    moved,
    new_document_id,
    now_utc,
    plain,
    read_page,
    site_conditions,
)
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import AcceptedEvents, Projections
from central_api.services.sales import acceptable
from jxc.contract import EventKind
from jxc.write_off import WRITE_OFF, reason_of

_ZERO = Decimal(0)
_T = TypeVar("_T")


class StockDocKind(StrEnum):
    OTHER_RECEIPT = "other_receipt"
    OTHER_ISSUE = "other_issue"
    WRITE_OFF = "write_off"


class StockDocStatus(StrEnum):
    POSTED = "posted"
    """Booked: its events are in the ledger."""
    PENDING = "pending"
    """A write-off above the value threshold, waiting for approval; nothing booked yet."""
    REJECTED = "rejected"


_PREFIX = {
    StockDocKind.OTHER_RECEIPT: "OR",
    StockDocKind.OTHER_ISSUE: "OI",
    StockDocKind.WRITE_OFF: "WO",
}
_EVENT_KIND = {
    StockDocKind.OTHER_RECEIPT: EventKind.RECEIPT,
    StockDocKind.OTHER_ISSUE: EventKind.ISSUE,
    StockDocKind.WRITE_OFF: EventKind.SCRAP,
}
_PENDING = frozenset({StockDocStatus.PENDING})
_NAME = {
    StockDocKind.OTHER_RECEIPT: "other receipt",
    StockDocKind.OTHER_ISSUE: "other issue",
    StockDocKind.WRITE_OFF: "write-off",
}


@dataclass(frozen=True, slots=True)
class StockLineInput:
    item_code: str
    qty: Decimal
    location: str
    uom: str | None = None
    lot: str | None = None
    expiry: date | None = None


@dataclass(frozen=True, slots=True)
class StockLine:
    line_no: int
    item_code: str
    location: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    base_uom: str
    lot: str | None
    expiry: date | None
    unit_cost: Decimal | None


@dataclass(frozen=True, slots=True)
class StockDocument:
    doc_id: str
    kind: StockDocKind
    site_id: str
    reason_code: str
    status: StockDocStatus
    note: str
    value: Decimal | None
    created_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    version: int
    updated_at: datetime
    lines: list[StockLine] = field(default_factory=list)
    edge_ref: str | None = None
    """``<site> <number>`` of a write-off an edge booked: its stock left when recorded."""


@dataclass(frozen=True, slots=True)
class NewStockDocument:
    """What a create carries, apart from who asks."""

    kind: StockDocKind
    site_id: str
    reason_code: str
    lines: Sequence[StockLineInput]
    note: str = ""


# --- checks every inventory document shares --------------------------------------------


def check_reason(connection: Connection, code: str, applies_to: str) -> None:
    """The reason must be an active entry of the ``reason_codes`` list meant for this kind
    of movement (its ``applies_to``), so reports can group by it."""
    row = connection.execute(
        select(reference_entries.c.attrs, reference_entries.c.active).where(
            reference_entries.c.list_name == "reason_codes", reference_entries.c.code == code
        )
    ).one_or_none()
    if row is None or not row.active:
        raise InvalidError(f"reason_code: no active reason code {code!r}")
    if applies_to not in json.loads(row.attrs).get("applies_to", []):
        raise InvalidError(f"reason_code: {code!r} is not a reason for {applies_to}")


def active_location(connection: Connection, site_id: str, where: str, code: str) -> str:
    """``code`` if it is an active location of the site, else a 422 naming ``where``."""
    row = connection.execute(
        select(locations.c.active).where(locations.c.site_id == site_id, locations.c.code == code)
    ).one_or_none()
    if row is None or not row.active:
        raise InvalidError(f"{where}.location: site {site_id} has no active location {code!r}")
    return code


def refuse_expired(connection: Connection, where: str, item_code: str, lot: str | None) -> None:
    """Expired stock leaves by a write-off, never by an issue or a transfer: 409.

    "Expired" is what sales will not promise either: the expiry date is today or past."""
    expiry = lot_expiry(connection, item_code, lot)
    today = now_utc().date()
    if not acceptable(expiry, today, 0):
        raise ConflictError(
            f"{where}: {item_code} lot {lot} expired on {expiry}: expired stock is written "
            "off, not issued or transferred"
        )


def refuse_short(
    connection: Connection, site_id: str, where: str, wanted: dict[tuple[str, str, str], Decimal]
) -> None:
    """Refuse (409) a document that would take ``(location, item, lot)`` below zero, before
    anything is written, naming the line (the booking checks again, under the lock)."""
    for (location, item, lot), qty in wanted.items():
        held = central_events.balance(connection, site_id, location, item, lot or None)
        on_hand = _ZERO if held is None else held[1]
        if on_hand < qty:
            raise ConflictError(
                f"{where}: {item}{' lot ' + lot if lot else ''} at {site_id}/{location}: "
                f"{plain(on_hand)} on hand, {plain(qty)} wanted"
            )


def unit_cost(connection: Connection, item_code: str) -> Decimal | None:
    """The cost a write-off is valued at: the item's cost, else its purchase price."""
    row = connection.execute(
        select(items.c.cost, items.c.purchase_price).where(items.c.item_code == item_code)
    ).one_or_none()
    if row is None:
        return None
    found: Decimal | None = row.cost if row.cost is not None else row.purchase_price
    return found


def page_conditions(
    site_column: Any,
    key: Any,
    *,
    after: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    limit: int,
) -> list[Any]:
    """The frame's site filter and page limit, and the cursor: ids after ``after``."""
    check_limit(limit)
    return [
        *site_conditions(site_column, site_id, visible),
        *([] if after is None else [key > after]),
    ]


def from_row(cls: type[_T], row: Any, **given: Any) -> _T:
    """A document dataclass from its row: every field the row has, by name, and ``given``
    (the lines, an enum) over them. Saves spelling out a dozen columns per document."""
    values = row._mapping
    names = [each.name for each in fields(cls)]  # type: ignore[arg-type]
    return cls(
        **{name: values[name] for name in names if name in values and name not in given}, **given
    )


def lock_stream_of(connection: Connection, key: Any, doc_id: str, *, now: datetime) -> None:
    """Lock the stream of the site a document (``key`` its id column) belongs to, before
    the document itself: the order a push takes its locks in. Nothing for an unknown id
    (the document read answers 404)."""
    site = connection.execute(select(key.table.c.site_id).where(key == doc_id)).scalar_one_or_none()
    if site is not None:
        central_events.lock_site(connection, site, now=now)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the audit log keeps it: decimals and dates as text."""
    return {
        key: str(value) if isinstance(value, Decimal | date | datetime) else value
        for key, value in row.items()
    }


# --- reading -------------------------------------------------------------------------------


def _with_lines(connection: Connection, rows: Sequence[Any]) -> list[StockDocument]:
    by_id: dict[str, list[StockLine]] = defaultdict(list)
    ids = [row.doc_id for row in rows]
    if ids:
        for line in connection.execute(
            select(stock_document_lines)
            .where(stock_document_lines.c.doc_id.in_(ids))
            .order_by(stock_document_lines.c.doc_id, stock_document_lines.c.line_no)
        ):
            by_id[line.doc_id].append(from_row(StockLine, line))
    return [
        from_row(
            StockDocument,
            row,
            kind=StockDocKind(row.kind),
            status=StockDocStatus(row.status),
            lines=by_id[row.doc_id],
        )
        for row in rows
    ]


def _read(connection: Connection, doc_id: str, *, lock: bool = False) -> StockDocument | None:
    query = select(stock_documents).where(stock_documents.c.doc_id == doc_id)
    if lock:
        query = query.with_for_update()
    rows = connection.execute(query).all()
    return _with_lines(connection, rows)[0] if rows else None


def _reader(kind: StockDocKind) -> Callable[..., StockDocument | None]:
    """``_read`` of one kind only: an issue's id on the receipts' route does not exist."""

    def read(connection: Connection, doc_id: str, *, lock: bool = False) -> StockDocument | None:
        found = _read(connection, doc_id, lock=lock)
        return found if found is not None and found.kind is kind else None

    return read


def get_document(
    connection: Connection,
    kind: StockDocKind,
    doc_id: str,
    *,
    visible: frozenset[str] | None = None,
) -> StockDocument:
    return fetch_document(connection, _reader(kind), _NAME[kind], doc_id, visible)


def list_documents(
    connection: Connection,
    kind: StockDocKind,
    *,
    site_id: str | None,
    status: StockDocStatus | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[StockDocument], str | None]:
    key = stock_documents.c.doc_id
    conditions = page_conditions(
        stock_documents.c.site_id, key, after=after, site_id=site_id, visible=visible, limit=limit
    )
    conditions.append(stock_documents.c.kind == kind.value)
    if status is not None:
        conditions.append(stock_documents.c.status == status.value)
    return read_page(
        connection,
        stock_documents,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _with_lines(connection, rows),
    )


# --- commands ------------------------------------------------------------------------------


def _movements(document: StockDocument) -> list[Movement]:
    sign = 1 if document.kind is StockDocKind.OTHER_RECEIPT else -1
    return [
        Movement(
            kind=_EVENT_KIND[document.kind],
            item=line.item_code,
            location=line.location,
            qty=sign * line.base_qty,
            uom=line.base_uom,
            lot=line.lot,
            expiry=line.expiry,
            unit_cost=line.unit_cost,
            doc_type=document.kind.value,
            doc_id=document.doc_id,
            doc_line=line.line_no,
        )
        for line in document.lines
    ]


def _book(
    connection: Connection,
    document: StockDocument,
    *,
    actor: str,
    now: datetime,
    projections: Projections | None,
) -> None:
    central_events.book(
        connection,
        site_id=document.site_id,
        movements=_movements(document),
        actor=actor,
        ref=document.doc_id,
        now=now,
        projections=projections,
    )


def create_document(
    connection: Connection,
    new: NewStockDocument,
    *,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    projections: Projections | None,
    approval_value: Decimal,
    claim: IdempotencyClaim | None = None,
) -> StockDocument:
    """Record and (unless a write-off must wait) book a document. Raises ``IdempotentReplay``."""
    if not 1 <= len(new.lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    kind = new.kind
    with document_write(
        connection, action=f"{kind.value}.create", audit=audit, claim=claim
    ) as written:
        now = written.now
        check_site(connection, new.site_id, visible)
        check_reason(connection, new.reason_code, kind.value)
        central_events.lock_site(connection, new.site_id, now=now)
        rows: list[dict[str, Any]] = []
        outbound: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        value: Decimal | None = _ZERO
        for index, given in enumerate(new.lines):
            where = f"lines[{index}]"
            location = active_location(connection, new.site_id, where, given.location)
            uom, base, base_uom = base_quantity(
                connection, where, given.item_code, given.qty, given.uom
            )
            expiry = given.expiry
            if kind is not StockDocKind.OTHER_RECEIPT:
                outbound[(location, given.item_code, given.lot or "")] += base
                expiry = lot_expiry(connection, given.item_code, given.lot)
            if kind is StockDocKind.OTHER_ISSUE:
                refuse_expired(connection, where, given.item_code, given.lot)
            cost = unit_cost(connection, given.item_code)
            if value is not None:
                value = None if cost is None else value + base * cost
            rows.append(
                {
                    "line_no": index + 1,
                    "item_code": given.item_code,
                    "location": location,
                    "qty": given.qty,
                    "uom": uom,
                    "base_qty": base,
                    "base_uom": base_uom,
                    "lot": given.lot,
                    "expiry": expiry,
                    "unit_cost": cost,
                }
            )
        refuse_short(connection, new.site_id, "lines", outbound)
        waits = kind is StockDocKind.WRITE_OFF and (value is None or value > approval_value)
        status = StockDocStatus.PENDING if waits else StockDocStatus.POSTED
        doc_id = new_document_id(
            connection,
            sequence=f"#{kind.value}",
            prefix=_PREFIX[kind],
            column=stock_documents.c.doc_id,
        )
        connection.execute(
            insert(stock_documents).values(
                doc_id=doc_id,
                kind=kind.value,
                site_id=new.site_id,
                reason_code=new.reason_code,
                status=status.value,
                note=new.note,
                value=None if value is None else plain(value),
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        connection.execute(
            insert(stock_document_lines), [{"doc_id": doc_id, **row} for row in rows]
        )
        document = _read(connection, doc_id)
        assert document is not None
        if status is StockDocStatus.POSTED:
            _book(connection, document, actor=actor, now=now, projections=projections)
        written.doc_id, written.site_id = doc_id, new.site_id
        written.after = {
            "reason_code": new.reason_code,
            "status": status.value,
            "value": None if value is None else str(plain(value)),
            "lines": [jsonable(row) for row in rows],
        }
    return document


def decide_write_off(
    connection: Connection, command: DocCommand, verb: str, *, projections: Projections | None
) -> StockDocument:
    """``approve`` (book the scrap events) or ``reject`` a pending write-off; never one's own."""
    with document_write(
        connection, action=f"write_off.{verb}", audit=command.audit, claim=command.claim
    ) as written:
        now = written.now
        lock_stream_of(connection, stock_documents.c.doc_id, command.doc_id, now=now)
        read = _reader(StockDocKind.WRITE_OFF)
        document = locked_document(
            connection,
            read,
            "write-off",
            command.doc_id,
            command.visible,
            if_match=command.if_match,
        )
        check_state("write-off", document.doc_id, document.status, verb, _PENDING)
        if document.created_by == command.actor:
            raise SegregationOfDutiesError("write-off", document.doc_id, command.actor)
        if verb == "approve":
            if document.edge_ref is None:  # an edge's write-off is booked already
                _book(connection, document, actor=command.actor, now=now, projections=projections)
            status = StockDocStatus.POSTED
        else:
            status = StockDocStatus.REJECTED
        connection.execute(
            update(stock_documents)
            .where(stock_documents.c.doc_id == document.doc_id)
            .values(
                status=status.value,
                decided_by=command.actor,
                decided_at=now,
                decision_note=command.reason,
                version=stock_documents.c.version + 1,
                updated_at=now,
            )
        )
        found = read(connection, document.doc_id)
        assert found is not None
        written.doc_id, written.site_id = found.doc_id, found.site_id
        written.before, written.after = moved(document, found, command.reason)
    return found


# --- write-offs booked at an edge ------------------------------------------------------------

EDGE_WRITE_OFFS = "edge_write_offs"
UNSTATED_REASON = "UNSTATED"
"""The reason of an edge write-off event whose ``ref`` names none (written by hand)."""


def project_edge_write_offs(
    connection: Connection, accepted: AcceptedEvents, *, approval_value: Decimal
) -> None:
    """Make a write-off document of each edge write-off number in a push (its ``scrap``
    events naming ``doc_type = "write_off"``), so the approval threshold applies to damage
    recorded on the spot as to a write-off entered at central.

    The stock left when the edge booked it (a fact is never refused), so the document is
    ``posted`` at or below the threshold and ``pending`` above it (or of unknown value)
    with nothing left to book: approving it records the decision, and rejecting it leaves
    the events where they are (the goods are gone; a rejection is for the people who
    follow it up). Ingest hands a projection only the events a push really inserted, so a
    replayed push makes no second document; the lines of one number that arrive in two
    pushes make two documents with the same ``edge_ref``.
    """
    by_number: dict[str, list[Any]] = defaultdict(list)
    for event in accepted.events:
        if event.kind is EventKind.SCRAP and event.doc_type == WRITE_OFF and event.doc_id:
            by_number[event.doc_id].append(event)
    if not by_number:
        return
    # Central's own write-offs book the same events (through this projection too): their
    # number is the document's own id.
    central = set(
        connection.execute(
            select(stock_documents.c.doc_id).where(stock_documents.c.doc_id.in_(sorted(by_number)))
        ).scalars()
    )
    site_id, now = accepted.site_id, accepted.received_at
    for number, events in by_number.items():
        if number in central:
            continue
        rows: list[dict[str, Any]] = []
        value: Decimal | None = _ZERO
        for index, event in enumerate(events):
            known = connection.execute(
                select(items.c.uom).where(items.c.item_code == event.item)
            ).scalar_one_or_none()
            cost = unit_cost(connection, event.item) if known == event.uom else None
            if value is not None:
                value = None if cost is None else value - event.qty * cost
            rows.append(
                {
                    "line_no": index + 1,
                    "item_code": event.item,
                    "location": event.location,
                    "qty": -event.qty,
                    "uom": event.uom,
                    "base_qty": -event.qty,
                    "base_uom": known or event.uom,
                    "lot": event.lot,
                    "expiry": event.expiry,
                    "unit_cost": cost,
                }
            )
        waits = value is None or value > approval_value
        status = StockDocStatus.PENDING if waits else StockDocStatus.POSTED
        reason = reason_of(events[0].ref) or UNSTATED_REASON
        doc_id = new_document_id(
            connection, sequence="#write_off", prefix="WO", column=stock_documents.c.doc_id
        )
        connection.execute(
            insert(stock_documents).values(
                doc_id=doc_id,
                kind=StockDocKind.WRITE_OFF.value,
                site_id=site_id,
                reason_code=reason[:32],
                status=status.value,
                note=f"recorded at the edge of {site_id} as {number}",
                value=None if value is None else plain(value),
                created_by=(events[0].actor or f"edge {site_id}")[:100],
                created_at=now,
                version=1,
                updated_at=now,
                edge_ref=f"{site_id} {number}",
            )
        )
        connection.execute(
            insert(stock_document_lines), [{"doc_id": doc_id, **row} for row in rows]
        )
        record(
            connection,
            AuditContext(Actor(ActorKind.SITE, site_id)),
            action="write_off.create",
            resource="write_off",
            resource_id=doc_id,
            site_id=site_id,
            after={
                "edge_ref": f"{site_id} {number}",
                "reason_code": reason,
                "status": status.value,
                "value": None if value is None else str(plain(value)),
                "lines": [jsonable(row) for row in rows],
            },
            at=now,
        )
