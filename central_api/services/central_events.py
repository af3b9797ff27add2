"""Central's own event stream: stock movements booked at headquarters.

A site with an edge writes its own events and pushes them (``services.ingest``). Documents
done at central (a receipt entered for a site without an edge, a QC release, a purchase
return; later sales shipments, write-offs, count adjustments, opening stock) need stock
events too, and DOMAIN.md wants them exactly-once like the edge's but "never a seq from a
site's stream". So:

* **Own table, own gapless seq.** Central's events go to ``central_events`` (the same
  columns as ``ledger_events``), numbered by a per-site counter in
  ``central_stream_state`` taken in the booking transaction: a rolled-back booking gives
  its numbers back, so the stream stays gapless. A site's ledger is the union of both
  tables (:func:`ledger_union`); an event id is a UUIDv7 either way, so the two never
  collide. Ingest, its statements and its benchmarks are untouched: nothing on the edge
  path reads or writes the new table.
* **Exactly once.** A booking is part of one document command, in that command's write
  transaction, after ``idempotency.check``: a retried request (same ``Idempotency-Key``)
  replays the document and books nothing; the events commit with the document or not at
  all.
* **Same projections, same transaction.** :func:`book` adds the events to
  ``stock_balances`` and runs the app's :class:`~central_api.services.projections.Projections`
  (``po_progress`` and whatever comes later) with them as
  :class:`~central_api.services.projections.AcceptedEvents`, exactly as ingest does after
  an insert, so a projection cannot tell a central event from an edge one.
* **Serialised with the site's pushes.** The booking locks the site's
  ``site_sync_state`` row, the row ingest locks for a push: a projection's
  read-modify-write of a PO line never races a push of the same site. Callers lock the
  site *before* their document (:func:`lock_site`), the order ingest takes them in.
* **Validated before it exists.** Unlike an edge fact, a central document may be refused:
  an outbound event that would take a balance below zero, or an event in a unit other
  than the balance's, is a 409 naming the key; nothing is written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central_api.errors import ConflictError
from central_api.models.ledger import (
    central_events,
    central_stream_state,
    ledger_events,
    site_sync_state,
)
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services.periods import refuse_closed
from central_api.services.projections import AcceptedEvents, Projections
from jxc import uuid7
from jxc.contract import EventKind, LedgerEvent

CENTRAL = "central"
EDGE = "edge"


@dataclass(frozen=True, slots=True)
class Movement:
    """One stock movement a central document books (signed by kind, like an event)."""

    kind: EventKind
    item: str
    location: str
    qty: Decimal
    uom: str
    lot: str | None = None
    expiry: date | None = None
    unit_cost: Decimal | None = None
    doc_type: str | None = None
    doc_id: str | None = None
    doc_line: int | None = None
    ref: str | None = None
    """This movement's own reference, instead of the booking's ``ref`` (an import's row)."""


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


def lock_site(connection: Connection, site_id: str, *, now: datetime) -> None:
    """Create the site's sync row if need be (balances refer to it) and lock it, the row a
    push of that site locks: call it first in the transaction, before the document."""
    connection.execute(
        _insert(connection)(site_sync_state)
        .values(site_id=site_id, acked_through_seq=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[site_sync_state.c.site_id])
    )
    connection.execute(
        select(site_sync_state.c.site_id)
        .where(site_sync_state.c.site_id == site_id)
        .with_for_update()
    ).one()


def _take_seqs(connection: Connection, site_id: str, count: int) -> int:
    """Reserve ``count`` numbers of the site's central stream; the first one."""
    taken = (
        _insert(connection)(central_stream_state)
        .values(site_id=site_id, last_seq=count)
        .on_conflict_do_update(
            index_elements=[central_stream_state.c.site_id],
            set_={"last_seq": central_stream_state.c.last_seq + count},
        )
        .returning(central_stream_state.c.last_seq)
    )
    return int(connection.execute(taken).scalar_one()) - count + 1


def balance(
    connection: Connection, site_id: str, location: str, item: str, lot: str | None
) -> tuple[str, Decimal] | None:
    """``(uom, qty)`` on hand at one key, or None if it never had stock."""
    row = connection.execute(
        select(stock_balances.c.uom, stock_balances.c.qty).where(
            stock_balances.c.site_id == site_id,
            stock_balances.c.location == location,
            stock_balances.c.item == item,
            stock_balances.c.lot == (NO_LOT if lot is None else lot),
        )
    ).one_or_none()
    return None if row is None else (row.uom, row.qty)


def book(
    connection: Connection,
    *,
    site_id: str,
    movements: Sequence[Movement],
    actor: str,
    ref: str,
    now: datetime,
    projections: Projections | None,
    occurred_at: datetime | None = None,
) -> list[LedgerEvent]:
    """Book ``movements`` as central events of ``site_id``, in the caller's write
    transaction (after :func:`lock_site`): balances and projections move with them.
    ``occurred_at`` (default ``now``) dates them otherwise: a count's adjustments are
    dated at its snapshot, when the difference was true.

    Raises :class:`ConflictError` (nothing written) for a movement that would take a
    balance below zero or is in another unit than its balance, and for a booking dated
    inside a closed month by a user without ``period.post_closed`` (``services.periods``).
    """
    if not movements:
        return []
    if occurred_at is not None:
        refuse_closed(connection, occurred_at, actor=actor)
    first = _take_seqs(connection, site_id, len(movements))
    events = [
        LedgerEvent(
            event_id=uuid7(),
            site_id=site_id,
            seq=first + index,
            occurred_at=now if occurred_at is None else occurred_at,
            kind=move.kind,
            item=move.item,
            lot=move.lot,
            expiry=move.expiry,
            location=move.location,
            qty=move.qty,
            uom=move.uom,
            unit_cost=move.unit_cost,
            ref=move.ref or ref,
            actor=actor[:64],
            doc_type=move.doc_type,
            doc_id=move.doc_id,
            doc_line=move.doc_line,
        )
        for index, move in enumerate(movements)
    ]
    _add_to_balances(connection, site_id, events, now)
    connection.execute(
        central_events.insert(),
        [
            {
                **event.model_dump(exclude={"event_id"}),
                "doc_type": event.doc_type,
                "doc_id": event.doc_id,
                "doc_line": event.doc_line,
                "event_id": str(event.event_id),
                "kind": event.kind.value,
                "received_at": now,
            }
            for event in events
        ],
    )
    if projections:
        projections.run(
            connection,
            AcceptedEvents(site_id=site_id, events=events, received_at=now, central=True),
        )
    return events


def _add_to_balances(
    connection: Connection, site_id: str, events: Sequence[LedgerEvent], now: datetime
) -> None:
    """Every key's sum checked against its balance, then written: the balances read in a
    few queries and written with one ``executemany`` each for updates and inserts, not a
    query and a statement per key (a count's 20,000 adjustments are one booking)."""
    sums: dict[tuple[str, str, str], tuple[str, Decimal]] = {}
    for event in events:
        key = (event.location, event.item, NO_LOT if event.lot is None else event.lot)
        uom, qty = sums.get(key, (event.uom, Decimal(0)))
        if uom != event.uom:
            raise ConflictError(f"{event.item} at {event.location}: two units in one booking")
        sums[key] = (uom, qty + event.qty)
    held_at = _balances(connection, site_id, sums)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for (location, item, lot), (uom, qty) in sums.items():
        held = held_at.get((location, item, lot))
        if held is not None and held[0] != uom:
            raise ConflictError(
                f"{item} at {site_id}/{location}: stock is kept in {held[0]}, not {uom}"
            )
        on_hand = Decimal(0) if held is None else held[1]
        if qty < 0 and on_hand + qty < 0:
            raise ConflictError(
                f"{item}{' lot ' + lot if lot else ''} at {site_id}/{location}: "
                f"{on_hand} {uom} on hand, {-qty} would leave it below zero"
            )
        row = {"b_location": location, "b_item": item, "b_lot": lot, "b_qty": qty}
        (inserts if held is None else updates).append(row | {"b_uom": uom})
    if inserts:
        connection.execute(
            stock_balances.insert().values(
                site_id=site_id,
                location=bindparam("b_location"),
                item=bindparam("b_item"),
                lot=bindparam("b_lot"),
                uom=bindparam("b_uom"),
                qty=bindparam("b_qty", type_=stock_balances.c.qty.type),
                updated_at=now,
            ),
            inserts,
        )
    if updates:
        connection.execute(
            stock_balances.update()
            .where(
                stock_balances.c.site_id == site_id,
                stock_balances.c.location == bindparam("b_location"),
                stock_balances.c.item == bindparam("b_item"),
                stock_balances.c.lot == bindparam("b_lot"),
            )
            .values(
                qty=stock_balances.c.qty + bindparam("b_qty", type_=stock_balances.c.qty.type),
                updated_at=now,
            ),
            updates,
        )


_CHUNK = 500
"""Item codes per ``IN`` list: well under any driver's limit on bound parameters."""


def _balances(
    connection: Connection, site_id: str, keys: Collection[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[str, Decimal]]:
    """``(uom, qty)`` of the site's balances at ``keys`` (location, item, lot) that exist.

    One key alone is the single-row read a small booking has always made; more are read
    by their items, 500 at a time (a few rows of other locations come along, unused)."""
    if len(keys) == 1:
        ((location, item, lot),) = keys
        one = balance(connection, site_id, location, item, lot or None)
        return {} if one is None else {(location, item, lot): one}
    codes = sorted({item for _location, item, _lot in keys})
    found: dict[tuple[str, str, str], tuple[str, Decimal]] = {}
    for first in range(0, len(codes), _CHUNK):
        rows = connection.execute(
            select(
                stock_balances.c.location,
                stock_balances.c.item,
                stock_balances.c.lot,
                stock_balances.c.uom,
                stock_balances.c.qty,
            ).where(
                stock_balances.c.site_id == site_id,
                stock_balances.c.item.in_(codes[first : first + _CHUNK]),
            )
        )
        for row in rows:
            key = (row.location, row.item, row.lot)
            if key in keys:
                found[key] = (row.uom, row.qty)
    return found


def lot_expiry(connection: Connection, item_code: str, lot: str | None) -> date | None:
    """The expiry a lot's events state, edge or central (the earliest if they disagree)."""
    if not lot:
        return None
    found = [
        select(table.c.expiry).where(
            table.c.item == item_code, table.c.lot == lot, table.c.expiry.is_not(None)
        )
        for table in (ledger_events, central_events)
    ]
    union = union_all(*found).subquery()
    value = connection.execute(select(func.min(union.c.expiry))).scalar_one_or_none()
    return value if isinstance(value, date) else None


def lot_expiries(
    connection: Connection, keys: Iterable[tuple[str, str | None]]
) -> dict[tuple[str, str], date]:
    """:func:`lot_expiry` of many ``(item, lot)`` at once: one query per 500 items rather
    than one per line (a count of 20,000 lines posts its adjustments with their expiry)."""
    wanted = {(item, lot) for item, lot in keys if lot}
    codes = sorted({item for item, _lot in wanted})
    found: dict[tuple[str, str], date] = {}
    for first in range(0, len(codes), _CHUNK):
        chunk = codes[first : first + _CHUNK]
        parts = [
            select(table.c.item, table.c.lot, table.c.expiry).where(
                table.c.item.in_(chunk), table.c.lot.is_not(None), table.c.expiry.is_not(None)
            )
            for table in (ledger_events, central_events)
        ]
        union = union_all(*parts).subquery()
        rows = connection.execute(
            select(union.c.item, union.c.lot, func.min(union.c.expiry)).group_by(
                union.c.item, union.c.lot
            )
        )
        for item, lot, expiry in rows:
            if (item, lot) in wanted and isinstance(expiry, date):
                found[(item, lot)] = expiry
    return found


def ledger_union(*columns: str) -> Select[tuple[object, ...]]:
    """Every event of every site, edge and central, with ``columns`` and ``stream``
    (``"edge"`` / ``"central"``): what a rebuild of a projection reads."""
    edge = select(*(ledger_events.c[name] for name in columns), literal(EDGE).label("stream"))
    central = select(
        *(central_events.c[name] for name in columns), literal(CENTRAL).label("stream")
    )
    return select(union_all(edge, central).subquery())
