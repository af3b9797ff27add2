"""PO progress: how much of each purchase order line has been received, as a projection.

Registered as the ledger projection ``po_progress`` (:mod:`central_api.services.projections`),
it runs inside every push's transaction with the events the push really inserted, and
inside every booking of central's own events (:mod:`central_api.services.central_events`)
with those. Only an event that names a PO line (``doc_type = "purchase_order"``,
``doc_id``, ``doc_line``) counts; every other event costs one attribute test in a
comprehension and nothing in the database. A ``receipt`` adds to ``received_qty``; every
named event moves the line's stock bucket where it happens (``quarantined_qty`` in a
quarantine-kind location, else ``accepted_qty``), and an ``issue`` (back to the supplier)
adds to ``returned_qty``. Only the lines a push names are read, by the primary key, in one
query per 2,000 lines, every amount as the stored integer micro-units (the push's own
quantities are converted once, for the batch), and written back with one ``executemany``
of driver rows: the projection does no Decimal arithmetic but for a unit conversion and
an exception's text. A PO's status also depends on its other lines; three integers of each
are read, in one query, only for the POs whose status the named lines leave open.

Rules (facts are never refused: the push is never refused for any of these):

* a receipt adds its quantity, converted to the line's base unit by the item's exact unit
  factor, to the line's ``received_qty``;
* the PO moves by itself to ``partly_received`` (something received) and ``received``
  (every line at least its quantity less its under-tolerance); its version moves too, so a
  person's stale ``If-Match`` no longer matches;
* a receipt that takes a line beyond its quantity plus over-tolerance is counted *and*
  raises an ``over_receipt`` exception (例外) for a person to resolve;
* a receipt naming a line that does not exist, a PO of another site, another item, or a
  unit the item does not have is stored in the ledger but not counted, with an exception
  saying why; one against a PO that is draft, cancelled or closed is counted, with an
  exception (the site booked it offline before it heard of the change).

:func:`rebuild` recomputes every line's received quantity and every PO's progress status
from the ledger alone; a property test holds it equal to the incremental result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, bindparam, insert, select, update

from central_api.core.sqlbits import placeholder
from central_api.models.base import from_micro_units, to_micro_units, to_micro_units_many
from central_api.models.master import item_units, locations
from central_api.models.purchasing import (
    purchase_exceptions,
    purchase_order_lines,
    purchase_orders,
)
from central_api.services.central_events import ledger_union
from central_api.services.projections import AcceptedEvents
from central_api.services.purchasing import RECEIVABLE, PoStatus
from central_api.services.valuation import MICRO, micro
from jxc.contract import EventKind, LedgerEvent

NAME = "po_progress"
PURCHASE_ORDER = "purchase_order"
_HUNDRED = Decimal(100)
_PERCENT = 100 * MICRO
"""100 % in micro-units: tolerances are stored as micro-units of a percent."""
_CHUNK = 2000
"""PO lines named per read (two bound values each: well inside SQLite's limit)."""

_STATUSES = {status.value: status for status in PoStatus}
"""A stored status's member, by its text (a dict look-up per line read, not a call)."""
_RECEIPT = EventKind.RECEIPT.value
_ISSUE = EventKind.ISSUE.value

PROGRESS_STATUSES = frozenset(
    {PoStatus.APPROVED, PoStatus.SENT, PoStatus.PARTLY_RECEIVED, PoStatus.RECEIVED}
)
"""States the projection moves between; the others (draft, closed, cancelled) are a
person's decision and stay as they are."""


def _complete(received: int, base_qty: int, under_tolerance: int) -> bool:
    """``received >= base_qty * (1 - under_tolerance / 100)``, exactly, in micro-units."""
    return received * _PERCENT >= base_qty * (_PERCENT - under_tolerance)


@dataclass(slots=True)
class _Line:
    """A PO line's progress. Every amount is the integer micro-units the table stores,
    read and written as it is: a push converts nothing but its own quantities (once, for
    the batch), and the sums are exact integer additions."""

    po_id: str
    line_no: int
    site_id: str
    status: PoStatus
    sent: bool
    item_code: str
    base_uom: str
    base_qty: int
    over_tolerance: int
    under_tolerance: int
    received: int
    accepted: int = 0
    quarantined: int = 0
    returned: int = 0

    @property
    def beyond_limit(self) -> bool:
        """``received > base_qty * (1 + over_tolerance / 100)``, exactly."""
        return self.received * _PERCENT > self.base_qty * (_PERCENT + self.over_tolerance)


def progress_status(
    status: PoStatus, sent: bool, *, all_complete: bool, any_received: bool
) -> PoStatus:
    """The status a PO's received quantities give it, for a PO in progress: from whether
    every line is complete (at least its quantity less its under-tolerance) and whether
    any has received something."""
    if status not in PROGRESS_STATUSES:
        return status
    if all_complete:
        return PoStatus.RECEIVED
    if any_received:
        return PoStatus.PARTLY_RECEIVED
    return PoStatus.SENT if sent else PoStatus.APPROVED


_LINE_COLUMNS = (
    purchase_order_lines.c.po_id,
    purchase_order_lines.c.line_no,
    purchase_orders.c.site_id,
    purchase_orders.c.status,
    purchase_orders.c.sent_at,
    purchase_order_lines.c.item_code,
    purchase_order_lines.c.base_uom,
    micro(purchase_order_lines.c.base_qty),
    micro(purchase_order_lines.c.over_tolerance),
    micro(purchase_order_lines.c.under_tolerance),
    micro(purchase_order_lines.c.received_qty),
    micro(purchase_order_lines.c.accepted_qty),
    micro(purchase_order_lines.c.quarantined_qty),
    micro(purchase_order_lines.c.returned_qty),
)


def _read_lines(
    connection: Connection, named: Iterable[tuple[str, int]] | None
) -> dict[tuple[str, int], _Line]:
    """The PO lines ``named`` ((PO id, line no), by the primary key), every line for
    None; amounts as the stored integers."""
    query = select(*_LINE_COLUMNS).join(
        purchase_orders, purchase_orders.c.po_id == purchase_order_lines.c.po_id
    )
    wanted: set[tuple[str, int]] | None = None
    if named is None:
        queries = [query]
    else:
        # By the primary key: (po_id, line_no) IN (VALUES ...) would scan the table on
        # SQLite, so the PO ids and line numbers are matched apart (an index seek on
        # each pair of the two lists) and a pair no event names is dropped below.
        wanted = set(named)
        keys = iter(sorted(wanted))
        queries = [
            query.where(
                purchase_order_lines.c.po_id.in_(sorted({po for po, _line in chunk})),
                purchase_order_lines.c.line_no.in_(sorted({line for _po, line in chunk})),
            )
            for chunk in iter(lambda: list(islice(keys, _CHUNK)), [])
        ]
    lines = {}
    for one in queries:
        for row in connection.execute(one).all():
            (po_id, line_no, site_id, status, sent_at, item_code, base_uom, *amounts) = row
            if wanted is not None and (po_id, line_no) not in wanted:
                continue
            base_qty, over, under, received, accepted, quarantined, returned = amounts
            lines[(po_id, line_no)] = _Line(
                po_id,
                line_no,
                site_id,
                _STATUSES[status],
                sent_at is not None,
                item_code,
                base_uom,
                base_qty,
                over,
                under,
                received,
                accepted,
                quarantined,
                returned,
            )
    return lines


def _other_lines(
    connection: Connection, po_ids: Iterable[str], known: Mapping[tuple[str, int], _Line]
) -> dict[str, list[tuple[int, int, int]]]:
    """The progress (received, base quantity, under-tolerance) of the lines of ``po_ids``
    not in ``known``: what a PO's status needs of the lines a push does not name."""
    found: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    query = select(
        purchase_order_lines.c.po_id,
        purchase_order_lines.c.line_no,
        micro(purchase_order_lines.c.received_qty),
        micro(purchase_order_lines.c.base_qty),
        micro(purchase_order_lines.c.under_tolerance),
    ).where(purchase_order_lines.c.po_id.in_(sorted(set(po_ids))))
    for po_id, line_no, received, base_qty, under in connection.execute(query).all():
        if (po_id, line_no) not in known:
            found[po_id].append((received, base_qty, under))
    return found


class _Receipt(NamedTuple):
    """The part of an event naming a PO line the projection reads (an event or a row).

    Named so for history: besides receipts, a transfer out of or into quarantine (a QC
    release) and an issue back to the supplier (a purchase return or a rejection) name
    their PO line too, and move its accepted / quarantined / returned quantities.
    ``qty`` is in micro-units; ``event_id`` is the event's UUID (or its text, from a
    row), spelled only for an exception. A named tuple, as a push builds one per
    receipt.
    """

    event_id: Any
    site_id: str
    item: str
    qty: int
    uom: str
    doc_id: str
    doc_line: int
    kind: str = EventKind.RECEIPT.value
    location: str = ""


class _Tally:
    """Receipts applied to lines in memory; what to write afterwards."""

    def __init__(
        self,
        connection: Connection,
        lines: dict[tuple[str, int], _Line],
        quarantine: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.connection = connection
        self.lines = lines
        self.quarantine = quarantine
        """(site, location code) of every quarantine-kind location the events name."""
        self.touched: set[tuple[str, int]] = set()
        self.exceptions: list[dict[str, Any]] = []
        self._factors: dict[tuple[str, str], Decimal | None] = {}

    def _factor(self, item: str, uom: str) -> Decimal | None:
        key = (item, uom)
        if key not in self._factors:
            self._factors[key] = self.connection.execute(
                select(item_units.c.factor).where(
                    item_units.c.item_code == item, item_units.c.uom == uom
                )
            ).scalar_one_or_none()
        return self._factors[key]

    def _in_base(self, event: _Receipt, line: _Line) -> int | None:
        """The event's quantity in the line's base unit (micro-units); None for a unit
        the item does not have. Converted in Decimal, as the factor is exact; a product
        with more than six places raises, as storing it would."""
        if event.uom == line.base_uom:
            return event.qty
        factor = self._factor(event.item, event.uom)
        if factor is None:
            return None
        return to_micro_units(from_micro_units(event.qty) * factor)

    def _raise(self, kind: str, receipt: _Receipt, detail: str, qty: Decimal | None) -> None:
        self.exceptions.append(
            {
                "kind": kind,
                "site_id": receipt.site_id,
                "po_id": receipt.doc_id,
                "line_no": receipt.doc_line,
                "event_id": str(receipt.event_id),
                "qty": qty,
                "detail": detail,
            }
        )

    def apply_all(self, receipts: Iterable[_Receipt]) -> None:
        """:meth:`apply` each receipt, in order, with the common case inline.

        The common case is a receipt in the line's base unit, of the line's item at the
        line's site, to an open line (a push of receipts is almost all of them): its
        quantity is added as it is, without a method call per receipt. Anything else
        (another unit, another kind of movement, a line that is not there, not open or
        would go beyond its tolerance) takes :meth:`apply`'s path, which gives the same
        result for the common case, so the two cannot disagree on what is counted.
        """
        lines, touched, quarantine = self.lines, self.touched, self.quarantine
        for receipt in receipts:
            line = lines.get((receipt.doc_id, receipt.doc_line))
            if (
                line is None
                or receipt.kind != _RECEIPT
                or receipt.uom != line.base_uom
                or receipt.item != line.item_code
                or receipt.site_id != line.site_id
                or line.status not in RECEIVABLE
                or (line.received + receipt.qty) * _PERCENT
                > line.base_qty * (_PERCENT + line.over_tolerance)
            ):
                self.apply(receipt)
                continue
            qty = receipt.qty
            line.received += qty
            if (receipt.site_id, receipt.location) in quarantine:
                line.quarantined += qty
            else:
                line.accepted += qty
            touched.add((line.po_id, line.line_no))

    def apply(self, receipt: _Receipt) -> None:
        if receipt.kind != _RECEIPT:
            self._move(receipt)
            return
        line = self.lines.get((receipt.doc_id, receipt.doc_line))
        if line is not None and line.site_id == receipt.site_id and receipt.item == line.item_code:
            qty = self._in_base(receipt, line)
            if qty is not None:
                line.received += qty
                self._bucket(line, receipt, qty)
                self.touched.add((line.po_id, line.line_no))
                if line.status not in RECEIVABLE or line.beyond_limit:
                    self._exceptions(receipt, line, qty)
                return
        self._refuse(receipt, line)

    def _refuse(self, receipt: _Receipt, line: _Line | None) -> None:
        """The exception for a receipt that is not counted (and why)."""
        where = f"receipt {receipt.event_id} for {receipt.doc_id} line {receipt.doc_line}"
        qty = from_micro_units(receipt.qty)
        if line is None:
            self._raise("unknown_line", receipt, f"{where}: no such PO line; not counted", qty)
        elif line.site_id != receipt.site_id:
            self._raise(
                "wrong_site",
                receipt,
                f"{where}: the PO is for site {line.site_id}, the goods came to "
                f"{receipt.site_id}; not counted",
                qty,
            )
        elif receipt.item != line.item_code:
            self._raise(
                "wrong_item",
                receipt,
                f"{where}: the line orders {line.item_code}, the receipt is of {receipt.item}; "
                "not counted",
                qty,
            )
        else:
            self._raise(
                "unknown_unit",
                receipt,
                f"{where}: item {receipt.item} has no unit {receipt.uom!r}; not counted",
                qty,
            )

    def _exceptions(self, receipt: _Receipt, line: _Line, counted: int) -> None:
        """The exceptions for a receipt that is counted: against a PO not open, beyond
        the tolerance. Rare, so spelled in Decimal for a person to read."""
        where = f"receipt {receipt.event_id} for {receipt.doc_id} line {receipt.doc_line}"
        qty = from_micro_units(counted)
        if line.status not in RECEIVABLE:
            self._raise(
                "po_not_open",
                receipt,
                f"{where}: the PO is {line.status}; counted, but nothing was expected",
                qty,
            )
        if line.beyond_limit:
            base_qty = from_micro_units(line.base_qty)
            over = from_micro_units(line.over_tolerance)
            limit = base_qty * (1 + over / _HUNDRED)
            received = from_micro_units(line.received)
            beyond = min(qty, received - limit)
            self._raise(
                "over_receipt",
                receipt,
                f"{where}: received {received} {line.base_uom} of {base_qty} "
                f"ordered (+{over} % allowed up to {limit}); "
                f"{beyond} beyond the tolerance",
                beyond,
            )

    def _bucket(self, line: _Line, event: _Receipt, qty: int) -> None:
        """Stock of the line moved by ``qty`` (signed) at the event's location."""
        if (event.site_id, event.location) in self.quarantine:
            line.quarantined += qty
        else:
            line.accepted += qty

    def _move(self, event: _Receipt) -> None:
        """A movement of received goods (QC release, return): counted against its line
        only when it fits it; a movement that does not is left to the ledger (it is no
        receipt, so there is no exception for it)."""
        line = self.lines.get((event.doc_id, event.doc_line))
        if line is None or line.site_id != event.site_id or line.item_code != event.item:
            return
        qty = self._in_base(event, line)
        if qty is None:
            return
        self._bucket(line, event, qty)
        if event.kind == _ISSUE:
            line.returned -= qty
        self.touched.add((line.po_id, line.line_no))


def _statuses(
    connection: Connection,
    lines: Mapping[tuple[str, int], _Line],
    po_ids: Iterable[str],
    *,
    every_line: bool = False,
) -> dict[str, tuple[PoStatus, PoStatus]]:
    """``{po_id: (status now, status the received quantities give)}``.

    ``lines`` are the lines in memory (a push's named ones, or every line with
    ``every_line``). A PO's status may depend on its other lines too: they are read
    (three integers a line, in one query) only for the POs where it does: in progress,
    and not already partly received by the lines in memory alone (something received,
    something short).
    """
    # Per PO: [every line complete, some line received something], one pass over lines.
    summary: dict[str, list[bool]] = {}
    first: dict[str, _Line] = {}
    for line in lines.values():
        found = summary.get(line.po_id)
        if found is None:
            found = summary[line.po_id] = [True, False]
            first[line.po_id] = line
        if found[0] and not _complete(line.received, line.base_qty, line.under_tolerance):
            found[0] = False
        if line.received > 0:
            found[1] = True
    wanted = sorted(set(po_ids))
    if not every_line:
        undecided = [
            po_id
            for po_id in wanted
            if first[po_id].status in PROGRESS_STATUSES
            and not (summary[po_id][1] and not summary[po_id][0])
        ]
        if undecided:
            for po_id, others in _other_lines(connection, undecided, lines).items():
                found = summary[po_id]
                found[0] = found[0] and all(_complete(*line) for line in others)
                found[1] = found[1] or any(received > 0 for received, _b, _u in others)
    return {
        po_id: (
            first[po_id].status,
            progress_status(
                first[po_id].status,
                first[po_id].sent,
                all_complete=summary[po_id][0],
                any_received=summary[po_id][1],
            ),
        )
        for po_id in wanted
    }


def _receipts_of(events: Sequence[LedgerEvent]) -> list[_Receipt]:
    named = [event for event in events if event.doc_type == PURCHASE_ORDER]
    return [
        _Receipt(
            event_id=event.event_id,
            site_id=event.site_id,
            item=event.item,
            qty=qty,
            uom=event.uom,
            doc_id=event.doc_id,  # type: ignore[arg-type]
            doc_line=event.doc_line,  # type: ignore[arg-type]
            kind=event.kind,
            location=event.location,
        )
        for event, qty in zip(
            named, to_micro_units_many([event.qty for event in named]), strict=True
        )
    ]


def _quarantine_locations(
    connection: Connection, named: Iterable[tuple[str, str]] | None
) -> frozenset[tuple[str, str]]:
    """Which of the (site, location) pairs are quarantine-kind locations (all, for None)."""
    query = select(locations.c.site_id, locations.c.code).where(locations.c.kind == "quarantine")
    if named is not None:
        pairs = set(named)
        query = query.where(locations.c.code.in_(sorted({code for _site, code in pairs})))
        return frozenset(
            (row.site_id, row.code)
            for row in connection.execute(query)
            if (row.site_id, row.code) in pairs
        )
    return frozenset((row.site_id, row.code) for row in connection.execute(query))


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """The projection ingest runs: see the module docstring."""
    receipts = _receipts_of(accepted.events)
    if not receipts:
        return
    tally = _Tally(
        connection,
        _read_lines(connection, {(r.doc_id, r.doc_line) for r in receipts}),
        _quarantine_locations(connection, {(r.site_id, r.location) for r in receipts}),
    )
    tally.apply_all(receipts)
    _write(connection, tally, at=accepted.received_at)


@lru_cache(maxsize=8)
def _update_progress_sql(dialect: Dialect) -> str:
    """One line's four quantities, by its key, as driver SQL made once per dialect."""
    quote = dialect.identifier_preparer.format_column
    mark = placeholder(dialect)
    table = dialect.identifier_preparer.format_table(purchase_order_lines)
    c = purchase_order_lines.c
    assigned = ", ".join(
        f"{quote(column)} = {mark}"
        for column in (c.received_qty, c.accepted_qty, c.quarantined_qty, c.returned_qty)
    )
    key = f"{quote(c.po_id)} = {mark} AND {quote(c.line_no)} = {mark}"
    return f"UPDATE {table} SET {assigned} WHERE {key}"  # noqa: S608 - our own names


def _write_progress(connection: Connection, lines: Iterable[_Line]) -> None:
    """Every line's four quantities, in one ``executemany`` of driver rows: the integers
    the table stores, no per-row work by SQLAlchemy (a push writes one per receipt)."""
    connection.exec_driver_sql(
        _update_progress_sql(connection.dialect),
        [
            (
                line.received,
                line.accepted,
                line.quarantined,
                line.returned,
                line.po_id,
                line.line_no,
            )
            for line in lines
        ],
    )


def _write(connection: Connection, tally: _Tally, *, at: datetime) -> None:
    if tally.touched:
        _write_progress(connection, (tally.lines[key] for key in sorted(tally.touched)))
        statuses = _statuses(connection, tally.lines, {p for p, _l in tally.touched})
        # Conditional on the status read, so a person's command committed in between
        # (close, cancel) is never overwritten; the version moves with the quantities.
        connection.execute(
            update(purchase_orders)
            .where(
                purchase_orders.c.po_id == bindparam("b_po"),
                purchase_orders.c.status == bindparam("b_current"),
            )
            .values(
                status=bindparam("b_wanted"),
                version=purchase_orders.c.version + 1,
                updated_at=bindparam("b_at"),
            ),
            [
                {"b_po": po_id, "b_current": current.value, "b_wanted": wanted.value, "b_at": at}
                for po_id, (current, wanted) in statuses.items()
            ],
        )
    if tally.exceptions:
        connection.execute(
            insert(purchase_exceptions),
            [{**row, "status": "open", "raised_at": at} for row in tally.exceptions],
        )


def rebuild(connection: Connection) -> dict[tuple[str, int], Decimal]:
    """Recompute every line's received quantity and every PO's progress from the ledger.

    Runs in the caller's write transaction. Exceptions already raised are records of
    what a person saw and are kept, not raised again. Returns the received quantities.
    """
    lines = _read_lines(connection, None)
    for line in lines.values():
        line.received = line.accepted = line.quarantined = line.returned = 0
    tally = _Tally(connection, lines, _quarantine_locations(connection, None))
    union = ledger_union(
        "event_id",
        "site_id",
        "seq",
        "kind",
        "item",
        "location",
        "qty",
        "uom",
        "doc_type",
        "doc_id",
        "doc_line",
    ).subquery()
    rows = connection.execute(
        select(union)
        .where(union.c.doc_type == PURCHASE_ORDER)
        .order_by(union.c.site_id, union.c.stream, union.c.seq)
    )
    tally.apply_all(
        _Receipt(
            event_id=row.event_id,
            site_id=row.site_id,
            item=row.item,
            qty=to_micro_units(row.qty),
            uom=row.uom,
            doc_id=row.doc_id,
            doc_line=row.doc_line,
            kind=row.kind,
            location=row.location,
        )
        for row in rows
    )
    tally.touched = set(lines)
    tally.exceptions = []
    if lines:
        _write_all(connection, tally)
    return {key: from_micro_units(line.received) for key, line in lines.items()}


def _write_all(connection: Connection, tally: _Tally) -> None:
    _write_progress(connection, (line for _key, line in sorted(tally.lines.items())))
    statuses = _statuses(connection, tally.lines, {key[0] for key in tally.lines}, every_line=True)
    changes = [
        {"b_po": po_id, "b_current": current.value, "b_wanted": wanted.value}
        for po_id, (current, wanted) in statuses.items()
        if wanted is not current
    ]
    if changes:
        connection.execute(
            update(purchase_orders)
            .where(
                purchase_orders.c.po_id == bindparam("b_po"),
                purchase_orders.c.status == bindparam("b_current"),
            )
            .values(status=bindparam("b_wanted"), version=purchase_orders.c.version + 1),
            changes,
        )


def progress(connection: Connection) -> Mapping[str, Any]:
    """Every line's received quantity and every PO's status, to compare two states."""
    return {
        "lines": {
            (row.po_id, row.line_no): (
                row.received_qty,
                row.accepted_qty,
                row.quarantined_qty,
                row.returned_qty,
            )
            for row in connection.execute(
                select(
                    purchase_order_lines.c.po_id,
                    purchase_order_lines.c.line_no,
                    purchase_order_lines.c.received_qty,
                    purchase_order_lines.c.accepted_qty,
                    purchase_order_lines.c.quarantined_qty,
                    purchase_order_lines.c.returned_qty,
                )
            )
        },
        "status": dict(
            connection.execute(select(purchase_orders.c.po_id, purchase_orders.c.status)).all()
        ),
    }
