"""Purchasing documents (采购): requisitions (请购单) and purchase orders (采购订单).

Documents are state machines. Every change of state is a *command* (approve, send,
cancel, close, submit, reject...) that runs in one write transaction which:

1. replays the answer if the request's ``Idempotency-Key`` was used for it before
   (:mod:`central_api.services.idempotency`), before any other check, so a retry of a
   command that succeeded is answered with the document rather than a refusal;
2. reads the document locked (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction
   already holds the database), refuses a stale ``If-Match`` version (412) and a state
   the command does not start from (409, naming both);
3. writes the new state with ``version + 1``, the change feed's PO lines for the site (an
   approved PO's lines become receivable; a cancelled or closed one's are tombstoned),
   the idempotency key and the audit entry, last.

Quantities are converted to the item's base unit with the item's exact unit factors from
master data when a line is written; received quantities are kept in the base unit by the
projection in :mod:`central_api.services.po_progress`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.items import items
from central_api.models.master import partners
from central_api.models.purchasing import (
    purchase_exceptions,
    purchase_order_lines,
    purchase_orders,
    requisition_lines,
    requisitions,
)
from central_api.services.audit import AuditContext
from central_api.services.documents import (
    MAX_LINES,
    MAX_PAGE,
    CommandGuard,
    DocumentStateError,
    SegregationOfDutiesError,
    UnknownDocumentError,
    base_quantity,
    check_limit,
    check_site,
    check_state,
    document_write,
    fetch_document,
    locked_document,
    moved,
    new_document_id,
    plain,
    read_page,
    site_conditions,
    utc,
    visible_document,
)
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from jxc.feed import ChangeOp, FeedEntity, PoLineData

__all__ = ["MAX_LINES", "MAX_PAGE", "DocumentStateError", "UnknownDocumentError", "plain"]
MAX_TOLERANCE = Decimal(1000)
_HUNDRED = Decimal(100)


class PoStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENT = "sent"
    PARTLY_RECEIVED = "partly_received"
    RECEIVED = "received"
    CLOSED = "closed"
    CANCELLED = "cancelled"


RECEIVABLE = frozenset(
    {PoStatus.APPROVED, PoStatus.SENT, PoStatus.PARTLY_RECEIVED, PoStatus.RECEIVED}
)
"""States whose lines are in the site's feed: receipts against them are expected."""


class ReqStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    ORDERED = "ordered"
    """Approved and turned into purchase orders: it cannot be converted twice."""
    CANCELLED = "cancelled"
    """Withdrawn by its requester before approval (draft or submitted)."""


# --- what callers pass and get ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoLineInput:
    item_code: str
    qty: Decimal
    uom: str | None = None
    unit_price: Decimal | None = None
    tax_rate: Decimal | None = None
    expected_date: date | None = None
    over_tolerance: Decimal = Decimal(0)
    under_tolerance: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class ReqLineInput:
    item_code: str
    qty: Decimal
    uom: str | None = None
    supplier: str | None = None
    expected_date: date | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class PoLine:
    line_no: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    base_uom: str
    unit_price: Decimal | None
    tax_rate: Decimal | None
    expected_date: date | None
    over_tolerance: Decimal
    under_tolerance: Decimal
    received_qty: Decimal
    req_id: str | None
    req_line: int | None
    accepted_qty: Decimal = Decimal(0)
    quarantined_qty: Decimal = Decimal(0)
    returned_qty: Decimal = Decimal(0)
    invoiced_qty: Decimal = Decimal(0)

    @property
    def amount(self) -> Decimal | None:
        """Price × ordered quantity, before tax (None without a price)."""
        return None if self.unit_price is None else plain(self.unit_price * self.qty)

    @property
    def open_qty(self) -> Decimal:
        """What is still expected, in the base unit (never negative)."""
        return max(self.base_qty - self.received_qty, Decimal(0))


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    po_id: str
    supplier: str
    site_id: str
    status: PoStatus
    note: str
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    sent_at: datetime | None
    ended_at: datetime | None
    reason: str | None
    version: int
    updated_at: datetime
    lines: list[PoLine] = field(default_factory=list)

    @property
    def amount(self) -> Decimal | None:
        """The lines' amounts added up, before tax; None while a line has no price."""
        total = Decimal(0)
        for line in self.lines:
            amount = line.amount
            if amount is None:
                return None
            total += amount
        return plain(total)


@dataclass(frozen=True, slots=True)
class ReqLine:
    line_no: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    supplier: str | None
    expected_date: date | None
    note: str
    po_id: str | None
    po_line: int | None


@dataclass(frozen=True, slots=True)
class Requisition:
    req_id: str
    site_id: str
    status: ReqStatus
    note: str
    created_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    version: int
    updated_at: datetime
    lines: list[ReqLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PoFilter:
    status: PoStatus | None = None
    supplier: str | None = None
    site_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    visible_sites: frozenset[str] | None = None
    """The caller's site scope: None for every site."""


@dataclass(frozen=True, slots=True)
class PurchaseException:
    exception_id: int
    kind: str
    site_id: str
    po_id: str | None
    line_no: int | None
    event_id: str | None
    qty: Decimal | None
    detail: str
    status: str
    raised_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


# --- helpers ---------------------------------------------------------------------------------


def _check_supplier(connection: Connection, where: str, code: str) -> None:
    found = connection.execute(
        select(partners.c.is_supplier, partners.c.active).where(partners.c.code == code)
    ).one_or_none()
    if found is None:
        raise InvalidError(f"{where}: partner {code!r} does not exist")
    if not found.is_supplier:
        raise InvalidError(f"{where}: partner {code!r} is not a supplier")
    if not found.active:
        raise InvalidError(f"{where}: supplier {code!r} is inactive")


def _check_po_line(where: str, line: PoLineInput) -> None:
    for name in ("over_tolerance", "under_tolerance"):
        value: Decimal = getattr(line, name)
        if not Decimal(0) <= value <= MAX_TOLERANCE:
            raise InvalidError(f"{where}.{name}: a percentage within 0..{MAX_TOLERANCE}")
    if line.under_tolerance > _HUNDRED:
        raise InvalidError(f"{where}.under_tolerance: at most 100 percent")
    if line.unit_price is not None and line.unit_price < 0:
        raise InvalidError(f"{where}.unit_price: must not be negative")
    if line.tax_rate is not None and not Decimal(0) <= line.tax_rate < 1:
        raise InvalidError(f"{where}.tax_rate: a fraction within 0..1 (0.13 for 13 %)")


# --- purchase orders: reading ------------------------------------------------------------


def _po_from(row: Row[Any], lines: list[PoLine]) -> PurchaseOrder:
    return PurchaseOrder(
        po_id=row.po_id,
        supplier=row.supplier_code,
        site_id=row.site_id,
        status=PoStatus(row.status),
        note=row.note,
        created_by=row.created_by,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        approved_by=row.approved_by,
        approved_at=utc(row.approved_at),
        sent_at=utc(row.sent_at),
        ended_at=utc(row.ended_at),
        reason=row.reason,
        version=row.version,
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        lines=lines,
    )


def _line_from(row: Row[Any]) -> PoLine:
    return PoLine(
        line_no=row.line_no,
        item_code=row.item_code,
        qty=row.qty,
        uom=row.uom,
        base_qty=row.base_qty,
        base_uom=row.base_uom,
        unit_price=row.unit_price,
        tax_rate=row.tax_rate,
        expected_date=row.expected_date,
        over_tolerance=row.over_tolerance,
        under_tolerance=row.under_tolerance,
        received_qty=row.received_qty,
        req_id=row.req_id,
        req_line=row.req_line,
        accepted_qty=row.accepted_qty,
        quarantined_qty=row.quarantined_qty,
        returned_qty=row.returned_qty,
        invoiced_qty=row.invoiced_qty,
    )


def _po_lines(connection: Connection, po_ids: Sequence[str]) -> dict[str, list[PoLine]]:
    found: dict[str, list[PoLine]] = {po_id: [] for po_id in po_ids}
    if not po_ids:
        return found
    rows = connection.execute(
        select(purchase_order_lines)
        .where(purchase_order_lines.c.po_id.in_(list(po_ids)))
        .order_by(purchase_order_lines.c.po_id, purchase_order_lines.c.line_no)
    ).all()
    for row in rows:
        found[row.po_id].append(_line_from(row))
    return found


def _read_po(connection: Connection, po_id: str, *, lock: bool = False) -> PurchaseOrder | None:
    query = select(purchase_orders).where(purchase_orders.c.po_id == po_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        return None
    return _po_from(row, _po_lines(connection, [po_id])[po_id])


def get_purchase_order(
    connection: Connection, po_id: str, *, visible: frozenset[str] | None = None
) -> PurchaseOrder:
    """The PO; one of a site outside ``visible`` is answered as not existing."""
    return fetch_document(connection, _read_po, "purchase order", po_id, visible)


def list_purchase_orders(
    connection: Connection, *, chosen: PoFilter, after: str | None, limit: int
) -> tuple[list[PurchaseOrder], str | None]:
    """A page of POs by id, and the cursor of the next page (None at the end)."""
    check_limit(limit)
    table = purchase_orders.c
    conditions: list[ColumnElement[bool]] = []
    if after is not None:
        conditions.append(table.po_id > after)
    if chosen.status is not None:
        conditions.append(table.status == chosen.status.value)
    if chosen.supplier is not None:
        conditions.append(table.supplier_code == chosen.supplier)
    conditions += site_conditions(table.site_id, chosen.site_id, chosen.visible_sites)
    if chosen.created_from is not None:
        conditions.append(table.created_at >= chosen.created_from)
    if chosen.created_to is not None:
        conditions.append(table.created_at < chosen.created_to)

    def build(rows: Sequence[Row[Any]]) -> list[PurchaseOrder]:
        lines = _po_lines(connection, [row.po_id for row in rows])
        return [_po_from(row, lines[row.po_id]) for row in rows]

    return read_page(connection, purchase_orders, table.po_id, conditions, limit=limit, build=build)


def _state(po: PurchaseOrder) -> dict[str, Any]:
    """The PO as the audit log keeps it (prices included: the log strips them per reader)."""
    data = asdict(po)
    data["lines"] = [
        {**asdict(line), "unit_price": line.unit_price, "tax_rate": line.tax_rate}
        for line in po.lines
    ]
    return data


# --- purchase orders: writing ------------------------------------------------------------


def _write_lines(
    connection: Connection,
    po_id: str,
    lines: Sequence[PoLineInput],
    *,
    sources: Sequence[tuple[str, int] | None] | None = None,
) -> None:
    if not lines:
        raise InvalidError("lines: a purchase order needs at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidError(f"lines: at most {MAX_LINES} lines")
    rows = []
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        _check_po_line(where, line)
        uom, base_qty, base_uom = base_quantity(
            connection, where, line.item_code, line.qty, line.uom
        )
        source = sources[index] if sources else None
        rows.append(
            {
                "po_id": po_id,
                "line_no": index + 1,
                "item_code": line.item_code,
                "qty": line.qty,
                "uom": uom,
                "base_qty": base_qty,
                "base_uom": base_uom,
                "unit_price": line.unit_price,
                "tax_rate": line.tax_rate,
                "expected_date": line.expected_date,
                "over_tolerance": line.over_tolerance,
                "under_tolerance": line.under_tolerance,
                "received_qty": Decimal(0),
                "accepted_qty": Decimal(0),
                "quarantined_qty": Decimal(0),
                "returned_qty": Decimal(0),
                "invoiced_qty": Decimal(0),
                "req_id": None if source is None else source[0],
                "req_line": None if source is None else source[1],
            }
        )
    connection.execute(insert(purchase_order_lines), rows)


def create_purchase_order(
    connection: Connection,
    *,
    supplier: str,
    site_id: str,
    note: str,
    lines: Sequence[PoLineInput],
    created_by: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> PurchaseOrder:
    """A new draft PO. Raises ``IdempotentReplay`` for a retried request."""
    with document_write(
        connection, action="purchase_order.create", audit=audit, claim=claim
    ) as written:
        check_site(connection, site_id, visible)
        _check_supplier(connection, "supplier", supplier)
        po_id = new_document_id(
            connection, sequence="#purchase_order", prefix="PO", column=purchase_orders.c.po_id
        )
        connection.execute(
            insert(purchase_orders).values(
                po_id=po_id,
                supplier_code=supplier,
                site_id=site_id,
                status=PoStatus.DRAFT.value,
                note=note,
                created_by=created_by,
                created_at=written.now,
                version=1,
                updated_at=written.now,
            )
        )
        _write_lines(connection, po_id, lines)
        po = _read_po(connection, po_id)
        assert po is not None
        written.doc_id, written.site_id, written.after = po_id, site_id, _state(po)
    return po


def _locked_po(
    connection: Connection, po_id: str, visible: frozenset[str] | None, if_match: str | None
) -> PurchaseOrder:
    return locked_document(
        connection, _read_po, "purchase order", po_id, visible, if_match=if_match
    )


def update_purchase_order(
    connection: Connection,
    *,
    po_id: str,
    supplier: str,
    site_id: str,
    note: str,
    lines: Sequence[PoLineInput],
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
) -> PurchaseOrder:
    """Replace a draft PO's header and lines (only a draft may change)."""
    with document_write(connection, action="purchase_order.update", audit=audit) as written:
        before = _locked_po(connection, po_id, visible, if_match=if_match)
        if before.status is not PoStatus.DRAFT:
            raise DocumentStateError("purchase order", po_id, before.status, "a change", "draft")
        if any(line.req_id for line in before.lines):
            raise ConflictError(
                f"purchase order {po_id} was made from requisitions: cancel it and convert again"
            )
        check_site(connection, site_id, visible)
        _check_supplier(connection, "supplier", supplier)
        connection.execute(
            purchase_order_lines.delete().where(purchase_order_lines.c.po_id == po_id)
        )
        connection.execute(
            update(purchase_orders)
            .where(purchase_orders.c.po_id == po_id)
            .values(
                supplier_code=supplier,
                site_id=site_id,
                note=note,
                version=before.version + 1,
                updated_at=written.now,
            )
        )
        _write_lines(connection, po_id, lines)
        after = _read_po(connection, po_id)
        assert after is not None
        written.doc_id, written.site_id = po_id, site_id
        written.before, written.after = _state(before), _state(after)
    return after


def _feed_line(po: PurchaseOrder, line: PoLine) -> PoLineData:
    """A line as the site's feed carries it: no price."""
    return PoLineData(
        po_id=po.po_id,
        line_no=line.line_no,
        supplier=po.supplier,
        item_code=line.item_code,
        qty=line.base_qty,
        uom=line.base_uom,
        order_qty=line.qty,
        order_uom=line.uom,
        expected_date=line.expected_date,
        over_tolerance=line.over_tolerance,
        under_tolerance=line.under_tolerance,
    )


def _publish(writer: FeedWriter, po: PurchaseOrder, *, receivable: bool) -> None:
    for line in po.lines:
        key = f"{po.po_id} {line.line_no}"
        if receivable:
            writer.append(
                entity=FeedEntity.PO_LINE,
                key=key,
                op=ChangeOp.UPSERT,
                data=_feed_line(po, line).model_dump(mode="json"),
                site_id=po.site_id,
            )
        else:
            writer.append(
                entity=FeedEntity.PO_LINE,
                key=key,
                op=ChangeOp.DELETE,
                data=None,
                site_id=po.site_id,
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PoCommand(CommandGuard):
    """A command on the purchase order ``po_id``."""

    po_id: str


@contextmanager
def _po_command(
    connection: Connection, command: PoCommand, verb: str
) -> Iterator[tuple[PurchaseOrder, FeedWriter, datetime, dict[str, Any]]]:
    """The frame every PO command shares (:func:`documents.document_write`), with the
    site's feed: an approved PO's lines are published, a cancelled or closed one's
    withdrawn. The body puts its new values in the dict."""
    with document_write(
        connection, action=f"purchase_order.{verb}", audit=command.audit, claim=command.claim
    ) as written:
        now = written.now
        with feed_writer(connection, changed_at=now) as writer:
            before = _locked_po(connection, command.po_id, command.visible, command.if_match)
            values: dict[str, Any] = {}
            yield before, writer, now, values
            connection.execute(
                update(purchase_orders)
                .where(purchase_orders.c.po_id == command.po_id)
                .values(**values, version=before.version + 1, updated_at=now)
            )
            after = _read_po(connection, command.po_id)
            assert after is not None
            if values.get("status") in (PoStatus.APPROVED.value,):
                _publish(writer, after, receivable=True)
            elif values.get("status") in (PoStatus.CANCELLED.value, PoStatus.CLOSED.value) and (
                before.status in RECEIVABLE
            ):
                _publish(writer, after, receivable=False)
        written.doc_id, written.site_id = command.po_id, after.site_id
        written.before, written.after = moved(before, after, command.reason)


def approve_purchase_order(
    connection: Connection, command: PoCommand, *, segregation: bool
) -> PurchaseOrder:
    """draft → approved; its lines reach the site. Not by its creator when ``segregation``."""
    with _po_command(connection, command, "approve") as (po, _writer, now, values):
        if po.status is not PoStatus.DRAFT:
            raise DocumentStateError("purchase order", po.po_id, po.status, "approve", "draft")
        if segregation and po.created_by == command.actor:
            raise SegregationOfDutiesError("purchase order", po.po_id, command.actor)
        values.update(status=PoStatus.APPROVED.value, approved_by=command.actor, approved_at=now)
    return get_purchase_order(connection, command.po_id)


def send_purchase_order(connection: Connection, command: PoCommand) -> PurchaseOrder:
    """approved → sent (to the supplier). Receipts may already have come (partly received):
    the PO keeps its progress and only records when it was sent."""
    with _po_command(connection, command, "send") as (po, _writer, now, values):
        if po.status is PoStatus.APPROVED:
            values.update(status=PoStatus.SENT.value, sent_at=now)
        elif po.status in (PoStatus.PARTLY_RECEIVED, PoStatus.RECEIVED) and po.sent_at is None:
            values.update(sent_at=now)
        else:
            raise DocumentStateError("purchase order", po.po_id, po.status, "send", "approved")
    return get_purchase_order(connection, command.po_id)


def cancel_purchase_order(connection: Connection, command: PoCommand) -> PurchaseOrder:
    """draft, approved or sent → cancelled, only while nothing was received."""
    with _po_command(connection, command, "cancel") as (po, _writer, now, values):
        if po.status not in (PoStatus.DRAFT, PoStatus.APPROVED, PoStatus.SENT):
            raise DocumentStateError(
                "purchase order", po.po_id, po.status, "cancel", "draft, approved or sent"
            )
        if any(line.received_qty for line in po.lines):
            raise ConflictError(
                f"purchase order {po.po_id} has receipts: it cannot be cancelled; close it"
            )
        values.update(status=PoStatus.CANCELLED.value, ended_at=now, reason=command.reason)
    return get_purchase_order(connection, command.po_id)


def close_purchase_order(connection: Connection, command: PoCommand) -> PurchaseOrder:
    """partly_received or received → closed: nothing more is expected (a short close when
    lines are still open); the site stops receiving against it at its next pull."""
    with _po_command(connection, command, "close") as (po, _writer, now, values):
        if po.status not in (PoStatus.PARTLY_RECEIVED, PoStatus.RECEIVED):
            raise DocumentStateError(
                "purchase order",
                po.po_id,
                po.status,
                "close",
                "partly_received or received (cancel one without receipts)",
            )
        values.update(status=PoStatus.CLOSED.value, ended_at=now, reason=command.reason)
    return get_purchase_order(connection, command.po_id)


# --- requisitions ------------------------------------------------------------------------


def _req_from(row: Row[Any], lines: list[ReqLine]) -> Requisition:
    return Requisition(
        req_id=row.req_id,
        site_id=row.site_id,
        status=ReqStatus(row.status),
        note=row.note,
        created_by=row.created_by,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        decided_by=row.decided_by,
        decided_at=utc(row.decided_at),
        reason=row.reason,
        version=row.version,
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        lines=lines,
    )


def _req_lines(connection: Connection, req_ids: Sequence[str]) -> dict[str, list[ReqLine]]:
    found: dict[str, list[ReqLine]] = {req_id: [] for req_id in req_ids}
    if not req_ids:
        return found
    rows = connection.execute(
        select(requisition_lines)
        .where(requisition_lines.c.req_id.in_(list(req_ids)))
        .order_by(requisition_lines.c.req_id, requisition_lines.c.line_no)
    ).all()
    for row in rows:
        found[row.req_id].append(
            ReqLine(
                line_no=row.line_no,
                item_code=row.item_code,
                qty=row.qty,
                uom=row.uom,
                base_qty=row.base_qty,
                supplier=row.supplier_code,
                expected_date=row.expected_date,
                note=row.note,
                po_id=row.po_id,
                po_line=row.po_line,
            )
        )
    return found


def _read_req(connection: Connection, req_id: str, *, lock: bool = False) -> Requisition | None:
    query = select(requisitions).where(requisitions.c.req_id == req_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    return None if row is None else _req_from(row, _req_lines(connection, [req_id])[req_id])


def get_requisition(
    connection: Connection, req_id: str, *, visible: frozenset[str] | None = None
) -> Requisition:
    return fetch_document(connection, _read_req, "requisition", req_id, visible)


def list_requisitions(
    connection: Connection,
    *,
    status: ReqStatus | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[Requisition], str | None]:
    check_limit(limit)
    table = requisitions.c
    conditions: list[ColumnElement[bool]] = []
    if after is not None:
        conditions.append(table.req_id > after)
    if status is not None:
        conditions.append(table.status == status.value)
    conditions += site_conditions(table.site_id, site_id, visible)

    def build(rows: Sequence[Row[Any]]) -> list[Requisition]:
        lines = _req_lines(connection, [row.req_id for row in rows])
        return [_req_from(row, lines[row.req_id]) for row in rows]

    return read_page(connection, requisitions, table.req_id, conditions, limit=limit, build=build)


def _write_req_lines(connection: Connection, req_id: str, lines: Sequence[ReqLineInput]) -> None:
    if not lines:
        raise InvalidError("lines: a requisition needs at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidError(f"lines: at most {MAX_LINES} lines")
    rows = []
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        uom, base_qty, _base_uom = base_quantity(
            connection, where, line.item_code, line.qty, line.uom
        )
        if line.supplier is not None:
            _check_supplier(connection, f"{where}.supplier", line.supplier)
        rows.append(
            {
                "req_id": req_id,
                "line_no": index + 1,
                "item_code": line.item_code,
                "qty": line.qty,
                "uom": uom,
                "base_qty": base_qty,
                "supplier_code": line.supplier,
                "expected_date": line.expected_date,
                "note": line.note,
            }
        )
    connection.execute(insert(requisition_lines), rows)


def create_requisition(
    connection: Connection,
    *,
    site_id: str,
    note: str,
    lines: Sequence[ReqLineInput],
    created_by: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Requisition:
    with document_write(
        connection, action="requisition.create", audit=audit, claim=claim
    ) as written:
        check_site(connection, site_id, visible)
        req_id = new_document_id(
            connection, sequence="#requisition", prefix="PR", column=requisitions.c.req_id
        )
        connection.execute(
            insert(requisitions).values(
                req_id=req_id,
                site_id=site_id,
                status=ReqStatus.DRAFT.value,
                note=note,
                created_by=created_by,
                created_at=written.now,
                version=1,
                updated_at=written.now,
            )
        )
        _write_req_lines(connection, req_id, lines)
        req = _read_req(connection, req_id)
        assert req is not None
        written.doc_id, written.site_id, written.after = req_id, site_id, asdict(req)
    return req


def update_requisition(
    connection: Connection,
    *,
    req_id: str,
    site_id: str,
    note: str,
    lines: Sequence[ReqLineInput],
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
) -> Requisition:
    with document_write(connection, action="requisition.update", audit=audit) as written:
        before = _locked_req(connection, req_id, visible, if_match=if_match)
        if before.status is not ReqStatus.DRAFT:
            raise DocumentStateError("requisition", req_id, before.status, "a change", "draft")
        check_site(connection, site_id, visible)
        connection.execute(requisition_lines.delete().where(requisition_lines.c.req_id == req_id))
        connection.execute(
            update(requisitions)
            .where(requisitions.c.req_id == req_id)
            .values(site_id=site_id, note=note, version=before.version + 1, updated_at=written.now)
        )
        _write_req_lines(connection, req_id, lines)
        after = _read_req(connection, req_id)
        assert after is not None
        written.doc_id, written.site_id = req_id, site_id
        written.before, written.after = asdict(before), asdict(after)
    return after


def _locked_req(
    connection: Connection, req_id: str, visible: frozenset[str] | None, if_match: str | None
) -> Requisition:
    return locked_document(connection, _read_req, "requisition", req_id, visible, if_match=if_match)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqCommand(CommandGuard):
    """A command on the requisition ``req_id``."""

    req_id: str


_REQ_MOVES: dict[str, tuple[frozenset[ReqStatus], ReqStatus]] = {
    "submit": (frozenset({ReqStatus.DRAFT}), ReqStatus.SUBMITTED),
    "approve": (frozenset({ReqStatus.SUBMITTED}), ReqStatus.APPROVED),
    "reject": (frozenset({ReqStatus.SUBMITTED}), ReqStatus.REJECTED),
    "cancel": (frozenset({ReqStatus.DRAFT, ReqStatus.SUBMITTED}), ReqStatus.CANCELLED),
}


def move_requisition(
    connection: Connection, command: ReqCommand, verb: str, *, segregation: bool = True
) -> Requisition:
    """submit (draft → submitted), approve or reject (submitted → approved / rejected),
    cancel (draft or submitted → cancelled)."""
    starts, end = _REQ_MOVES[verb]
    with document_write(
        connection, action=f"requisition.{verb}", audit=command.audit, claim=command.claim
    ) as written:
        now = written.now
        req = _locked_req(connection, command.req_id, command.visible, command.if_match)
        check_state("requisition", req.req_id, req.status, verb, starts)
        if verb == "approve" and segregation and req.created_by == command.actor:
            raise SegregationOfDutiesError("requisition", req.req_id, command.actor)
        decided = {} if verb == "submit" else {"decided_by": command.actor, "decided_at": now}
        connection.execute(
            update(requisitions)
            .where(requisitions.c.req_id == req.req_id)
            .values(
                status=end.value,
                version=req.version + 1,
                updated_at=now,
                reason=command.reason if verb in ("reject", "cancel") else req.reason,
                **decided,
            )
        )
        written.doc_id, written.site_id = req.req_id, req.site_id
        written.before = {"status": req.status.value, "version": req.version}
        written.after = {"status": end.value, "version": req.version + 1, "reason": command.reason}
    return get_requisition(connection, command.req_id)


def convert_requisitions(
    connection: Connection,
    *,
    req_ids: Sequence[str],
    created_by: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> list[PurchaseOrder]:
    """Approved requisitions → draft POs, one per (supplier, site), lines in order.

    Every line needs a supplier; the price is the item's purchase price (master data),
    to be checked on the draft. The requisitions become ``ordered`` and each line names
    the PO line it became. Raises ``IdempotentReplay`` (ids comma-separated) on a retry.
    """
    if not req_ids or len(set(req_ids)) != len(req_ids):
        raise InvalidError("requisition_ids: give each requisition once, at least one")
    with document_write(
        connection, action="requisition.convert", audit=audit, claim=claim
    ) as written:
        now = written.now
        groups: dict[tuple[str, str], list[tuple[ReqLine, str]]] = {}
        reqs: list[Requisition] = []
        for req_id in req_ids:
            req = locked_document(connection, _read_req, "requisition", req_id, visible)
            if req.status is not ReqStatus.APPROVED:
                raise DocumentStateError("requisition", req_id, req.status, "convert", "approved")
            reqs.append(req)
            for line in req.lines:
                if line.supplier is None:
                    raise InvalidError(
                        f"requisition {req_id} line {line.line_no}: no supplier; "
                        "give one before converting"
                    )
                _check_supplier(
                    connection, f"requisition {req_id} line {line.line_no}", line.supplier
                )
                groups.setdefault((line.supplier, req.site_id), []).append((line, req_id))
        made: list[str] = []
        for (supplier, site_id), group in groups.items():
            po_id = new_document_id(
                connection,
                sequence="#purchase_order",
                prefix="PO",
                column=purchase_orders.c.po_id,
            )
            connection.execute(
                insert(purchase_orders).values(
                    po_id=po_id,
                    supplier_code=supplier,
                    site_id=site_id,
                    status=PoStatus.DRAFT.value,
                    note="from requisitions " + ", ".join(sorted({r for _l, r in group})),
                    created_by=created_by,
                    created_at=now,
                    version=1,
                    updated_at=now,
                )
            )
            prices = dict(
                connection.execute(
                    select(items.c.item_code, items.c.purchase_price).where(
                        items.c.item_code.in_({line.item_code for line, _r in group})
                    )
                ).all()
            )
            _write_lines(
                connection,
                po_id,
                [
                    PoLineInput(
                        item_code=line.item_code,
                        qty=line.qty,
                        uom=line.uom,
                        unit_price=prices.get(line.item_code),
                        expected_date=line.expected_date,
                    )
                    for line, _r in group
                ],
                sources=[(req_id, line.line_no) for line, req_id in group],
            )
            for number, (line, req_id) in enumerate(group, start=1):
                connection.execute(
                    update(requisition_lines)
                    .where(
                        requisition_lines.c.req_id == req_id,
                        requisition_lines.c.line_no == line.line_no,
                    )
                    .values(po_id=po_id, po_line=number)
                )
            made.append(po_id)
        for req in reqs:
            connection.execute(
                update(requisitions)
                .where(requisitions.c.req_id == req.req_id)
                .values(status=ReqStatus.ORDERED.value, version=req.version + 1, updated_at=now)
            )
        written.doc_id, written.audit_id = ",".join(made), ",".join(req_ids)[:200]
        written.after = {"purchase_orders": made, "requisitions": list(req_ids)}
    return [get_purchase_order(connection, po_id) for po_id in made]


# --- exceptions ----------------------------------------------------------------------------


def _exception_from(row: Row[Any]) -> PurchaseException:
    return PurchaseException(
        exception_id=row.exception_id,
        kind=row.kind,
        site_id=row.site_id,
        po_id=row.po_id,
        line_no=row.line_no,
        event_id=row.event_id,
        qty=row.qty,
        detail=row.detail,
        status=row.status,
        raised_at=utc(row.raised_at),  # type: ignore[arg-type]
        resolved_by=row.resolved_by,
        resolved_at=utc(row.resolved_at),
        resolution=row.resolution,
    )


def list_exceptions(
    connection: Connection,
    *,
    status: str | None,
    site_id: str | None,
    po_id: str | None,
    visible: frozenset[str] | None,
    after: int | None,
    limit: int,
) -> tuple[list[PurchaseException], int | None]:
    check_limit(limit)
    table = purchase_exceptions.c
    conditions: list[ColumnElement[bool]] = []
    if after is not None:
        conditions.append(table.exception_id > after)
    if status is not None:
        conditions.append(table.status == status)
    if po_id is not None:
        conditions.append(table.po_id == po_id)
    conditions += site_conditions(table.site_id, site_id, visible)
    return read_page(
        connection,
        purchase_exceptions,
        table.exception_id,
        conditions,
        limit=limit,
        build=lambda rows: [_exception_from(row) for row in rows],
    )


def _read_exception(
    connection: Connection, exception_id: int, *, lock: bool = False
) -> PurchaseException | None:
    query = select(purchase_exceptions).where(purchase_exceptions.c.exception_id == exception_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    return None if row is None else _exception_from(row)


def get_exception(
    connection: Connection, exception_id: int, *, visible: frozenset[str] | None
) -> PurchaseException:
    with read_snapshot(connection):
        found = _read_exception(connection, exception_id)
    return visible_document(found, "exception", str(exception_id), visible)


def resolve_exception(
    connection: Connection,
    *,
    exception_id: int,
    resolution: str,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> PurchaseException:
    """open → resolved, with what the person decided (a resolved one is a 409)."""
    with document_write(
        connection, action="purchase_exception.resolve", audit=audit, claim=claim
    ) as written:
        found = visible_document(
            _read_exception(connection, exception_id, lock=True),
            "exception",
            str(exception_id),
            visible,
        )
        if found.status != "open":
            raise ConflictError(f"exception {exception_id} is resolved already")
        connection.execute(
            update(purchase_exceptions)
            .where(purchase_exceptions.c.exception_id == exception_id)
            .values(
                status="resolved", resolved_by=actor, resolved_at=written.now, resolution=resolution
            )
        )
        written.doc_id, written.site_id = str(exception_id), found.site_id
        written.before = {"status": "open"}
        written.after = {"status": "resolved", "resolution": resolution}
    return get_exception(connection, exception_id, visible=visible)


# --- for the other purchasing documents (services.receiving) -------------------------------


def read_po(connection: Connection, po_id: str, *, lock: bool = False) -> PurchaseOrder | None:
    """The PO with its lines (locked ``FOR UPDATE`` with ``lock``), or None."""
    return _read_po(connection, po_id, lock=lock)
