"""Customer returns (退货): a return authorisation against shipped sales order lines,
received at central, then each line restocked to a location or scrapped with a reason.

``authorised → received → closed`` (every line decided). Like every document it is built
on :mod:`central_api.services.documents`; its stock moves by central's own events
(:mod:`central_api.services.central_events`), each naming the SO line it came back from:

* **authorise** (create): per SO line a quantity, at most what was shipped less what
  earlier authorisations (not cancelled) already take back, so one shipment cannot come
  back twice; optionally the lot, which must be one shipped on that line (its expiry is
  taken from the shipment). Nothing moves yet: the goods are still at the customer;
* **receive**: a ``return`` event per line into the site's quarantine location (待检):
  returned goods are not sellable until a person looks at them (ATP does not count
  quarantine);
* **restock** a line: ``transfer_out`` of quarantine, ``transfer_in`` into a storage or
  receiving location: sellable again; **scrap** a line: a ``scrap`` event out of
  quarantine with a reason code from the ``reason_codes`` list (one that applies to
  ``write_off`` or ``return``).

The order's ``shipped_qty`` is not reduced by a return: it says what left, the return
says what came back (invoicing will credit it).

**At the edge.** An authorised return is published in the change feed to its site
(``customer_return``, keyed by its id; a tombstone once central receives it or it
closes), where the returns station (``edge_agent.stations.returns``) receives it carton
by carton, offline or not, as ``return`` events naming the return's own line
(``doc_type = "customer_return"``). :func:`project` (the ledger projection
``customer_returns``) takes those events in the push's transaction through the same
:func:`_take_receipt` a central receive uses: each line's ``received_qty`` grows by what
arrived, and the return is ``received`` from its first carton on, so restock and scrap
proceed at central as for a return received there, moving what really arrived. What no
line can take (another site's return, an item or unit not on the line) is stored but not
counted, and more than authorised is counted: both raise an exception for a person
(``return_unknown``, ``return_over``), as a PO over-receipt does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.master import reference_entries
from central_api.models.sales import (
    customer_return_lines,
    customer_returns,
    shipment_lines,
    shipments,
)
from central_api.services import central_events, sales
from central_api.services.audit import AuditContext
from central_api.services.central_events import Movement
from central_api.services.documents import (
    MAX_LINES,
    DocCommand,
    DocumentStateError,
    UnknownDocumentError,
    Written,
    auditable_rows,
    base_quantity,
    check_state,
    document_write,
    fetch_document,
    list_page,
    locked_document,
    new_document_id,
    plain,
    read_one,
    utc,
)
from central_api.services.feed import FeedWriter, feed_writer
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import AcceptedEvents, Projections
from central_api.services.receiving import quarantine_location, stock_location
from jxc.contract import EventKind, LedgerEvent
from jxc.feed import ChangeOp, FeedEntity, ReturnData, ReturnLineData

SALES_ORDER = "sales_order"
CUSTOMER_RETURN = "customer_return"
"""The document type an edge's return events name (the return's own line)."""
NAME = "customer_returns"
"""The ledger projection's name (:func:`project`)."""
EDGE_RETURN = "edge_return"
"""The ``source`` of the exceptions :func:`project` raises (``source_id``: the event id)."""
RETURN_OVER = "return_over"
RETURN_UNKNOWN = "return_unknown"
SCRAP_REASONS = ("write_off", "return")
"""A reason code for a scrapped return must apply to one of these movements."""
_ZERO = Decimal(0)


class ReturnStatus(StrEnum):
    AUTHORISED = "authorised"
    RECEIVED = "received"
    CLOSED = "closed"


class Disposition(StrEnum):
    PENDING = "pending"
    RESTOCKED = "restocked"
    SCRAPPED = "scrapped"
    SHORT = "short"
    """Closed with nothing received (:func:`close_short`): the goods never came back."""


@dataclass(frozen=True, slots=True)
class ReturnLineInput:
    so_line: int
    qty: Decimal
    uom: str | None = None
    lot: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnLine:
    line_no: int
    so_line: int
    item_code: str
    lot: str | None
    expiry: date | None
    qty: Decimal
    uom: str
    location: str | None
    disposition: Disposition
    received_qty: Decimal
    reason_code: str | None
    decided_by: str | None
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class CustomerReturn:
    return_id: str
    so_id: str
    site_id: str
    customer: str
    status: ReturnStatus
    reason: str
    created_by: str
    created_at: datetime
    received_by: str | None
    received_at: datetime | None
    version: int
    updated_at: datetime
    lines: list[ReturnLine] = field(default_factory=list)


# --- reading ------------------------------------------------------------------------------


def _with_lines(connection: Connection, rows: Sequence[Any]) -> list[CustomerReturn]:
    by_id: dict[str, list[ReturnLine]] = defaultdict(list)
    ids = [row.return_id for row in rows]
    if ids:
        for line in connection.execute(
            select(customer_return_lines)
            .where(customer_return_lines.c.return_id.in_(ids))
            .order_by(customer_return_lines.c.return_id, customer_return_lines.c.line_no)
        ):
            by_id[line.return_id].append(
                ReturnLine(
                    line_no=line.line_no,
                    so_line=line.so_line,
                    item_code=line.item_code,
                    lot=line.lot,
                    expiry=line.expiry,
                    qty=line.qty,
                    uom=line.uom,
                    location=line.location,
                    disposition=Disposition(line.disposition),
                    received_qty=line.received_qty,
                    reason_code=line.reason_code,
                    decided_by=line.decided_by,
                    decided_at=utc(line.decided_at),
                )
            )
    return [
        CustomerReturn(
            return_id=row.return_id,
            so_id=row.so_id,
            site_id=row.site_id,
            customer=row.customer_code,
            status=ReturnStatus(row.status),
            reason=row.reason,
            created_by=row.created_by,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            received_by=row.received_by,
            received_at=utc(row.received_at),
            version=row.version,
            updated_at=utc(row.updated_at),  # type: ignore[arg-type]
            lines=by_id[row.return_id],
        )
        for row in rows
    ]


def _read(connection: Connection, return_id: str, *, lock: bool = False) -> CustomerReturn | None:
    return read_one(
        connection,
        customer_returns,
        customer_returns.c.return_id,
        return_id,
        build=lambda rows: _with_lines(connection, rows),
        lock=lock,
    )


def get_return(
    connection: Connection, return_id: str, *, visible: frozenset[str] | None = None
) -> CustomerReturn:
    return fetch_document(connection, _read, "customer return", return_id, visible)


def list_returns(
    connection: Connection,
    *,
    so_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[CustomerReturn], str | None]:
    return list_page(
        connection,
        customer_returns,
        filters=[] if so_id is None else [customer_returns.c.so_id == so_id],
        scope=(site_id, visible),
        after=after,
        limit=limit,
        build=lambda rows: _with_lines(connection, rows),
    )


# --- authorising --------------------------------------------------------------------------


def _authorised(connection: Connection, so_id: str) -> dict[int, Decimal]:
    """What earlier authorisations of the order take back, per SO line."""
    rows = connection.execute(
        select(customer_return_lines.c.so_line, func.sum(customer_return_lines.c.qty))
        .join(
            customer_returns,
            customer_returns.c.return_id == customer_return_lines.c.return_id,
        )
        .where(customer_returns.c.so_id == so_id)
        .group_by(customer_return_lines.c.so_line)
    ).all()
    return {row[0]: Decimal(row[1]) for row in rows}


def _shipped_lots(connection: Connection, so_id: str) -> dict[tuple[int, str], date | None]:
    """(SO line, lot) → expiry of every lot the order's shipments took."""
    rows = connection.execute(
        select(shipment_lines.c.so_line, shipment_lines.c.lot, shipment_lines.c.expiry)
        .join(shipments, shipments.c.shipment_id == shipment_lines.c.shipment_id)
        .where(shipments.c.so_id == so_id, shipment_lines.c.lot.is_not(None))
    ).all()
    return {(row[0], row[1]): row[2] for row in rows}


def create_return(
    connection: Connection,
    *,
    so_id: str,
    reason: str,
    lines: Sequence[ReturnLineInput],
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> CustomerReturn:
    """Authorise goods of ``so_id``'s shipped lines to come back. ``IdempotentReplay``
    on a retry."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    if not reason.strip():
        raise InvalidError("reason: say why the customer sends the goods back")
    with (
        document_write(
            connection, action="customer_return.create", audit=audit, claim=claim
        ) as written,
        # The feed's lock first (before the order's row), as every feed writer takes it.
        feed_writer(connection, changed_at=written.now) as writer,
    ):
        # The order is locked: two authorisations of one order count one after the other.
        so = locked_document(connection, sales.read_so, "sales order", so_id, visible)
        taken = _authorised(connection, so_id)
        lots = _shipped_lots(connection, so_id)
        rows = []
        for index, given in enumerate(lines):
            where = f"lines[{index}]"
            line = next((each for each in so.lines if each.line_no == given.so_line), None)
            if line is None:
                raise InvalidError(
                    f"{where}.so_line: sales order {so_id} has no line {given.so_line}"
                )
            _uom, base, _base_uom = base_quantity(
                connection, where, line.item_code, given.qty, given.uom
            )
            taken[line.line_no] = taken.get(line.line_no, _ZERO) + base
            if taken[line.line_no] > line.shipped_qty:
                raise ConflictError(
                    f"{where}: {so_id} line {line.line_no} shipped {plain(line.shipped_qty)} "
                    f"{line.base_uom}; with earlier returns {plain(taken[line.line_no])} "
                    "would come back"
                )
            if given.lot is not None and (line.line_no, given.lot) not in lots:
                raise InvalidError(
                    f"{where}.lot: lot {given.lot} was not shipped on {so_id} line {line.line_no}"
                )
            rows.append(
                {
                    "line_no": index + 1,
                    "so_line": line.line_no,
                    "item_code": line.item_code,
                    "lot": given.lot,
                    "expiry": None if given.lot is None else lots[(line.line_no, given.lot)],
                    "qty": base,
                    "uom": line.base_uom,
                    "location": None,
                    "disposition": Disposition.PENDING.value,
                    "received_qty": _ZERO,
                }
            )
        return_id = new_document_id(
            connection,
            sequence="#customer_return",
            prefix="RA",
            column=customer_returns.c.return_id,
        )
        connection.execute(
            insert(customer_returns).values(
                return_id=return_id,
                so_id=so_id,
                site_id=so.site_id,
                customer_code=so.customer,
                status=ReturnStatus.AUTHORISED.value,
                reason=reason,
                created_by=actor,
                created_at=written.now,
                version=1,
                updated_at=written.now,
            )
        )
        connection.execute(
            insert(customer_return_lines), [{"return_id": return_id, **row} for row in rows]
        )
        made = _read(connection, return_id)
        assert made is not None
        _publish(writer, made)
        written.doc_id, written.site_id = return_id, so.site_id
        written.after = {"so_id": so_id, "reason": reason, "lines": auditable_rows(rows)}
    return get_return(connection, return_id)


def _return_data(found: CustomerReturn) -> ReturnData:
    """An authorised return as its site's returns station sees it: no price, no amount."""
    return ReturnData(
        return_id=found.return_id,
        so_id=found.so_id,
        customer=found.customer,
        version=found.version,
        lines=[
            ReturnLineData(
                line_no=line.line_no,
                item_code=line.item_code,
                lot=line.lot,
                expiry=line.expiry,
                qty=plain(line.qty),
                uom=line.uom,
            )
            for line in found.lines
        ],
    )


def _publish(writer: FeedWriter, found: CustomerReturn) -> None:
    """An authorised return goes to its site (the returns station receives it there);
    received at central or closed, its tombstone: the edge receives nothing more of it.

    An edge's own receipts do not publish (a push never takes the feed's lock): the edge
    keeps receiving a return it started, and knows what it received itself."""
    open_ = found.status is ReturnStatus.AUTHORISED
    writer.append(
        entity=FeedEntity.CUSTOMER_RETURN,
        key=found.return_id,
        op=ChangeOp.UPSERT if open_ else ChangeOp.DELETE,
        data=_return_data(found).model_dump(mode="json") if open_ else None,
        site_id=found.site_id,
    )


# --- receiving and deciding ---------------------------------------------------------------------


def _locked(connection: Connection, command: DocCommand, written: Written) -> CustomerReturn:
    """The return locked after its site's stream (the order a push takes its locks in)."""
    site = connection.execute(
        select(customer_returns.c.site_id).where(customer_returns.c.return_id == command.doc_id)
    ).scalar_one_or_none()
    if site is None or (command.visible is not None and site not in command.visible):
        raise UnknownDocumentError("customer return", command.doc_id)
    central_events.lock_site(connection, site, now=written.now)
    return locked_document(
        connection,
        _read,
        "customer return",
        command.doc_id,
        command.visible,
        if_match=command.if_match,
    )


@contextmanager
def _command(
    connection: Connection,
    command: DocCommand,
    action: str,
    verb: str,
    allowed: frozenset[ReturnStatus],
) -> Iterator[tuple[Written, FeedWriter, CustomerReturn]]:
    """The frame of every command on a return: the key and the audit
    (:func:`document_write`, ``customer_return.<action>``), the feed's lock (a command may
    publish the tombstone), then the return locked after its site's stream, in one of
    the ``allowed`` states for ``verb``."""
    with (
        document_write(
            connection, action=f"customer_return.{action}", audit=command.audit, claim=command.claim
        ) as written,
        feed_writer(connection, changed_at=written.now) as writer,
    ):
        found = _locked(connection, command, written)
        check_state("customer return", found.return_id, found.status, verb, allowed)
        yield written, writer, found


def _movement(
    found: CustomerReturn, line: ReturnLine, kind: EventKind, qty: Decimal, at: str
) -> Movement:
    return Movement(
        kind=kind,
        item=line.item_code,
        location=at,
        qty=qty,
        uom=line.uom,
        lot=line.lot,
        expiry=line.expiry,
        doc_type=SALES_ORDER,
        doc_id=found.so_id,
        doc_line=line.so_line,
    )


def receive_return(
    connection: Connection, command: DocCommand, *, projections: Projections | None
) -> CustomerReturn:
    """authorised → received: the goods are booked into the site's quarantine location,
    every line whole; the edge's feed entry is tombstoned."""
    with _command(
        connection, command, "receive", "receive", frozenset({ReturnStatus.AUTHORISED})
    ) as (written, writer, found):
        quarantine = quarantine_location(connection, found.site_id)
        central_events.book(
            connection,
            site_id=found.site_id,
            movements=[
                _movement(found, line, EventKind.RETURN, line.qty, quarantine)
                for line in found.lines
            ],
            actor=command.actor,
            ref=found.return_id,
            now=written.now,
            projections=projections,
        )
        _take_receipt(
            connection,
            found,
            {line.line_no: line.qty for line in found.lines},
            location=quarantine,
            actor=command.actor,
            now=written.now,
        )
        after = _read(connection, found.return_id)
        assert after is not None
        _publish(writer, after)
        written.doc_id, written.site_id = found.return_id, found.site_id
        written.before = {"status": found.status.value, "version": found.version}
        written.after = {
            "status": ReturnStatus.RECEIVED.value,
            "version": found.version + 1,
            "location": quarantine,
        }
    return get_return(connection, command.doc_id)


def _take_receipt(
    connection: Connection,
    found: CustomerReturn,
    received: Mapping[int, Decimal],
    *,
    location: str,
    actor: str,
    now: datetime,
) -> None:
    """What arrived of ``found`` (line number → base quantity) into ``location``: the one
    path a receive at central and an edge's cartons (:func:`project`) both take.

    Each line's ``received_qty`` grows; an undecided line is where the goods now are; the
    return becomes ``received`` at its first receipt (who and when are of that one), and
    its version moves, so a person's stale ``If-Match`` no longer matches."""
    for line in found.lines:
        qty = received.get(line.line_no)
        if qty is None:
            continue
        values: dict[str, Any] = {"received_qty": line.received_qty + qty}
        if line.disposition is Disposition.PENDING:
            values["location"] = location
        connection.execute(
            update(customer_return_lines)
            .where(
                customer_return_lines.c.return_id == found.return_id,
                customer_return_lines.c.line_no == line.line_no,
            )
            .values(**values)
        )
    values = {"version": found.version + 1, "updated_at": now}
    if found.status is ReturnStatus.AUTHORISED:
        values |= {
            "status": ReturnStatus.RECEIVED.value,
            "received_by": actor[:100],
            "received_at": now,
        }
    connection.execute(
        update(customer_returns)
        .where(customer_returns.c.return_id == found.return_id)
        .values(**values)
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """Restock one received line (to ``location``) or scrap it (with ``reason_code``)."""

    command: DocCommand
    line_no: int
    location: str | None = None
    reason_code: str | None = None


def _check_reason(connection: Connection, code: str | None) -> str:
    if code is None:
        raise InvalidError("reason_code: say why it is scrapped (a code of reason_codes)")
    row = connection.execute(
        select(reference_entries.c.attrs, reference_entries.c.active).where(
            reference_entries.c.list_name == "reason_codes", reference_entries.c.code == code
        )
    ).one_or_none()
    if row is None or not row.active:
        raise InvalidError(f"reason_code: {code!r} is not an active reason code")
    uses = json.loads(row.attrs).get("applies_to", [])
    if not any(use in uses for use in SCRAP_REASONS):
        raise InvalidError(
            f"reason_code: {code!r} does not apply to a write-off or a return; use one that does"
        )
    return code


def decide_line(
    connection: Connection, decision: Decision, verb: str, *, projections: Projections | None
) -> CustomerReturn:
    """``restock`` (quarantine → a storage or receiving location) or ``scrap`` one
    received line; the return closes when every line is decided."""
    command = decision.command
    with _command(connection, command, verb, verb, frozenset({ReturnStatus.RECEIVED})) as (
        written,
        writer,
        found,
    ):
        line = next((each for each in found.lines if each.line_no == decision.line_no), None)
        if line is None:
            raise InvalidError(f"line_no: return {found.return_id} has no line {decision.line_no}")
        if line.disposition is not Disposition.PENDING:
            raise DocumentStateError(
                "customer return line",
                f"{found.return_id}/{line.line_no}",
                line.disposition,
                verb,
                "pending",
            )
        if line.received_qty <= 0:
            raise ConflictError(
                f"{found.return_id} line {line.line_no}: nothing of it has arrived yet, so "
                f"nothing can be {'restocked' if verb == 'restock' else 'scrapped'}"
            )
        held, qty = str(line.location), line.received_qty
        if verb == "restock":
            target = stock_location(connection, found.site_id, "body", decision.location)
            moves = [
                _movement(found, line, EventKind.TRANSFER_OUT, -qty, held),
                _movement(found, line, EventKind.TRANSFER_IN, qty, target),
            ]
            values: dict[str, Any] = {
                "disposition": Disposition.RESTOCKED.value,
                "location": target,
            }
        else:
            reason = _check_reason(connection, decision.reason_code)
            moves = [_movement(found, line, EventKind.SCRAP, -qty, held)]
            values = {"disposition": Disposition.SCRAPPED.value, "reason_code": reason}
        central_events.book(
            connection,
            site_id=found.site_id,
            movements=moves,
            actor=command.actor,
            ref=f"{found.return_id}/{line.line_no} {verb}",
            now=written.now,
            projections=projections,
        )
        connection.execute(
            update(customer_return_lines)
            .where(
                customer_return_lines.c.return_id == found.return_id,
                customer_return_lines.c.line_no == line.line_no,
            )
            .values(decided_by=command.actor, decided_at=written.now, **values)
        )
        pending = [
            each
            for each in found.lines
            if each.disposition is Disposition.PENDING and each.line_no != line.line_no
        ]
        status = ReturnStatus.RECEIVED if pending else ReturnStatus.CLOSED
        connection.execute(
            update(customer_returns)
            .where(customer_returns.c.return_id == found.return_id)
            .values(status=status.value, version=found.version + 1, updated_at=written.now)
        )
        if status is ReturnStatus.CLOSED:
            closed = _read(connection, found.return_id)
            assert closed is not None
            _publish(writer, closed)
        written.doc_id, written.site_id = found.return_id, found.site_id
        written.before = {"line_no": line.line_no, "disposition": line.disposition.value}
        written.after = {"line_no": line.line_no, **values, "status": status.value}
    return get_return(connection, command.doc_id)


def close_short(
    connection: Connection, command: DocCommand, *, projections: Projections | None
) -> CustomerReturn:
    """Close the lines of which nothing arrived, with zero, and a reason: the customer
    kept them, or they were lost on the way. Without it such a return can never close (a
    line with nothing received cannot be restocked or scrapped).

    Lines that received something stay pending (restock or scrap what arrived); the
    return closes when none is left. The edge's feed entry is tombstoned in any case, so
    its returns station receives nothing more; a carton it booked before it heard is
    still counted when pushed (:func:`project`), with a ``return_over`` exception.
    Nothing moves: nothing of these lines is anywhere."""
    del projections  # no stock moves; kept so every return command has one signature
    reason = (command.reason or "").strip()
    if not reason:
        raise InvalidError("reason: say why the rest of the return will not come back")
    with _command(
        connection,
        command,
        "close_short",
        "close short",
        frozenset({ReturnStatus.AUTHORISED, ReturnStatus.RECEIVED}),
    ) as (written, writer, found):
        pending = [each for each in found.lines if each.disposition is Disposition.PENDING]
        short = [each for each in pending if each.received_qty <= 0]
        if not short:
            raise ConflictError(
                f"{found.return_id}: every open line received something; restock or scrap "
                "what arrived instead (that closes the return)"
            )
        connection.execute(
            update(customer_return_lines)
            .where(
                customer_return_lines.c.return_id == found.return_id,
                customer_return_lines.c.line_no.in_([each.line_no for each in short]),
            )
            .values(
                disposition=Disposition.SHORT.value,
                decided_by=command.actor[:100],
                decided_at=written.now,
            )
        )
        status = ReturnStatus.RECEIVED if len(pending) > len(short) else ReturnStatus.CLOSED
        connection.execute(
            update(customer_returns)
            .where(customer_returns.c.return_id == found.return_id)
            .values(status=status.value, version=found.version + 1, updated_at=written.now)
        )
        after = _read(connection, found.return_id)
        assert after is not None
        _publish(writer, after)
        written.doc_id, written.site_id = found.return_id, found.site_id
        written.before = {"status": found.status.value, "version": found.version}
        written.after = {
            "status": status.value,
            "version": found.version + 1,
            "short": [each.line_no for each in short],
            "reason": reason,
        }
    return get_return(connection, command.doc_id)


# --- received at an edge ------------------------------------------------------------------


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """Count an edge's ``return`` events naming a customer return line into the return
    (:func:`_take_receipt`), inside the push's transaction (the ledger projection
    ``customer_returns``). Facts are never refused: what no line can take is stored and
    raises ``return_unknown``; more than authorised is counted and raises ``return_over``.
    Central's own receive names the order's line, not the return's, so it is never
    counted twice."""
    if accepted.central:
        return
    named = [
        event
        for event in accepted.events
        if event.doc_type == CUSTOMER_RETURN and event.kind is EventKind.RETURN
    ]
    if not named:
        return
    rows = connection.execute(
        select(customer_returns)
        .where(customer_returns.c.return_id.in_(sorted({str(e.doc_id) for e in named})))
        .order_by(customer_returns.c.return_id)
        .with_for_update()
    ).all()
    found = {each.return_id: each for each in _with_lines(connection, rows)}
    counted: dict[str, dict[int, Decimal]] = defaultdict(dict)
    last: dict[str, LedgerEvent] = {}
    exceptions: list[dict[str, Any]] = []
    for event in named:
        rma = found.get(str(event.doc_id))
        line = _edge_line(rma, event, accepted.site_id)
        if isinstance(line, str):
            exceptions.append(_exception(event, accepted.site_id, RETURN_UNKNOWN, line, None))
            continue
        assert rma is not None
        lines = counted[rma.return_id]
        before = line.received_qty + lines.get(line.line_no, _ZERO)
        lines[line.line_no] = lines.get(line.line_no, _ZERO) + event.qty
        last[rma.return_id] = event
        if before + event.qty > line.qty:
            exceptions.append(
                _exception(
                    event,
                    accepted.site_id,
                    RETURN_OVER,
                    f"{rma.return_id} line {line.line_no}: {plain(before + event.qty)} "
                    f"{line.uom} of {line.item_code} received at the site, "
                    f"{plain(line.qty)} authorised; the goods are in {event.location} "
                    "(counted): decide with the customer",
                    line.qty,
                )
            )
        elif (
            line.disposition is not Disposition.PENDING
            or rma.status is ReturnStatus.CLOSED
            or any(each.disposition is Disposition.SHORT for each in rma.lines)
        ):
            exceptions.append(
                _exception(
                    event,
                    accepted.site_id,
                    RETURN_OVER,
                    f"{rma.return_id} line {line.line_no}: {plain(event.qty)} {line.uom} "
                    f"arrived in {event.location} after "
                    + (
                        f"the line was {line.disposition}"
                        if line.disposition not in (Disposition.PENDING, Disposition.SHORT)
                        else "the return was closed short"
                    )
                    + "; move or scrap them by hand",
                    line.qty,
                )
            )
    for return_id, lines in counted.items():
        event = last[return_id]
        _take_receipt(
            connection,
            found[return_id],
            lines,
            location=event.location,
            actor=event.actor or event.device_id or f"site {accepted.site_id}",
            now=accepted.received_at,
        )
    if exceptions:
        from central_api.services import alerts  # noqa: PLC0415 - alerts imports sales' peers

        alerts.raise_exceptions(connection, exceptions, accepted.received_at)


def _edge_line(rma: CustomerReturn | None, event: LedgerEvent, site_id: str) -> ReturnLine | str:
    """The return line an edge's event counts against, or why none can take it."""
    if rma is None or rma.site_id != site_id:
        return f"{event.doc_id} is no customer return of site {site_id}: stored, not counted"
    line = next((each for each in rma.lines if each.line_no == event.doc_line), None)
    if line is None:
        return f"{rma.return_id} has no line {event.doc_line}: stored, not counted"
    if line.item_code != event.item or line.uom != event.uom:
        return (
            f"{rma.return_id} line {line.line_no} is {line.item_code} in {line.uom}, the site "
            f"received {event.item} in {event.uom}: stored, not counted"
        )
    return line


def _exception(
    event: LedgerEvent, site_id: str, kind: str, detail: str, threshold: Decimal | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "source": EDGE_RETURN,
        "source_id": str(event.event_id),
        "site_id": site_id,
        "item_code": event.item,
        "location": event.location,
        "lot": event.lot or "",
        "qty": event.qty,
        "threshold": threshold,
        "detail": detail[:1000],
        "since_at": event.occurred_at,
    }
