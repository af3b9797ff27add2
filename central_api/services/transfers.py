"""Transfers (调拨): a transfer order from site A to site B, and what is in transit.

States::

    draft --approve--> approved --ship--> shipped --receive--> received
      \\________________/ --cancel--> cancelled          (only before anything shipped)

* **Ship** (at A) books ``transfer_out`` events at A naming the transfer line, out of the
  locations and lots given; an expired lot is refused, as is more than the line's
  quantity or than the location holds.
* **Receive** (at B) books ``transfer_in`` events at B naming the line, with the lot's
  expiry as shipped. Then each (line, lot) is compared: a difference is an **exception**
  (例外) showing both quantities: ``short`` (fewer arrived than left), ``over`` (more),
  ``wrong_lot`` (a lot arrived that never left on that line).
* **In transit** is not a balance anywhere. Each side posts only its own site's events (an
  edge can write only its own stream), so what left A and has not reached B is the
  projection ``transfer_lots``: per (transfer, line, lot) ``shipped_qty`` (the sum of A's
  ``transfer_out`` naming the line) and ``received_qty`` (B's ``transfer_in``); in transit
  = shipped − received − what a person wrote off as lost when resolving a short arrival.
  So the sum over sites plus in transit equals receipts less issues at every instant.

The projection is registered as ``transfer_progress`` and runs on every push and every
central booking, exactly as ``po_progress`` does: when edges book transfers (a later step)
their ``transfer_out`` / ``transfer_in`` events, naming ``doc_type`` ``transfer_order``, the
transfer id and line, move the same rows, and the first ``transfer_out`` moves an approved
transfer to ``shipped`` by itself. Events naming a transfer or line that does not exist, of
a site that is not that end of the transfer, or in another unit than the line's base unit
stay in the ledger uncounted (facts are never refused). :func:`rebuild` recomputes the
projection from the union of both streams.

**Edges.** An approved transfer goes to both ends through the change feed (``transfer``,
:func:`_publish`; its tombstone on cancel and on a central receive), so each end's station
works offline. Each edge marks the last event of its side with ``ref`` =
:data:`jxc.feed.TRANSFER_COMPLETE`; when central holds both ends' marks (a central ship
counts as the sending end's), the projection closes the transfer as ``received`` and
raises the arrival differences exactly as the ``receive`` command does
(:func:`_close_when_both_ended`). Ingest never takes the feed's lock, so a transfer closed
by a push sends no tombstone; each edge already knows it ended its own side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, type_coerce, update

from central_api.errors import ConflictError, ForbiddenError, InvalidError
from central_api.models.base import MicroUnits
from central_api.models.inventory import (
    transfer_exceptions,
    transfer_lines,
    transfer_lots,
    transfer_orders,
)
from central_api.models.ledger import central_events as central_event_rows
from central_api.models.ledger import ledger_events
from central_api.services import central_events
from central_api.services.audit import AuditContext
from central_api.services.central_events import Movement, ledger_union, lot_expiry
from central_api.services.documents import (
    MAX_LINES,
    DocCommand,
    DocumentStateError,
    SegregationOfDutiesError,
    UnknownDocumentError,
    base_quantity,
    check_limit,
    check_site,
    check_state,
    check_version,
    document_write,
    moved,
    new_document_id,
    plain,
    read_page,
)
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.inventory import (
    active_location,
    from_row,
    jsonable,
    refuse_expired,
)
from central_api.services.projections import AcceptedEvents, Projections
from jxc.contract import EventKind
from jxc.feed import (
    TRANSFER_COMPLETE,
    ChangeOp,
    FeedEntity,
    TransferData,
    TransferLineData,
)

NAME = "transfer_progress"
_OPEN = frozenset({"open"})
TRANSFER_ORDER = "transfer_order"
_ZERO = Decimal(0)
_KIND = "transfer order"


class TransferStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SHIPPED = "shipped"
    RECEIVED = "received"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TransferLineInput:
    item_code: str
    qty: Decimal
    uom: str | None = None


@dataclass(frozen=True, slots=True)
class Pick:
    """What left or arrived for one line: the location at that end, the lot, the quantity
    in the line's base unit."""

    line_no: int
    location: str
    qty: Decimal
    lot: str | None = None


@dataclass(frozen=True, slots=True)
class TransferLot:
    lot: str | None
    expiry: date | None
    shipped_qty: Decimal
    received_qty: Decimal
    lost_qty: Decimal

    @property
    def in_transit(self) -> Decimal:
        return plain(self.shipped_qty - self.received_qty - self.lost_qty)


@dataclass(frozen=True, slots=True)
class TransferLine:
    line_no: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    base_uom: str
    lots: list[TransferLot]

    @property
    def shipped_qty(self) -> Decimal:
        return plain(sum((lot.shipped_qty for lot in self.lots), _ZERO))

    @property
    def received_qty(self) -> Decimal:
        return plain(sum((lot.received_qty for lot in self.lots), _ZERO))

    @property
    def in_transit(self) -> Decimal:
        return plain(sum((lot.in_transit for lot in self.lots), _ZERO))


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    from_site: str
    to_site: str
    status: TransferStatus
    note: str
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    shipped_at: datetime | None
    received_at: datetime | None
    reason: str | None
    version: int
    updated_at: datetime
    lines: list[TransferLine] = field(default_factory=list)

    @property
    def site_id(self) -> str:
        """The sending site: the one the transfer's audit entries are filed under. Users
        of either end see the transfer (:func:`_sees`), not only this one's."""
        return self.from_site


@dataclass(frozen=True, slots=True)
class TransferException:
    exception_id: int
    transfer_id: str
    line_no: int
    kind: str
    item_code: str
    lot: str | None
    shipped_qty: Decimal
    received_qty: Decimal
    status: str
    raised_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class InTransit:
    transfer_id: str
    from_site: str
    to_site: str
    line_no: int
    item_code: str
    lot: str | None
    qty: Decimal
    uom: str


# --- reading ---------------------------------------------------------------------------------


def _lots(connection: Connection, ids: Sequence[str]) -> dict[tuple[str, int], list[TransferLot]]:
    found: dict[tuple[str, int], list[TransferLot]] = defaultdict(list)
    for row in connection.execute(
        select(transfer_lots)
        .where(transfer_lots.c.transfer_id.in_(ids))
        .order_by(transfer_lots.c.transfer_id, transfer_lots.c.line_no, transfer_lots.c.lot)
    ):
        found[(row.transfer_id, row.line_no)].append(
            TransferLot(
                lot=row.lot or None,
                expiry=row.expiry,
                shipped_qty=plain(row.shipped_qty),
                received_qty=plain(row.received_qty),
                lost_qty=plain(row.lost_qty),
            )
        )
    return found


def _with_lines(connection: Connection, rows: Sequence[Any]) -> list[Transfer]:
    ids = [row.transfer_id for row in rows]
    by_id: dict[str, list[TransferLine]] = defaultdict(list)
    if ids:
        lots = _lots(connection, ids)
        for line in connection.execute(
            select(transfer_lines)
            .where(transfer_lines.c.transfer_id.in_(ids))
            .order_by(transfer_lines.c.transfer_id, transfer_lines.c.line_no)
        ):
            by_id[line.transfer_id].append(
                TransferLine(
                    line_no=line.line_no,
                    item_code=line.item_code,
                    qty=line.qty,
                    uom=line.uom,
                    base_qty=line.base_qty,
                    base_uom=line.base_uom,
                    lots=lots.get((line.transfer_id, line.line_no), []),
                )
            )
    return [
        from_row(Transfer, row, status=TransferStatus(row.status), lines=by_id[row.transfer_id])
        for row in rows
    ]


def _read(connection: Connection, transfer_id: str, *, lock: bool = False) -> Transfer | None:
    query = select(transfer_orders).where(transfer_orders.c.transfer_id == transfer_id)
    if lock:
        query = query.with_for_update()
    rows = connection.execute(query).all()
    return _with_lines(connection, rows)[0] if rows else None


def _sees(transfer: Transfer | Any, visible: frozenset[str] | None) -> bool:
    """A transfer is seen by users of either end."""
    return visible is None or transfer.from_site in visible or transfer.to_site in visible


def get_transfer(
    connection: Connection, transfer_id: str, *, visible: frozenset[str] | None = None
) -> Transfer:
    with read_snapshot(connection):
        found = _read(connection, transfer_id)
    if found is None or not _sees(found, visible):
        raise UnknownDocumentError(_KIND, transfer_id)
    return found


def _either_end(site_id: str | None, visible: frozenset[str] | None) -> list[Any]:
    conditions: list[Any] = []
    if site_id is not None:
        if visible is not None and site_id not in visible:
            raise ForbiddenError(f"site_id: site {site_id} is outside your sites")
        conditions.append(
            or_(transfer_orders.c.from_site == site_id, transfer_orders.c.to_site == site_id)
        )
    elif visible is not None:
        conditions.append(
            or_(
                transfer_orders.c.from_site.in_(sorted(visible)),
                transfer_orders.c.to_site.in_(sorted(visible)),
            )
        )
    return conditions


def list_transfers(
    connection: Connection,
    *,
    site_id: str | None,
    status: TransferStatus | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[Transfer], str | None]:
    key = transfer_orders.c.transfer_id
    check_limit(limit)
    conditions = _either_end(site_id, visible)
    if after is not None:
        conditions.append(key > after)
    if status is not None:
        conditions.append(transfer_orders.c.status == status.value)
    return read_page(
        connection,
        transfer_orders,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _with_lines(connection, rows),
    )


def in_transit(
    connection: Connection,
    *,
    site_id: str | None,
    item_code: str | None,
    visible: frozenset[str] | None,
) -> list[InTransit]:
    """What left a site and has not arrived, per transfer, line and lot; ``site_id``
    matches either end."""
    outstanding = type_coerce(
        transfer_lots.c.shipped_qty - transfer_lots.c.received_qty - transfer_lots.c.lost_qty,
        MicroUnits,
    )
    query = (
        select(
            transfer_lots.c.transfer_id,
            transfer_orders.c.from_site,
            transfer_orders.c.to_site,
            transfer_lots.c.line_no,
            transfer_lines.c.item_code,
            transfer_lots.c.lot,
            outstanding.label("qty"),
            transfer_lines.c.base_uom,
        )
        .join(transfer_orders, transfer_orders.c.transfer_id == transfer_lots.c.transfer_id)
        .join(
            transfer_lines,
            (transfer_lines.c.transfer_id == transfer_lots.c.transfer_id)
            & (transfer_lines.c.line_no == transfer_lots.c.line_no),
        )
        .where(outstanding != 0, *_either_end(site_id, visible))
        .order_by(transfer_lots.c.transfer_id, transfer_lots.c.line_no, transfer_lots.c.lot)
    )
    if item_code is not None:
        query = query.where(transfer_lines.c.item_code == item_code)
    with read_snapshot(connection):
        rows = connection.execute(query).all()
    return [
        InTransit(
            transfer_id=row.transfer_id,
            from_site=row.from_site,
            to_site=row.to_site,
            line_no=row.line_no,
            item_code=row.item_code,
            lot=row.lot or None,
            qty=plain(row.qty),
            uom=row.base_uom,
        )
        for row in rows
    ]


# --- commands --------------------------------------------------------------------------------


def _checked_lines(
    connection: Connection, from_site: str, to_site: str, lines: Sequence[TransferLineInput]
) -> list[dict[str, Any]]:
    """The rows of a transfer's lines, each in the given unit and the item's base unit;
    what a create and an edit both check (the ends differ, 1..MAX_LINES lines)."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    if from_site == to_site:
        raise InvalidError("to_site: a transfer goes to another site")
    rows = []
    for index, given in enumerate(lines):
        uom, base, base_uom = base_quantity(
            connection, f"lines[{index}]", given.item_code, given.qty, given.uom
        )
        rows.append(
            {
                "line_no": index + 1,
                "item_code": given.item_code,
                "qty": given.qty,
                "uom": uom,
                "base_qty": base,
                "base_uom": base_uom,
            }
        )
    return rows


def create_transfer(
    connection: Connection,
    *,
    from_site: str,
    to_site: str,
    note: str,
    lines: Sequence[TransferLineInput],
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Transfer:
    """A draft transfer from a site the caller works at. Raises ``IdempotentReplay``."""
    with document_write(connection, action="transfer.create", audit=audit, claim=claim) as written:
        now = written.now
        check_site(connection, from_site, visible)
        check_site(connection, to_site, None)
        rows = _checked_lines(connection, from_site, to_site, lines)
        transfer_id = new_document_id(
            connection, sequence="#transfer", prefix="TR", column=transfer_orders.c.transfer_id
        )
        connection.execute(
            insert(transfer_orders).values(
                transfer_id=transfer_id,
                from_site=from_site,
                to_site=to_site,
                status=TransferStatus.DRAFT.value,
                note=note,
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        connection.execute(
            insert(transfer_lines), [{"transfer_id": transfer_id, **row} for row in rows]
        )
        written.doc_id, written.site_id = transfer_id, from_site
        written.after = {"to_site": to_site, "lines": [jsonable(row) for row in rows]}
        found = _read(connection, transfer_id)
        assert found is not None
    return found


def update_transfer(
    connection: Connection,
    *,
    transfer_id: str,
    from_site: str,
    to_site: str,
    note: str,
    lines: Sequence[TransferLineInput],
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Transfer:
    """Replace a draft's ends, note and lines (``PUT``). Only a draft changes: once
    approved the transfer is at both ends' stations (the feed), so a change would
    have to reach them; cancel it and make another instead. The caller must work at the
    sending site it had and at the one it gets, as for a create; a user of the receiving
    end only sees it. Raises ``IdempotentReplay``."""
    with document_write(connection, action="transfer.update", audit=audit, claim=claim) as written:
        before = _read(connection, transfer_id, lock=True)
        if before is None or not _sees(before, visible):
            raise UnknownDocumentError(_KIND, transfer_id)
        if visible is not None and before.from_site not in visible:
            raise ForbiddenError(
                f"site {before.from_site} is outside your sites: a transfer is edited at the"
                " site it leaves from"
            )
        check_version(_KIND, transfer_id, before.version, if_match)
        if before.status is not TransferStatus.DRAFT:
            raise DocumentStateError(
                _KIND,
                transfer_id,
                before.status,
                "an edit",
                "draft (cancel it and make a new transfer instead)",
            )
        check_site(connection, from_site, visible)
        check_site(connection, to_site, None)
        rows = _checked_lines(connection, from_site, to_site, lines)
        connection.execute(
            delete(transfer_lines).where(transfer_lines.c.transfer_id == transfer_id)
        )
        connection.execute(
            insert(transfer_lines), [{"transfer_id": transfer_id, **row} for row in rows]
        )
        connection.execute(
            update(transfer_orders)
            .where(transfer_orders.c.transfer_id == transfer_id)
            .values(
                from_site=from_site,
                to_site=to_site,
                note=note,
                version=before.version + 1,
                updated_at=written.now,
            )
        )
        after = _read(connection, transfer_id)
        assert after is not None
        written.doc_id, written.site_id = transfer_id, from_site
        written.before, written.after = _state(before), _state(after)
    return after


def _state(transfer: Transfer) -> dict[str, Any]:
    """What an edit's audit entry keeps of the transfer before and after it."""
    return {
        "from_site": transfer.from_site,
        "to_site": transfer.to_site,
        "note": transfer.note,
        "version": transfer.version,
        "lines": [
            {"item_code": line.item_code, "qty": str(line.qty), "uom": line.uom}
            for line in transfer.lines
        ],
    }


@dataclass(frozen=True, slots=True)
class MoveCommand:
    """Ship or receive: the command and what left or arrived."""

    command: DocCommand
    picks: Sequence[Pick] = ()


_FROM: dict[str, frozenset[TransferStatus]] = {
    "approve": frozenset({TransferStatus.DRAFT}),
    "cancel": frozenset({TransferStatus.DRAFT, TransferStatus.APPROVED}),
    "ship": frozenset({TransferStatus.APPROVED}),
    "receive": frozenset({TransferStatus.SHIPPED}),
}
_TO = {
    "approve": TransferStatus.APPROVED,
    "cancel": TransferStatus.CANCELLED,
    "ship": TransferStatus.SHIPPED,
    "receive": TransferStatus.RECEIVED,
}


def move_transfer(
    connection: Connection, order: MoveCommand, verb: str, *, projections: Projections | None
) -> Transfer:
    """``approve``, ``cancel``, ``ship`` or ``receive``, in one write transaction."""
    command = order.command
    with (
        document_write(
            connection, action=f"transfer.{verb}", audit=command.audit, claim=command.claim
        ) as written,
        # The feed's lock first, as every feed writer takes it (before the site's stream:
        # a push takes that one and never the feed's, so the two cannot deadlock).
        _feed_for(connection, verb, written.now) as writer,
    ):
        now = written.now
        head = connection.execute(
            select(transfer_orders.c.from_site, transfer_orders.c.to_site).where(
                transfer_orders.c.transfer_id == command.doc_id
            )
        ).one_or_none()
        if head is None or not _sees(head, command.visible):
            raise UnknownDocumentError(_KIND, command.doc_id)
        # Ship and receive act at one end: the caller must work there.
        end = {"ship": head.from_site, "receive": head.to_site}.get(verb)
        if end is not None:
            if command.visible is not None and end not in command.visible:
                raise ForbiddenError(f"site {end} is outside your sites: {verb} is done there")
            central_events.lock_site(connection, end, now=now)
        transfer = _read(connection, command.doc_id, lock=True)
        assert transfer is not None
        check_version(_KIND, transfer.transfer_id, transfer.version, command.if_match)
        check_state(_KIND, transfer.transfer_id, transfer.status, verb, _FROM[verb])
        values: dict[str, Any] = {"status": _TO[verb].value}
        raised: list[dict[str, Any]] = []
        if verb == "approve":
            if transfer.created_by == command.actor:
                raise SegregationOfDutiesError(_KIND, transfer.transfer_id, command.actor)
            values |= {"approved_by": command.actor, "approved_at": now}
        elif verb == "cancel":
            values["reason"] = command.reason
        elif verb == "ship":
            _ship(connection, transfer, order.picks, actor=command.actor, now=now, run=projections)
            values["shipped_at"] = now
        else:
            _receive(
                connection, transfer, order.picks, actor=command.actor, now=now, run=projections
            )
            values["received_at"] = now
            raised = _differences(connection, transfer.transfer_id, now)
        connection.execute(
            update(transfer_orders)
            .where(transfer_orders.c.transfer_id == transfer.transfer_id)
            .values(version=transfer_orders.c.version + 1, updated_at=now, **values)
        )
        found = _read(connection, transfer.transfer_id)
        assert found is not None
        if writer is not None:
            _publish(writer, transfer, found)
        written.doc_id, written.site_id = found.transfer_id, end or found.from_site
        written.before, written.after = moved(transfer, found, command.reason)
        written.after |= {
            "picks": [jsonable(vars_of(pick)) for pick in order.picks],
            "exceptions": [jsonable(row) for row in raised],
        }
    return found


_PUBLISHED_BY = frozenset({"approve", "cancel", "receive"})


@contextmanager
def _feed_for(connection: Connection, verb: str, now: datetime) -> Iterator[FeedWriter | None]:
    """The feed writer for the commands that change what the edges hold; None for ship."""
    if verb not in _PUBLISHED_BY:
        yield None
        return
    with feed_writer(connection, changed_at=now) as writer:
        yield writer


def _transfer_data(transfer: Transfer) -> TransferData:
    """An approved transfer as its two ends' stations see it: lines in the base unit."""
    return TransferData(
        transfer_id=transfer.transfer_id,
        from_site=transfer.from_site,
        to_site=transfer.to_site,
        version=transfer.version,
        lines=[
            TransferLineData(
                line_no=line.line_no,
                item_code=line.item_code,
                qty=plain(line.base_qty),
                uom=line.base_uom,
            )
            for line in transfer.lines
        ],
    )


def _publish(writer: FeedWriter, before: Transfer, after: Transfer) -> None:
    """An approved transfer goes to both ends (a change for each site); once it is
    cancelled or received at central, its tombstone. A draft never left central."""
    if after.status is TransferStatus.APPROVED:
        data: dict[str, Any] | None = _transfer_data(after).model_dump(mode="json")
        op = ChangeOp.UPSERT
    elif before.status in (TransferStatus.APPROVED, TransferStatus.SHIPPED):
        data, op = None, ChangeOp.DELETE
    else:
        return
    for site_id in (after.from_site, after.to_site):
        writer.append(
            entity=FeedEntity.TRANSFER, key=after.transfer_id, op=op, data=data, site_id=site_id
        )


def vars_of(pick: Pick) -> dict[str, Any]:
    return {"line_no": pick.line_no, "location": pick.location, "lot": pick.lot, "qty": pick.qty}


def _line(transfer: Transfer, where: str, line_no: int) -> TransferLine:
    for line in transfer.lines:
        if line.line_no == line_no:
            return line
    raise InvalidError(f"{where}.line_no: transfer {transfer.transfer_id} has no line {line_no}")


def _checked_picks(
    connection: Connection, transfer: Transfer, site_id: str, picks: Sequence[Pick]
) -> list[tuple[TransferLine, Pick]]:
    if not picks:
        raise InvalidError("lines: say what moved, line by line")
    checked = []
    for index, pick in enumerate(picks):
        where = f"lines[{index}]"
        if pick.qty <= 0:
            raise InvalidError(f"{where}.qty: must be positive")
        line = _line(transfer, where, pick.line_no)
        active_location(connection, site_id, where, pick.location)
        checked.append((line, pick))
    return checked


def _movement(
    kind: EventKind, transfer_id: str, line: TransferLine, pick: Pick, **more: Any
) -> Movement:
    return Movement(
        kind=kind,
        item=line.item_code,
        location=pick.location,
        qty=pick.qty if kind is EventKind.TRANSFER_IN else -pick.qty,
        uom=line.base_uom,
        lot=pick.lot,
        doc_type=TRANSFER_ORDER,
        doc_id=transfer_id,
        doc_line=line.line_no,
        **more,
    )


def _ship(
    connection: Connection,
    transfer: Transfer,
    picks: Sequence[Pick],
    *,
    actor: str,
    now: datetime,
    run: Projections | None,
) -> None:
    moves = []
    per_line: dict[int, Decimal] = defaultdict(Decimal)
    for index, (line, pick) in enumerate(
        _checked_picks(connection, transfer, transfer.from_site, picks)
    ):
        where = f"lines[{index}]"
        per_line[line.line_no] += pick.qty
        if per_line[line.line_no] > line.base_qty:
            raise ConflictError(
                f"{where}: line {line.line_no} would ship {plain(per_line[line.line_no])} "
                f"{line.base_uom} of {plain(line.base_qty)} ordered"
            )
        refuse_expired(connection, where, line.item_code, pick.lot)
        expiry = lot_expiry(connection, line.item_code, pick.lot)
        moves.append(
            _movement(EventKind.TRANSFER_OUT, transfer.transfer_id, line, pick, expiry=expiry)
        )
    _book(connection, transfer, transfer.from_site, moves, actor=actor, now=now, run=run)


def _receive(
    connection: Connection,
    transfer: Transfer,
    picks: Sequence[Pick],
    *,
    actor: str,
    now: datetime,
    run: Projections | None,
) -> None:
    moves = []
    for line, pick in _checked_picks(connection, transfer, transfer.to_site, picks):
        shipped = {lot.lot: lot.expiry for lot in line.lots}
        expiry = shipped.get(pick.lot) or lot_expiry(connection, line.item_code, pick.lot)
        moves.append(
            _movement(EventKind.TRANSFER_IN, transfer.transfer_id, line, pick, expiry=expiry)
        )
    _book(connection, transfer, transfer.to_site, moves, actor=actor, now=now, run=run)


def _book(
    connection: Connection,
    transfer: Transfer,
    site_id: str,
    moves: list[Movement],
    *,
    actor: str,
    now: datetime,
    run: Projections | None,
) -> None:
    central_events.book(
        connection,
        site_id=site_id,
        movements=moves,
        actor=actor,
        ref=transfer.transfer_id,
        now=now,
        projections=run,
    )


def _differences(connection: Connection, transfer_id: str, now: datetime) -> list[dict[str, Any]]:
    """An exception per (line, lot) whose arrival differs from its departure."""
    rows = connection.execute(
        select(transfer_lots, transfer_lines.c.item_code)
        .join(
            transfer_lines,
            (transfer_lines.c.transfer_id == transfer_lots.c.transfer_id)
            & (transfer_lines.c.line_no == transfer_lots.c.line_no),
        )
        .where(transfer_lots.c.transfer_id == transfer_id)
        .order_by(transfer_lots.c.line_no, transfer_lots.c.lot)
    ).all()
    raised = []
    for row in rows:
        if row.shipped_qty == row.received_qty:
            continue
        if row.shipped_qty == 0:
            kind = "wrong_lot"
        elif row.received_qty < row.shipped_qty:
            kind = "short"
        else:
            kind = "over"
        raised.append(
            {
                "transfer_id": transfer_id,
                "line_no": row.line_no,
                "kind": kind,
                "item_code": row.item_code,
                "lot": row.lot,
                "shipped_qty": plain(row.shipped_qty),
                "received_qty": plain(row.received_qty),
                "status": "open",
                "raised_at": now,
            }
        )
    if raised:
        connection.execute(insert(transfer_exceptions), raised)
    return raised


# --- arrival exceptions ------------------------------------------------------------------------


def _exception(row: Any) -> TransferException:
    return from_row(
        TransferException,
        row,
        lot=row.lot or None,
        shipped_qty=plain(row.shipped_qty),
        received_qty=plain(row.received_qty),
    )


def _exceptions_query(visible: frozenset[str] | None, site_id: str | None) -> Any:
    return (
        select(transfer_exceptions)
        .join(transfer_orders, transfer_orders.c.transfer_id == transfer_exceptions.c.transfer_id)
        .where(*_either_end(site_id, visible))
    )


def list_exceptions(
    connection: Connection,
    *,
    transfer_id: str | None,
    status: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
) -> list[TransferException]:
    query = _exceptions_query(visible, site_id).order_by(transfer_exceptions.c.exception_id)
    if transfer_id is not None:
        query = query.where(transfer_exceptions.c.transfer_id == transfer_id)
    if status is not None:
        query = query.where(transfer_exceptions.c.status == status)
    with read_snapshot(connection):
        return [_exception(row) for row in connection.execute(query.limit(1000)).all()]


def resolve_exception(
    connection: Connection,
    exception_id: int,
    *,
    resolution: str,
    lost: bool,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> TransferException:
    """Close an exception with what a person found out. ``lost`` (a short only) takes the
    missing quantity out of transit: it arrived nowhere and is a loss."""
    with document_write(
        connection, action="transfer_exception.resolve", audit=audit, claim=claim
    ) as written:
        now = written.now
        row = connection.execute(
            _exceptions_query(visible, None)
            .where(transfer_exceptions.c.exception_id == exception_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownDocumentError("transfer exception", str(exception_id))
        check_state("transfer exception", str(exception_id), row.status, "resolve", _OPEN)
        if lost and row.kind != "short":
            raise ConflictError(f"only a short arrival can be lost, this one is {row.kind}")
        if lost:
            connection.execute(
                update(transfer_lots)
                .where(
                    transfer_lots.c.transfer_id == row.transfer_id,
                    transfer_lots.c.line_no == row.line_no,
                    transfer_lots.c.lot == row.lot,
                )
                .values(lost_qty=transfer_lots.c.lost_qty + (row.shipped_qty - row.received_qty))
            )
        connection.execute(
            update(transfer_exceptions)
            .where(transfer_exceptions.c.exception_id == exception_id)
            .values(status="resolved", resolved_by=actor, resolved_at=now, resolution=resolution)
        )
        written.doc_id = str(exception_id)
        written.before = {"status": row.status}
        written.after = {"status": "resolved", "resolution": resolution, "lost": lost}
        found = connection.execute(
            select(transfer_exceptions).where(transfer_exceptions.c.exception_id == exception_id)
        ).one()
    return _exception(found)


def get_exception(
    connection: Connection, exception_id: int, *, visible: frozenset[str] | None
) -> TransferException:
    with read_snapshot(connection):
        row = connection.execute(
            _exceptions_query(visible, None).where(
                transfer_exceptions.c.exception_id == exception_id
            )
        ).one_or_none()
    if row is None:
        raise UnknownDocumentError("transfer exception", str(exception_id))
    return _exception(row)


# --- the projection ----------------------------------------------------------------------------


def _named(events: Sequence[Any]) -> list[Any]:
    return [
        event
        for event in events
        if event.doc_type == TRANSFER_ORDER
        and event.kind in (EventKind.TRANSFER_OUT, EventKind.TRANSFER_IN)
    ]


def _tally(
    connection: Connection, site_id_of: Any, events: Sequence[Any]
) -> dict[tuple[str, int, str], tuple[Decimal, Decimal, date | None]]:
    """(transfer, line, lot) → (shipped, received, expiry) of the events that fit."""
    ids = sorted({event.doc_id for event in events})
    orders = {
        row.transfer_id: row
        for row in connection.execute(
            select(
                transfer_orders.c.transfer_id,
                transfer_orders.c.from_site,
                transfer_orders.c.to_site,
            ).where(transfer_orders.c.transfer_id.in_(ids))
        ).all()
    }
    lines = {
        (row.transfer_id, row.line_no): row
        for row in connection.execute(
            select(
                transfer_lines.c.transfer_id,
                transfer_lines.c.line_no,
                transfer_lines.c.item_code,
                transfer_lines.c.base_uom,
            ).where(transfer_lines.c.transfer_id.in_(ids))
        ).all()
    }
    sums: dict[tuple[str, int, str], tuple[Decimal, Decimal, date | None]] = {}
    for event in events:
        order = orders.get(event.doc_id)
        line = lines.get((event.doc_id, event.doc_line))
        if (
            order is None
            or line is None
            or line.item_code != event.item
            or line.base_uom != event.uom
        ):
            continue
        outbound = EventKind(event.kind) is EventKind.TRANSFER_OUT
        if site_id_of(event) != (order.from_site if outbound else order.to_site):
            continue
        key = (event.doc_id, int(event.doc_line), event.lot or "")
        shipped, received, expiry = sums.get(key, (_ZERO, _ZERO, None))
        if outbound:
            shipped -= event.qty
        else:
            received += event.qty
        sums[key] = (shipped, received, expiry or event.expiry)
    return sums


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """Add a push's (or a booking's) transfer events to ``transfer_lots``."""
    named = _named(accepted.events)
    if not named:
        return
    sums = _tally(connection, lambda _event: accepted.site_id, named)
    if not sums:
        return
    ids = sorted({key[0] for key in sums})
    held = {
        (row.transfer_id, row.line_no, row.lot)
        for row in connection.execute(
            select(transfer_lots.c.transfer_id, transfer_lots.c.line_no, transfer_lots.c.lot).where(
                transfer_lots.c.transfer_id.in_(ids)
            )
        ).all()
    }
    for (transfer_id, line_no, lot), (shipped, received, expiry) in sums.items():
        if (transfer_id, line_no, lot) in held:
            connection.execute(
                update(transfer_lots)
                .where(
                    transfer_lots.c.transfer_id == transfer_id,
                    transfer_lots.c.line_no == line_no,
                    transfer_lots.c.lot == lot,
                )
                .values(
                    shipped_qty=transfer_lots.c.shipped_qty + shipped,
                    received_qty=transfer_lots.c.received_qty + received,
                )
            )
        else:
            connection.execute(
                insert(transfer_lots).values(
                    transfer_id=transfer_id,
                    line_no=line_no,
                    lot=lot,
                    expiry=expiry,
                    shipped_qty=shipped,
                    received_qty=received,
                    lost_qty=_ZERO,
                )
            )
    shipped_ids = sorted({key[0] for key, value in sums.items() if value[0] > 0})
    if shipped_ids:
        # An edge's transfer_out moves an approved transfer on, as a central ship does.
        connection.execute(
            update(transfer_orders)
            .where(
                transfer_orders.c.transfer_id.in_(shipped_ids),
                transfer_orders.c.status == TransferStatus.APPROVED.value,
            )
            .values(
                status=TransferStatus.SHIPPED.value,
                shipped_at=accepted.received_at,
                version=transfer_orders.c.version + 1,
                updated_at=accepted.received_at,
            )
        )
    ended = sorted(
        {event.doc_id for event in named if event.ref == TRANSFER_COMPLETE and event.doc_id in ids}
    )
    if ended:
        _close_when_both_ended(connection, ended, accepted.received_at)


def _close_when_both_ended(connection: Connection, ids: Sequence[str], now: datetime) -> None:
    """Close each shipped transfer of ``ids`` whose two ends have both said they are done,
    and raise its arrival differences (as ``receive`` does). The sending end is done when
    its edge's marked ``transfer_out`` is in the ledger, or central shipped it (a central
    ship books the whole shipment at once); the receiving end when its edge's marked
    ``transfer_in`` is. Read by the ledgers' ``doc_id`` index: only the marked events."""
    orders = connection.execute(
        select(
            transfer_orders.c.transfer_id, transfer_orders.c.from_site, transfer_orders.c.to_site
        )
        .where(
            transfer_orders.c.transfer_id.in_(ids),
            transfer_orders.c.status == TransferStatus.SHIPPED.value,
        )
        .with_for_update()
    ).all()
    for order in orders:
        marked = {
            (row.site_id, row.kind)
            for row in connection.execute(
                select(ledger_events.c.site_id, ledger_events.c.kind).where(
                    ledger_events.c.doc_id == order.transfer_id,
                    ledger_events.c.doc_type == TRANSFER_ORDER,
                    ledger_events.c.ref == TRANSFER_COMPLETE,
                )
            ).all()
        }
        sent = (order.from_site, EventKind.TRANSFER_OUT.value) in marked or (
            connection.execute(
                select(central_event_rows.c.event_id)
                .where(
                    central_event_rows.c.doc_id == order.transfer_id,
                    central_event_rows.c.doc_type == TRANSFER_ORDER,
                    central_event_rows.c.kind == EventKind.TRANSFER_OUT.value,
                )
                .limit(1)
            ).first()
            is not None
        )
        if not sent or (order.to_site, EventKind.TRANSFER_IN.value) not in marked:
            continue
        connection.execute(
            update(transfer_orders)
            .where(transfer_orders.c.transfer_id == order.transfer_id)
            .values(
                status=TransferStatus.RECEIVED.value,
                received_at=now,
                version=transfer_orders.c.version + 1,
                updated_at=now,
            )
        )
        _differences(connection, order.transfer_id, now)


_COLUMNS = (
    "site_id",
    "kind",
    "item",
    "lot",
    "expiry",
    "qty",
    "uom",
    "doc_type",
    "doc_id",
    "doc_line",
)


def rebuild(connection: Connection) -> None:
    """Recompute ``transfer_lots`` (shipped and received; losses are a person's decision and
    are kept) from both streams of the ledger."""
    union = ledger_union(*_COLUMNS).subquery()
    events = connection.execute(select(union).where(union.c.doc_type == TRANSFER_ORDER)).all()
    sums = _tally(connection, lambda event: event.site_id, _named(events))
    lost = {
        (row.transfer_id, row.line_no, row.lot): row.lost_qty
        for row in connection.execute(select(transfer_lots)).all()
    }
    connection.execute(delete(transfer_lots))
    rows = [
        {
            "transfer_id": transfer_id,
            "line_no": line_no,
            "lot": lot,
            "expiry": expiry,
            "shipped_qty": shipped,
            "received_qty": received,
            "lost_qty": lost.get((transfer_id, line_no, lot), _ZERO),
        }
        for (transfer_id, line_no, lot), (shipped, received, expiry) in sums.items()
    ]
    if rows:
        connection.execute(insert(transfer_lots), rows)


def progress(connection: Connection) -> Mapping[tuple[str, int, str], tuple[Decimal, Decimal]]:
    """The projection as it stands, for comparing with a rebuild."""
    return {
        (row.transfer_id, row.line_no, row.lot): (row.shipped_qty, row.received_qty)
        for row in connection.execute(select(transfer_lots)).all()
    }
