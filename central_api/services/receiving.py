"""Receiving at central (采购入库), QC, purchase returns (采购退货), supplier invoices (发票核对).

Documents are intentions; stock moves by events. Here the events are *central's own*
(:mod:`central_api.services.central_events`), each naming its PO line, so the
``po_progress`` projection moves the line exactly as it does for an edge's receipt:

* a **receipt** line books a ``receipt`` into the location its QC status says: an
  accepted line into a storage or receiving location of the site, a quarantined one into
  the site's quarantine location (待检), a rejected one into quarantine and at once an
  ``issue`` back to the supplier (it came, so it counts as received, and as returned);
* a **QC release** books ``transfer_out`` of the quarantine location and ``transfer_in``
  into a storage location; a **QC reject** books an ``issue`` out of quarantine;
* a **purchase return** books ``issue`` events out of the locations the goods are in.

Unlike an edge's facts, these are validated before they exist: a receipt beyond the
line's over-tolerance, a return of more than is left, or a movement that would take a
balance below zero is refused with a 409 that names the line.

A **supplier invoice** moves no stock. Each line is matched three ways: the invoice's
price against the PO line's price (within the price tolerance, percent), the quantity
invoiced so far against the accepted quantity (within the quantity tolerance, percent),
and the line's amount against its quantity × price. An invoice whose every line matches
is ``matched``; any difference holds it (``held``), with the differences on each line,
until finance approves it with a reason or disputes it. Nothing is accepted silently.
Matched and approved invoices count in the PO line's ``invoiced_qty``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Table, insert, select, update

from central_api.errors import ConflictError, InvalidError, NotFoundError
from central_api.models.ledger import ledger_events
from central_api.models.master import locations
from central_api.models.purchasing import (
    edge_qc_decisions,
    purchase_order_lines,
    purchase_orders,
    purchase_receipt_lines,
    purchase_receipts,
    purchase_return_lines,
    purchase_returns,
    supplier_invoice_lines,
    supplier_invoices,
)
from central_api.services import central_events
from central_api.services.audit import AuditContext
from central_api.services.central_events import Movement
from central_api.services.documents import (
    MAX_LINES,
    MAX_PAGE,
    CommandGuard,
    DocCommand,
    DocumentStateError,
    SegregationOfDutiesError,
    UnknownDocumentError,
    auditable_rows,
    base_quantity,
    check_limit,
    check_state,
    document_write,
    fetch_document,
    locked_document,
    new_document_id,
    plain,
    read_page,
    site_conditions,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import Projections
from central_api.services.purchasing import (
    RECEIVABLE,
    PoLine,
    PoStatus,
    PurchaseOrder,
    read_po,
)
from jxc.contract import MAX_ABS_AMOUNT, EventKind

PURCHASE_ORDER = "purchase_order"
STOCK_KINDS = frozenset({"storage", "receiving"})
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")
_MICRO = Decimal("0.000001")
"""Prices are stored in micro-units (``MicroUnits``): a converted price is rounded to one."""


class QcStatus(StrEnum):
    ACCEPTED = "accepted"
    QUARANTINE = "quarantine"
    RELEASED = "released"
    """Was in quarantine; a person released it into stock."""
    REJECTED = "rejected"
    """Returned to the supplier, at receipt or from quarantine."""


class InvoiceStatus(StrEnum):
    MATCHED = "matched"
    HELD = "held"
    APPROVED = "approved"
    DISPUTED = "disputed"


# --- inputs and answers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiptLineInput:
    po_line: int
    qty: Decimal
    uom: str | None = None
    qc: QcStatus = QcStatus.ACCEPTED
    location: str | None = None
    lot: str | None = None
    expiry: date | None = None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    line_no: int
    po_line: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    base_uom: str
    lot: str | None
    expiry: date | None
    location: str
    qc_status: QcStatus
    qc_by: str | None
    qc_at: datetime | None
    qc_reason: str | None


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    po_id: str
    site_id: str
    note: str
    created_by: str
    created_at: datetime
    version: int
    updated_at: datetime
    lines: list[ReceiptLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReturnLineInput:
    po_line: int
    qty: Decimal
    location: str
    uom: str | None = None
    lot: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnLine:
    line_no: int
    po_line: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    lot: str | None
    location: str


@dataclass(frozen=True, slots=True)
class PurchaseReturn:
    return_id: str
    po_id: str
    site_id: str
    reason: str
    created_by: str
    created_at: datetime
    version: int
    lines: list[ReturnLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InvoiceLineInput:
    po_line: int
    qty: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    amount: Decimal | None = None
    uom: str | None = None
    """The unit of ``qty`` and ``unit_price``; None: the PO line's."""


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_no: int
    po_line: int
    qty: Decimal
    base_qty: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    amount: Decimal
    po_price: Decimal | None
    accepted_qty: Decimal
    price_diff: Decimal | None
    qty_diff: Decimal
    amount_diff: Decimal | None
    outcome: str
    uom: str | None = None
    """The unit of ``qty``, ``unit_price`` and ``po_price``; None: the PO line's."""

    @property
    def tax_amount(self) -> Decimal:
        return plain(self.amount * self.tax_rate)


@dataclass(frozen=True, slots=True)
class Invoice:
    invoice_id: str
    invoice_no: str
    supplier: str
    po_id: str
    site_id: str
    status: InvoiceStatus
    created_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    version: int
    updated_at: datetime
    lines: list[InvoiceLine] = field(default_factory=list)

    @property
    def amount(self) -> Decimal:
        return plain(sum((line.amount for line in self.lines), _ZERO))

    @property
    def tax_amount(self) -> Decimal:
        return plain(sum((line.tax_amount for line in self.lines), _ZERO))


# --- shared steps ------------------------------------------------------------------------


def _site_of_po(connection: Connection, po_id: str, visible: frozenset[str] | None) -> str:
    site = connection.execute(
        select(purchase_orders.c.site_id).where(purchase_orders.c.po_id == po_id)
    ).scalar_one_or_none()
    if site is None or (visible is not None and site not in visible):
        raise UnknownDocumentError("purchase order", po_id)
    return str(site)


def _locked_po_for_stock(
    connection: Connection, po_id: str, visible: frozenset[str] | None, now: datetime
) -> PurchaseOrder:
    """The PO locked after its site's stream (the order ingest takes them in)."""
    site = _site_of_po(connection, po_id, visible)
    central_events.lock_site(connection, site, now=now)
    po = read_po(connection, po_id, lock=True)
    assert po is not None
    return po


def _po_line(po: PurchaseOrder, where: str, line_no: int) -> PoLine:
    for line in po.lines:
        if line.line_no == line_no:
            return line
    raise InvalidError(f"{where}.po_line: purchase order {po.po_id} has no line {line_no}")


def _stock_location(connection: Connection, site_id: str, where: str, code: str | None) -> str:
    if code is None:
        raise InvalidError(f"{where}.location: say which storage or receiving location")
    row = connection.execute(
        select(locations.c.kind, locations.c.active).where(
            locations.c.site_id == site_id, locations.c.code == code
        )
    ).one_or_none()
    if row is None or not row.active:
        raise InvalidError(f"{where}.location: site {site_id} has no active location {code!r}")
    if row.kind not in STOCK_KINDS:
        raise InvalidError(
            f"{where}.location: {code!r} is a {row.kind} location; accepted goods go to "
            "a storage or receiving location"
        )
    return code


def _any_location(connection: Connection, site_id: str, where: str, code: str) -> str:
    found = connection.execute(
        select(locations.c.code).where(locations.c.site_id == site_id, locations.c.code == code)
    ).first()
    if found is None:
        raise InvalidError(f"{where}.location: site {site_id} has no location {code!r}")
    return code


def quarantine_location(connection: Connection, site_id: str) -> str:
    """The site's quarantine location (the first active one by code), or a 409."""
    code = connection.execute(
        select(locations.c.code)
        .where(
            locations.c.site_id == site_id,
            locations.c.kind == "quarantine",
            locations.c.active.is_(True),
        )
        .order_by(locations.c.code)
        .limit(1)
    ).scalar_one_or_none()
    if code is None:
        raise ConflictError(
            f"site {site_id} has no active quarantine location: add one (kind quarantine) "
            "in master data first"
        )
    return str(code)


def _bump(connection: Connection, table: Table, key: ColumnElement[bool], **values: Any) -> None:
    connection.execute(update(table).where(key).values(version=table.c.version + 1, **values))


def _qc_moves(
    line: PoLine,
    po_id: str,
    qty: Decimal,
    uom: str,
    *,
    source: str,
    target: str | None,
    lot: str | None,
    expiry: date | None,
) -> list[Movement]:
    """A QC decision as stock moves naming the PO line: released goods go from quarantine
    to ``target`` (a transfer, so the line's ``accepted_qty`` rises), rejected ones leave
    quarantine (an issue: ``returned_qty``) when ``target`` is None."""
    stock = {"lot": lot, "expiry": expiry, "uom": uom}
    if target is None:
        return [_movement(EventKind.ISSUE, line, po_id, -qty, location=source, **stock)]
    return [
        _movement(EventKind.TRANSFER_OUT, line, po_id, -qty, location=source, **stock),
        _movement(EventKind.TRANSFER_IN, line, po_id, qty, location=target, **stock),
    ]


def _movement(kind: EventKind, line: PoLine, po_id: str, qty: Decimal, **where: Any) -> Movement:
    where.setdefault("uom", line.base_uom)
    return Movement(
        kind=kind,
        item=line.item_code,
        qty=qty,
        doc_type=PURCHASE_ORDER,
        doc_id=po_id,
        doc_line=line.line_no,
        **where,
    )


def _page_conditions(
    table: Table,
    key: Any,
    *,
    after: str | None,
    po_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    limit: int,
) -> list[ColumnElement[bool]]:
    check_limit(limit)
    conditions: list[ColumnElement[bool]] = []
    if after is not None:
        conditions.append(key > after)
    if po_id is not None:
        conditions.append(table.c.po_id == po_id)
    return conditions + site_conditions(table.c.site_id, site_id, visible)


# --- receipts ---------------------------------------------------------------------------


def _read_receipt(connection: Connection, receipt_id: str, *, lock: bool = False) -> Receipt | None:
    query = select(purchase_receipts).where(purchase_receipts.c.receipt_id == receipt_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        return None
    return _receipts_with_lines(connection, [row])[0]


def _receipts_with_lines(connection: Connection, rows: Sequence[Any]) -> list[Receipt]:
    by_id: dict[str, list[ReceiptLine]] = defaultdict(list)
    ids = [row.receipt_id for row in rows]
    if ids:
        for line in connection.execute(
            select(purchase_receipt_lines)
            .where(purchase_receipt_lines.c.receipt_id.in_(ids))
            .order_by(purchase_receipt_lines.c.receipt_id, purchase_receipt_lines.c.line_no)
        ):
            by_id[line.receipt_id].append(
                ReceiptLine(
                    line_no=line.line_no,
                    po_line=line.po_line,
                    item_code=line.item_code,
                    qty=line.qty,
                    uom=line.uom,
                    base_qty=line.base_qty,
                    base_uom=line.base_uom,
                    lot=line.lot,
                    expiry=line.expiry,
                    location=line.location,
                    qc_status=QcStatus(line.qc_status),
                    qc_by=line.qc_by,
                    qc_at=line.qc_at,
                    qc_reason=line.qc_reason,
                )
            )
    return [
        Receipt(
            receipt_id=row.receipt_id,
            po_id=row.po_id,
            site_id=row.site_id,
            note=row.note,
            created_by=row.created_by,
            created_at=row.created_at,
            version=row.version,
            updated_at=row.updated_at,
            lines=by_id[row.receipt_id],
        )
        for row in rows
    ]


def get_receipt(
    connection: Connection, receipt_id: str, *, visible: frozenset[str] | None = None
) -> Receipt:
    return fetch_document(connection, _read_receipt, "purchase receipt", receipt_id, visible)


def list_receipts(
    connection: Connection,
    *,
    po_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[Receipt], str | None]:
    key = purchase_receipts.c.receipt_id
    conditions = _page_conditions(
        purchase_receipts,
        key,
        after=after,
        po_id=po_id,
        site_id=site_id,
        visible=visible,
        limit=limit,
    )
    return read_page(
        connection,
        purchase_receipts,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _receipts_with_lines(connection, rows),
    )


def create_receipt(
    connection: Connection,
    *,
    po_id: str,
    note: str,
    lines: Sequence[ReceiptLineInput],
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    projections: Projections | None,
    claim: IdempotencyClaim | None = None,
) -> Receipt:
    """A receipt against ``po_id``'s lines, booked at once. Raises ``IdempotentReplay``."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    with document_write(
        connection, action="purchase_receipt.create", audit=audit, claim=claim
    ) as written:
        now = written.now
        po = _locked_po_for_stock(connection, po_id, visible, now)
        if po.status not in RECEIVABLE:
            raise DocumentStateError(
                "purchase order",
                po_id,
                po.status,
                "a receipt",
                "approved, sent, partly_received or received",
            )
        site = po.site_id
        quarantine: str | None = None
        pending: dict[int, Decimal] = defaultdict(Decimal)
        rows: list[dict[str, Any]] = []
        moves: list[Movement] = []
        for index, given in enumerate(lines):
            where = f"lines[{index}]"
            line = _po_line(po, where, given.po_line)
            uom, base, base_uom = base_quantity(
                connection, where, line.item_code, given.qty, given.uom
            )
            pending[line.line_no] += base
            limit = line.base_qty * (1 + line.over_tolerance / _HUNDRED)
            if line.received_qty + pending[line.line_no] > limit:
                raise ConflictError(
                    f"{where}: {po_id} line {line.line_no} would have "
                    f"{plain(line.received_qty + pending[line.line_no])} {line.base_uom} "
                    f"received of {plain(line.base_qty)} ordered (at most {plain(limit)} "
                    f"with its over-tolerance of {plain(line.over_tolerance)} %)"
                )
            if given.qc is QcStatus.ACCEPTED:
                location = _stock_location(connection, site, where, given.location)
            elif given.qc in (QcStatus.QUARANTINE, QcStatus.REJECTED):
                quarantine = quarantine or quarantine_location(connection, site)
                location = quarantine
            else:
                raise InvalidError(f"{where}.qc: accepted, quarantine or rejected")
            stock = {"location": location, "lot": given.lot, "expiry": given.expiry}
            moves.append(_movement(EventKind.RECEIPT, line, po_id, base, **stock))
            if given.qc is QcStatus.REJECTED:
                moves.append(_movement(EventKind.ISSUE, line, po_id, -base, **stock))
            rows.append(
                {
                    "line_no": index + 1,
                    "po_line": line.line_no,
                    "item_code": line.item_code,
                    "qty": given.qty,
                    "uom": uom,
                    "base_qty": base,
                    "base_uom": base_uom,
                    "lot": given.lot,
                    "expiry": given.expiry,
                    "location": location,
                    "qc_status": given.qc.value,
                    "qc_by": None if given.qc is QcStatus.QUARANTINE else actor,
                    "qc_at": None if given.qc is QcStatus.QUARANTINE else now,
                    "qc_reason": None,
                }
            )
        receipt_id = new_document_id(
            connection,
            sequence="#receipt",
            prefix="GR",
            column=purchase_receipts.c.receipt_id,
        )
        connection.execute(
            insert(purchase_receipts).values(
                receipt_id=receipt_id,
                po_id=po_id,
                site_id=site,
                note=note,
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        connection.execute(
            insert(purchase_receipt_lines), [{"receipt_id": receipt_id, **row} for row in rows]
        )
        central_events.book(
            connection,
            site_id=site,
            movements=moves,
            actor=actor,
            ref=receipt_id,
            now=now,
            projections=projections,
        )
        written.doc_id, written.site_id = receipt_id, site
        written.after = {
            "po_id": po_id,
            "lines": [
                {
                    key: str(value) if isinstance(value, Decimal | date) else value
                    for key, value in row.items()
                    if key not in ("qc_at",)
                }
                for row in rows
            ],
        }
        found = _read_receipt(connection, receipt_id)
        assert found is not None
    return found


@dataclass(frozen=True, slots=True)
class QcCommand:
    """Release or reject one quarantined receipt line."""

    command: DocCommand
    line_no: int
    location: str | None = None
    """Where released goods go (a storage or receiving location); unused by a reject."""


def decide_quarantine(
    connection: Connection, order: QcCommand, verb: str, *, projections: Projections | None
) -> Receipt:
    """``release`` (quarantine → stock) or ``reject`` (quarantine → back to the supplier)."""
    command = order.command
    with document_write(
        connection, action=f"purchase_receipt.{verb}", audit=command.audit, claim=command.claim
    ) as written:
        now = written.now
        head = connection.execute(
            select(purchase_receipts.c.site_id, purchase_receipts.c.po_id).where(
                purchase_receipts.c.receipt_id == command.doc_id
            )
        ).one_or_none()
        if head is None or (command.visible is not None and head.site_id not in command.visible):
            raise UnknownDocumentError("purchase receipt", command.doc_id)
        central_events.lock_site(connection, head.site_id, now=now)
        receipt = locked_document(
            connection,
            _read_receipt,
            "purchase receipt",
            command.doc_id,
            command.visible,
            if_match=command.if_match,
        )
        line = next((each for each in receipt.lines if each.line_no == order.line_no), None)
        if line is None:
            raise InvalidError(f"line_no: receipt {receipt.receipt_id} has no line {order.line_no}")
        if line.qc_status is not QcStatus.QUARANTINE:
            raise DocumentStateError(
                "purchase receipt line",
                f"{receipt.receipt_id}/{line.line_no}",
                line.qc_status,
                verb,
                "quarantine",
            )
        po = read_po(connection, receipt.po_id)
        assert po is not None
        po_line = _po_line(po, "line_no", line.po_line)
        target = None
        if verb == "release":
            target = _stock_location(connection, receipt.site_id, "body", order.location)
            values: dict[str, Any] = {"qc_status": QcStatus.RELEASED.value, "location": target}
        else:
            values = {"qc_status": QcStatus.REJECTED.value}
        moves = _qc_moves(
            po_line,
            po.po_id,
            line.base_qty,
            line.base_uom,
            source=line.location,
            target=target,
            lot=line.lot,
            expiry=line.expiry,
        )
        central_events.book(
            connection,
            site_id=receipt.site_id,
            movements=moves,
            actor=command.actor,
            ref=f"{receipt.receipt_id}/{line.line_no} {verb}",
            now=now,
            projections=projections,
        )
        connection.execute(
            update(purchase_receipt_lines)
            .where(
                purchase_receipt_lines.c.receipt_id == receipt.receipt_id,
                purchase_receipt_lines.c.line_no == line.line_no,
            )
            .values(qc_by=command.actor, qc_at=now, qc_reason=command.reason, **values)
        )
        _bump(
            connection,
            purchase_receipts,
            purchase_receipts.c.receipt_id == receipt.receipt_id,
            updated_at=now,
        )
        written.doc_id, written.site_id = receipt.receipt_id, receipt.site_id
        written.before = {"line_no": line.line_no, "qc_status": line.qc_status.value}
        written.after = {"line_no": line.line_no, **values, "reason": command.reason}
        found = _read_receipt(connection, receipt.receipt_id)
        assert found is not None
    return found


# --- QC of the cartons an edge put in quarantine ----------------------------------------


class EdgeQc(StrEnum):
    """Where an edge's receipt stands in QC (None: it was not booked into quarantine)."""

    PENDING = "pending"
    RELEASED = "released"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class EdgeQcDecision:
    """A person's QC decision at central on one carton an edge booked into quarantine."""

    event_id: str
    site_id: str
    seq: int
    po_id: str
    line_no: int
    item: str
    lot: str | None
    qty: Decimal
    uom: str
    quarantine: str
    verdict: EdgeQc
    location: str | None
    reason: str
    decided_by: str
    decided_at: datetime
    version: int = 1
    """A decision is made once and never changes (the ETag every answer carries)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeQcCommand(CommandGuard):
    """Release (to ``location``) or reject the carton the edge event ``event_id`` booked."""

    event_id: str
    location: str | None = None


def _edge_receipt(
    connection: Connection, event_id: str, visible: frozenset[str] | None
) -> Row[Any]:
    found = connection.execute(
        select(ledger_events).where(ledger_events.c.event_id == event_id)
    ).one_or_none()
    if found is None or (visible is not None and found.site_id not in visible):
        raise UnknownDocumentError("edge event", event_id)
    if found.kind != EventKind.RECEIPT.value or found.doc_type != PURCHASE_ORDER:
        raise ConflictError(
            f"edge event {event_id} is a {found.kind}"
            + ("" if found.doc_id is None else f" of {found.doc_type} {found.doc_id}")
            + ": QC decides receipts booked against a purchase order line"
        )
    return found


def get_edge_qc(
    connection: Connection, event_id: str, *, visible: frozenset[str] | None = None
) -> EdgeQcDecision:
    """The decision on an edge carton (404 while there is none)."""
    with read_snapshot(connection):
        event = _edge_receipt(connection, event_id, visible)
        row = connection.execute(
            select(edge_qc_decisions).where(edge_qc_decisions.c.event_id == event_id)
        ).one_or_none()
    if row is None:
        raise NotFoundError(f"edge event {event_id} has no QC decision yet")
    return _edge_decision(event, row)


def _edge_decision(event: Row[Any], row: Row[Any]) -> EdgeQcDecision:
    return EdgeQcDecision(
        event_id=event.event_id,
        site_id=event.site_id,
        seq=event.seq,
        po_id=str(event.doc_id),
        line_no=int(event.doc_line),
        item=event.item,
        lot=event.lot,
        qty=event.qty,
        uom=event.uom,
        quarantine=event.location,
        verdict=EdgeQc(row.verdict),
        location=row.location,
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=utc(row.decided_at) or row.decided_at,
    )


def decide_edge_quarantine(
    connection: Connection, order: EdgeQcCommand, verb: str, *, projections: Projections | None
) -> EdgeQcDecision:
    """``release`` or ``reject`` a carton an edge's receiving station put in quarantine.

    The station books a doubtful carton (short weight, expired or short-dated lot,
    over-receipt...) into the site's quarantine location with its reason; the goods are
    counted in the line's ``quarantined_qty`` until a person decides. The decision is taken
    at central on the whole carton, once: the moves are central's own events naming the
    same PO line (as for a receipt entered here), so ``po_progress`` moves the line from
    quarantined to accepted, or to returned. A carton already moved out of quarantine at
    the edge is refused by the balance check of :func:`central_events.book` (409).
    """
    if not order.reason:
        raise InvalidError("reason: say why the carton passes or fails QC")
    with document_write(
        connection, action=f"purchase_receipt.{verb}", audit=order.audit, claim=order.claim
    ) as written:
        now = written.now
        event = _edge_receipt(connection, order.event_id, order.visible)
        central_events.lock_site(connection, event.site_id, now=now)
        decided = connection.execute(
            select(edge_qc_decisions.c.verdict).where(
                edge_qc_decisions.c.event_id == event.event_id
            )
        ).scalar_one_or_none()
        if decided is not None:
            raise DocumentStateError("edge carton", event.event_id, decided, verb, "pending")
        kind = connection.execute(
            select(locations.c.kind).where(
                locations.c.site_id == event.site_id, locations.c.code == event.location
            )
        ).scalar_one_or_none()
        if kind != "quarantine":
            raise ConflictError(
                f"edge event {event.event_id} booked its carton into {event.location!r}, "
                "which is not a quarantine location: there is no QC decision to take"
            )
        po = read_po(connection, str(event.doc_id))
        if po is None:
            raise ConflictError(f"edge event {event.event_id} names an unknown PO {event.doc_id}")
        po_line = _po_line(po, "event", int(event.doc_line))
        target = None
        if verb == "release":
            target = _stock_location(connection, event.site_id, "body", order.location)
        central_events.book(
            connection,
            site_id=event.site_id,
            movements=_qc_moves(
                po_line,
                po.po_id,
                event.qty,
                event.uom,
                source=event.location,
                target=target,
                lot=event.lot,
                expiry=event.expiry,
            ),
            actor=order.actor,
            ref=f"{event.site_id}/{event.seq} {verb}",
            now=now,
            projections=projections,
        )
        verdict = EdgeQc.RELEASED if target else EdgeQc.REJECTED
        values = {
            "event_id": event.event_id,
            "site_id": event.site_id,
            "po_id": po.po_id,
            "verdict": verdict.value,
            "location": target,
            "reason": order.reason,
            "decided_by": order.actor,
            "decided_at": now,
        }
        connection.execute(insert(edge_qc_decisions).values(**values))
        written.doc_id, written.site_id = event.event_id, event.site_id
        written.before = {"qc": EdgeQc.PENDING.value, "location": event.location}
        written.after = {"qc": verdict.value, "location": target, "reason": order.reason}
        row = connection.execute(
            select(edge_qc_decisions).where(edge_qc_decisions.c.event_id == event.event_id)
        ).one()
    return _edge_decision(event, row)


def edge_qc_states(
    connection: Connection, site_id: str, events: Sequence[tuple[str, str]]
) -> dict[str, EdgeQc]:
    """The QC state of those ``(event_id, location)`` edge receipts of ``site_id`` that
    went into a quarantine location: pending, or the decision taken."""
    if not events:
        return {}
    quarantines = set(
        connection.execute(
            select(locations.c.code).where(
                locations.c.site_id == site_id, locations.c.kind == "quarantine"
            )
        ).scalars()
    )
    held = [event_id for event_id, location in events if location in quarantines]
    if not held:
        return {}
    decided = dict(
        connection.execute(
            select(edge_qc_decisions.c.event_id, edge_qc_decisions.c.verdict).where(
                edge_qc_decisions.c.event_id.in_(held)
            )
        ).all()
    )
    return {event_id: EdgeQc(decided.get(event_id, EdgeQc.PENDING.value)) for event_id in held}


@dataclass(frozen=True, slots=True)
class EdgeCarton:
    """A carton an edge booked against a PO line, as QC sees it."""

    event_id: str
    site_id: str
    seq: int
    occurred_at: datetime
    po_id: str
    line_no: int
    item: str
    lot: str | None
    expiry: date | None
    qty: Decimal
    uom: str
    location: str
    ref: str | None
    """The station's reason (``quarantine <code>: <text>``), as the operator saw it."""
    qc: EdgeQc | None = EdgeQc.PENDING
    """None: not booked into a quarantine location, so there is nothing to decide."""
    decision: EdgeQcDecision | None = None


def pending_edge_cartons(
    connection: Connection,
    *,
    visible: frozenset[str] | None,
    site_id: str | None = None,
    po_id: str | None = None,
    limit: int = MAX_PAGE,
) -> list[EdgeCarton]:
    """The QC work list: every edge receipt against a PO line booked into one of its
    site's quarantine locations with no decision yet, oldest first, of ``visible`` sites.

    A carton the edge has since moved out of quarantine itself still shows (central
    cannot know without reading balances per carton); deciding it is refused with 409
    by the balance check, which says so."""
    check_limit(limit)
    quarantine = locations.alias("quarantine")
    query = (
        select(
            *(
                ledger_events.c[name]
                for name in (
                    "event_id",
                    "site_id",
                    "seq",
                    "occurred_at",
                    "item",
                    "lot",
                    "expiry",
                    "qty",
                    "uom",
                    "location",
                    "ref",
                    "doc_id",
                    "doc_line",
                )
            )
        )
        .select_from(
            ledger_events.join(
                quarantine,
                (quarantine.c.site_id == ledger_events.c.site_id)
                & (quarantine.c.code == ledger_events.c.location)
                & (quarantine.c.kind == "quarantine"),
            ).outerjoin(edge_qc_decisions, edge_qc_decisions.c.event_id == ledger_events.c.event_id)
        )
        .where(
            ledger_events.c.doc_id.is_not(None),
            ledger_events.c.doc_type == PURCHASE_ORDER,
            ledger_events.c.kind == EventKind.RECEIPT.value,
            edge_qc_decisions.c.event_id.is_(None),
        )
        .order_by(ledger_events.c.occurred_at, ledger_events.c.site_id, ledger_events.c.seq)
        .limit(limit)
    )
    if visible is not None:
        query = query.where(ledger_events.c.site_id.in_(sorted(visible)))
    if site_id:
        query = query.where(ledger_events.c.site_id == site_id)
    if po_id:
        query = query.where(ledger_events.c.doc_id == po_id)
    with read_snapshot(connection):
        rows = connection.execute(query).all()
    return [_carton(row) for row in rows]


def get_edge_carton(
    connection: Connection, event_id: str, *, visible: frozenset[str] | None
) -> EdgeCarton:
    """One edge receipt against a PO line with where it stands in QC (404 for another
    site's, 409 for an event that is no such receipt)."""
    with read_snapshot(connection):
        event = _edge_receipt(connection, event_id, visible)
        state = edge_qc_states(connection, event.site_id, [(event.event_id, event.location)])
        row = connection.execute(
            select(edge_qc_decisions).where(edge_qc_decisions.c.event_id == event_id)
        ).one_or_none()
    return _carton(
        event,
        qc=state.get(event.event_id),
        decision=None if row is None else _edge_decision(event, row),
    )


def _carton(row: Row[Any], **qc: Any) -> EdgeCarton:
    return EdgeCarton(
        event_id=row.event_id,
        site_id=row.site_id,
        seq=row.seq,
        occurred_at=utc(row.occurred_at) or row.occurred_at,
        po_id=str(row.doc_id),
        line_no=int(row.doc_line),
        item=row.item,
        lot=row.lot,
        expiry=row.expiry,
        qty=row.qty,
        uom=row.uom,
        location=row.location,
        ref=row.ref,
        **qc,
    )


# --- purchase returns -----------------------------------------------------------------


def _returns_with_lines(connection: Connection, rows: Sequence[Any]) -> list[PurchaseReturn]:
    by_id: dict[str, list[ReturnLine]] = defaultdict(list)
    ids = [row.return_id for row in rows]
    if ids:
        for line in connection.execute(
            select(purchase_return_lines)
            .where(purchase_return_lines.c.return_id.in_(ids))
            .order_by(purchase_return_lines.c.return_id, purchase_return_lines.c.line_no)
        ):
            by_id[line.return_id].append(
                ReturnLine(
                    line_no=line.line_no,
                    po_line=line.po_line,
                    item_code=line.item_code,
                    qty=line.qty,
                    uom=line.uom,
                    base_qty=line.base_qty,
                    lot=line.lot,
                    location=line.location,
                )
            )
    return [
        PurchaseReturn(
            return_id=row.return_id,
            po_id=row.po_id,
            site_id=row.site_id,
            reason=row.reason,
            created_by=row.created_by,
            created_at=row.created_at,
            version=row.version,
            lines=by_id[row.return_id],
        )
        for row in rows
    ]


def get_return(
    connection: Connection, return_id: str, *, visible: frozenset[str] | None = None
) -> PurchaseReturn:
    return fetch_document(connection, _read_return, "purchase return", return_id, visible)


def _read_return(connection: Connection, return_id: str) -> PurchaseReturn | None:
    rows = connection.execute(
        select(purchase_returns).where(purchase_returns.c.return_id == return_id)
    ).all()
    found = _returns_with_lines(connection, rows)
    return found[0] if found else None


def list_returns(
    connection: Connection,
    *,
    po_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[PurchaseReturn], str | None]:
    key = purchase_returns.c.return_id
    conditions = _page_conditions(
        purchase_returns,
        key,
        after=after,
        po_id=po_id,
        site_id=site_id,
        visible=visible,
        limit=limit,
    )
    return read_page(
        connection,
        purchase_returns,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _returns_with_lines(connection, rows),
    )


def create_return(
    connection: Connection,
    *,
    po_id: str,
    reason: str,
    lines: Sequence[ReturnLineInput],
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    projections: Projections | None,
    claim: IdempotencyClaim | None = None,
) -> PurchaseReturn:
    """Goods of ``po_id`` back to its supplier, out of the locations they are in."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    if not reason.strip():
        raise InvalidError("reason: say why the goods go back")
    with document_write(
        connection, action="purchase_return.create", audit=audit, claim=claim
    ) as written:
        now = written.now
        po = _locked_po_for_stock(connection, po_id, visible, now)
        if po.status in (PoStatus.DRAFT, PoStatus.CANCELLED):
            raise DocumentStateError(
                "purchase order", po_id, po.status, "a return", "one with receipts"
            )
        pending: dict[int, Decimal] = defaultdict(Decimal)
        rows: list[dict[str, Any]] = []
        moves: list[Movement] = []
        for index, given in enumerate(lines):
            where = f"lines[{index}]"
            line = _po_line(po, where, given.po_line)
            uom, base, _base_uom = base_quantity(
                connection, where, line.item_code, given.qty, given.uom
            )
            pending[line.line_no] += base
            left = line.received_qty - line.returned_qty
            if pending[line.line_no] > left:
                raise ConflictError(
                    f"{where}: {po_id} line {line.line_no} has {plain(left)} {line.base_uom} "
                    f"received and not returned; {plain(pending[line.line_no])} cannot go back"
                )
            location = _any_location(connection, po.site_id, where, given.location)
            moves.append(
                _movement(EventKind.ISSUE, line, po_id, -base, location=location, lot=given.lot)
            )
            rows.append(
                {
                    "line_no": index + 1,
                    "po_line": line.line_no,
                    "item_code": line.item_code,
                    "qty": given.qty,
                    "uom": uom,
                    "base_qty": base,
                    "lot": given.lot,
                    "location": location,
                }
            )
        return_id = new_document_id(
            connection,
            sequence="#preturn",
            prefix="RT",
            column=purchase_returns.c.return_id,
        )
        connection.execute(
            insert(purchase_returns).values(
                return_id=return_id,
                po_id=po_id,
                site_id=po.site_id,
                reason=reason,
                created_by=actor,
                created_at=now,
                version=1,
            )
        )
        connection.execute(
            insert(purchase_return_lines), [{"return_id": return_id, **row} for row in rows]
        )
        central_events.book(
            connection,
            site_id=po.site_id,
            movements=moves,
            actor=actor,
            ref=return_id,
            now=now,
            projections=projections,
        )
        written.doc_id, written.site_id = return_id, po.site_id
        written.after = {"po_id": po_id, "reason": reason, "lines": auditable_rows(rows)}
    return get_return(connection, return_id)


# --- supplier invoices --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far an invoice may differ and still match, in percent."""

    price: Decimal = Decimal(0)
    qty: Decimal = Decimal(0)


def _invoices_with_lines(connection: Connection, rows: Sequence[Any]) -> list[Invoice]:
    by_id: dict[str, list[InvoiceLine]] = defaultdict(list)
    ids = [row.invoice_id for row in rows]
    if ids:
        for line in connection.execute(
            select(supplier_invoice_lines)
            .where(supplier_invoice_lines.c.invoice_id.in_(ids))
            .order_by(supplier_invoice_lines.c.invoice_id, supplier_invoice_lines.c.line_no)
        ):
            by_id[line.invoice_id].append(
                InvoiceLine(
                    **{
                        name: getattr(line, name)
                        for name in InvoiceLine.__dataclass_fields__
                        if name != "invoice_id"
                    }
                )
            )
    return [
        Invoice(
            invoice_id=row.invoice_id,
            invoice_no=row.invoice_no,
            supplier=row.supplier_code,
            po_id=row.po_id,
            site_id=row.site_id,
            status=InvoiceStatus(row.status),
            created_by=row.created_by,
            created_at=row.created_at,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            reason=row.reason,
            version=row.version,
            updated_at=row.updated_at,
            lines=by_id[row.invoice_id],
        )
        for row in rows
    ]


def _read_invoice(connection: Connection, invoice_id: str, *, lock: bool = False) -> Invoice | None:
    query = select(supplier_invoices).where(supplier_invoices.c.invoice_id == invoice_id)
    if lock:
        query = query.with_for_update()
    found = _invoices_with_lines(connection, connection.execute(query).all())
    return found[0] if found else None


def get_invoice(
    connection: Connection, invoice_id: str, *, visible: frozenset[str] | None = None
) -> Invoice:
    return fetch_document(connection, _read_invoice, "supplier invoice", invoice_id, visible)


def list_invoices(
    connection: Connection,
    *,
    status: InvoiceStatus | None,
    po_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[Invoice], str | None]:
    key = supplier_invoices.c.invoice_id
    conditions = _page_conditions(
        supplier_invoices,
        key,
        after=after,
        po_id=po_id,
        site_id=site_id,
        visible=visible,
        limit=limit,
    )
    if status is not None:
        conditions.append(supplier_invoices.c.status == status.value)
    return read_page(
        connection,
        supplier_invoices,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _invoices_with_lines(connection, rows),
    )


def match_line(
    line: PoLine, given: InvoiceLineInput, base: Decimal, tolerances: Tolerances
) -> dict[str, Any]:
    """The three-way match of one invoice line: the PO's price, the accepted quantity
    (net of returns) against everything invoiced so far, and the invoice's own amount.

    The invoice's quantity and price are in its own unit (``given.uom``, else the PO line's);
    quantities are compared in the base unit, prices in the invoice's unit: the PO's price
    is converted to it by the two units' exact factors and, where that ratio does not end
    (a case of 7 priced 10, invoiced per piece), rounded half-even to the micro-unit prices
    are stored in. Returns the columns of the stored line.
    """
    amount = plain(given.qty * given.unit_price) if given.amount is None else given.amount
    problems: list[str] = []
    po_price = line.unit_price
    other_unit = given.uom is not None and given.uom != line.uom
    if po_price is not None and other_unit:
        # base per invoice unit ÷ base per PO unit: the PO's price for one invoice unit
        with localcontext() as exact:
            exact.prec = 40
            converted = po_price * (base / given.qty) / (line.base_qty / line.qty)
        po_price = plain(converted.quantize(_MICRO, rounding=ROUND_HALF_EVEN))
    price_diff = amount_diff = None
    if po_price is None:
        problems.append("no_po_price")
    else:
        price_diff = plain(given.unit_price - po_price)
        if abs(price_diff) > po_price * tolerances.price / _HUNDRED:
            problems.append("price")
        amount_diff = plain(amount - given.qty * po_price)
    if abs(amount - given.qty * given.unit_price) > _CENT:
        problems.append("amount")
    qty_diff = plain(line.invoiced_qty + base - line.accepted_qty)
    if qty_diff > line.accepted_qty * tolerances.qty / _HUNDRED:
        problems.append("quantity")
    if line.tax_rate is not None and given.tax_rate != line.tax_rate:
        problems.append("tax_rate")
    return {
        "po_line": line.line_no,
        "qty": given.qty,
        "base_qty": base,
        "unit_price": given.unit_price,
        "tax_rate": given.tax_rate,
        "amount": amount,
        "po_price": po_price,
        "accepted_qty": line.accepted_qty,
        "price_diff": price_diff,
        "qty_diff": qty_diff,
        "amount_diff": amount_diff,
        "outcome": ",".join(problems) or "ok",
        "uom": given.uom if other_unit else None,
    }


def _count_invoiced(connection: Connection, po_id: str, lines: Sequence[Any], sign: int) -> None:
    for line in lines:
        connection.execute(
            update(purchase_order_lines)
            .where(
                purchase_order_lines.c.po_id == po_id,
                purchase_order_lines.c.line_no == line.po_line,
            )
            .values(invoiced_qty=purchase_order_lines.c.invoiced_qty + sign * line.base_qty)
        )


def create_invoice(
    connection: Connection,
    *,
    invoice_no: str,
    po_id: str,
    lines: Sequence[InvoiceLineInput],
    tolerances: Tolerances,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Invoice:
    """A supplier invoice, matched at once: ``matched`` or ``held`` with its differences."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    with document_write(
        connection, action="supplier_invoice.create", audit=audit, claim=claim
    ) as written:
        now = written.now
        # The site first, as a push takes it: the projection writes the lines this
        # reads and counts, so the two must not lock in opposite orders.
        po = _locked_po_for_stock(connection, po_id, visible, now)
        if po.status in (PoStatus.DRAFT, PoStatus.CANCELLED):
            raise DocumentStateError(
                "purchase order", po_id, po.status, "an invoice", "approved or later"
            )
        taken = connection.execute(
            select(supplier_invoices.c.invoice_id).where(
                supplier_invoices.c.supplier_code == po.supplier,
                supplier_invoices.c.invoice_no == invoice_no,
            )
        ).scalar_one_or_none()
        if taken is not None:
            raise ConflictError(
                f"invoice_no: {po.supplier}'s invoice {invoice_no!r} is entered already as {taken}"
            )
        seen: set[int] = set()
        rows = []
        for index, given in enumerate(lines):
            where = f"lines[{index}]"
            line = _po_line(po, where, given.po_line)
            if line.line_no in seen:
                raise InvalidError(f"{where}.po_line: line {line.line_no} is invoiced twice")
            seen.add(line.line_no)
            for name in ("unit_price", "tax_rate", "amount"):
                value = getattr(given, name)
                if value is not None and not _ZERO <= value < MAX_ABS_AMOUNT:
                    raise InvalidError(f"{where}.{name}: must not be negative, got {value}")
            if given.tax_rate >= 1:
                raise InvalidError(f"{where}.tax_rate: a fraction within 0..1 (0.13 for 13 %)")
            _uom, base, _base_uom = base_quantity(
                connection, where, line.item_code, given.qty, given.uom or line.uom
            )
            rows.append({"line_no": index + 1, **match_line(line, given, base, tolerances)})
        status = (
            InvoiceStatus.MATCHED
            if all(row["outcome"] == "ok" for row in rows)
            else InvoiceStatus.HELD
        )
        invoice_id = new_document_id(
            connection,
            sequence="#invoice",
            prefix="IV",
            column=supplier_invoices.c.invoice_id,
        )
        connection.execute(
            insert(supplier_invoices).values(
                invoice_id=invoice_id,
                invoice_no=invoice_no,
                supplier_code=po.supplier,
                po_id=po_id,
                site_id=po.site_id,
                status=status.value,
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        connection.execute(
            insert(supplier_invoice_lines), [{"invoice_id": invoice_id, **row} for row in rows]
        )
        if status is InvoiceStatus.MATCHED:
            _count_invoiced(
                connection, po_id, [_Counted(r["po_line"], r["base_qty"]) for r in rows], 1
            )
        written.doc_id, written.site_id = invoice_id, po.site_id
        written.after = {
            "invoice_no": invoice_no,
            "po_id": po_id,
            "status": status.value,
            "lines": auditable_rows(rows),
        }
        found = _read_invoice(connection, invoice_id)
        assert found is not None
    return found


@dataclass(frozen=True, slots=True)
class _Counted:
    po_line: int
    base_qty: Decimal


_INVOICE_MOVES: dict[str, tuple[frozenset[InvoiceStatus], InvoiceStatus]] = {
    "approve": (frozenset({InvoiceStatus.HELD}), InvoiceStatus.APPROVED),
    "dispute": (frozenset({InvoiceStatus.HELD, InvoiceStatus.MATCHED}), InvoiceStatus.DISPUTED),
}


def decide_invoice(
    connection: Connection, command: DocCommand, verb: str, *, segregation: bool = True
) -> Invoice:
    """Finance's decision on an invoice: ``approve`` a held one (accepting its
    differences, with a reason) or ``dispute`` it (with a reason).

    Accepting differences is paying more than was agreed or for more than arrived, so
    with ``segregation`` the person who entered the invoice may not be the one who
    accepts it (a second pair of eyes, as for POs); disputing stays open to them.
    """
    starts, end = _INVOICE_MOVES[verb]
    if not (command.reason or "").strip():
        raise InvalidError(f"reason: say why you {verb} the invoice")
    with document_write(
        connection, action=f"supplier_invoice.{verb}", audit=command.audit, claim=command.claim
    ) as written:
        now = written.now
        site = connection.execute(
            select(supplier_invoices.c.site_id).where(
                supplier_invoices.c.invoice_id == command.doc_id
            )
        ).scalar_one_or_none()
        if site is not None:  # the site before the lines it counts (see create_invoice)
            central_events.lock_site(connection, site, now=now)
        invoice = locked_document(
            connection,
            _read_invoice,
            "supplier invoice",
            command.doc_id,
            command.visible,
            if_match=command.if_match,
        )
        check_state("supplier invoice", invoice.invoice_id, invoice.status, verb, starts)
        if verb == "approve" and segregation and invoice.created_by == command.actor:
            raise SegregationOfDutiesError("supplier invoice", invoice.invoice_id, command.actor)
        if end is InvoiceStatus.APPROVED:
            _count_invoiced(connection, invoice.po_id, invoice.lines, 1)
        elif invoice.status is InvoiceStatus.MATCHED:
            _count_invoiced(connection, invoice.po_id, invoice.lines, -1)
        _bump(
            connection,
            supplier_invoices,
            supplier_invoices.c.invoice_id == invoice.invoice_id,
            status=end.value,
            decided_by=command.actor,
            decided_at=now,
            reason=command.reason,
            updated_at=now,
        )
        written.doc_id, written.site_id = invoice.invoice_id, invoice.site_id
        written.before = {"status": invoice.status.value, "version": invoice.version}
        written.after = {
            "status": end.value,
            "version": invoice.version + 1,
            "reason": command.reason,
        }
        found = _read_invoice(connection, invoice.invoice_id)
        assert found is not None
    return found


# --- receipt events of a PO (edge and central) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivingEvent:
    """A ledger event naming a PO line, from an edge or from central."""

    event_id: str
    stream: str
    site_id: str
    seq: int
    occurred_at: datetime
    kind: str
    item: str
    lot: str | None
    expiry: date | None
    location: str
    qty: Decimal
    uom: str
    ref: str | None
    actor: str | None
    doc_line: int
    qc: EdgeQc | None = None
    """An edge's receipt into quarantine: pending until a person decides (see
    :func:`decide_edge_quarantine`); None for every other event."""


_NOT_STORED = frozenset({"stream", "qc"})


def po_events(
    connection: Connection, po_id: str, *, visible: frozenset[str] | None
) -> list[ReceivingEvent]:
    """Every receipt, QC move and return booked against ``po_id``, edge and central; an
    edge's receipt into quarantine says where it stands in QC (``qc``)."""
    stored = [name for name in ReceivingEvent.__dataclass_fields__ if name not in _NOT_STORED]
    with read_snapshot(connection):
        site_id = _site_of_po(connection, po_id, visible)
        union = central_events.ledger_union(*stored, "doc_type", "doc_id").subquery()
        rows = connection.execute(
            select(union)
            .where(union.c.doc_type == PURCHASE_ORDER, union.c.doc_id == po_id)
            .order_by(union.c.occurred_at, union.c.stream, union.c.seq)
            .limit(MAX_PAGE * 20)
        ).all()
        qc = edge_qc_states(
            connection,
            site_id,
            [
                (row.event_id, row.location)
                for row in rows
                if row.stream == "edge" and row.kind == EventKind.RECEIPT.value
            ],
        )
    return [
        ReceivingEvent(
            stream=row.stream,
            qc=qc.get(row.event_id) if row.stream == "edge" else None,
            **{name: getattr(row, name) for name in stored},
        )
        for row in rows
    ]


def stock_location(connection: Connection, site_id: str, where: str, code: str | None) -> str:
    """``code`` if it is an active storage or receiving location of the site, else a 422
    naming ``where`` (for the documents that put goods back into stock)."""
    return _stock_location(connection, site_id, where, code)
