"""Valuation: moving weighted average (移动加权平均) or FIFO (先进先出) per (site, item).

Registered as the ledger projection ``valuation``
(:mod:`central_api.services.projections`): it runs in every push's transaction with the
events the push really inserted, and in every booking of central's own events, so the
value of stock commits with the movements or not at all. No queue: ERPNext's reposting
queue (frappe/erpnext #53773, #41493) shows how a stalled queue leaves values wrong for
hours. ``docs/valuation.md`` explains the rules; in short:

* **Order.** Movements of a (site, item) are valued in ``(occurred_at, event_id)`` order,
  whatever order they arrived in. An event older than the latest valued one of its
  (site, item) re-values that (site, item) only, from that point on, in the same
  transaction; the result is exactly what a valuation from scratch gives (the same
  function :func:`apply` runs over the same inputs in the same order, and every amount is
  rounded to micro-units at the same steps). Past :data:`LAG_AFTER` later entries
  (moving average) the (site, item) *lags* instead: re-valued right after the push's
  answer, and settled first by every reader of values (``docs/valuation.md``, "A long
  tail").
* **Direction, not kind.** A positive quantity comes in, a negative one goes out, so kinds
  added later (write-offs, count losses, opening stock) are valued without a change here.
* **What comes in costs** (per base unit, fixed when the event is first valued): the
  event's own ``unit_cost`` (opening stock, central receipts); else the price of the PO line
  a receipt names, converted to the base unit; else, for a ``transfer_in`` naming a
  transfer line, what the matching ``transfer_out`` cost the sending site; else, for a
  receipt, the item's standard cost (``items.cost``), else its purchase price; else
  (returns, count gains) the running cost at that point.
* **Negative stock.** An issue beyond what is on hand takes what there is at its cost and
  the shortfall at the last known unit cost; the receipt that fills the hole books the
  difference between that provisional cost and its own as ``variance`` (part of cost of
  goods). If the receipt really happened before the issue and merely arrived late, the
  re-valuation from its ``occurred_at`` on leaves no shortfall and no variance at all.
* **Transfers.** A transfer_in costs what its line's transfer_outs cost. A transaction
  re-values only the site whose lock it holds: another site a transfer's cost reaches is
  recorded in ``valuation_pending`` and settled right after the commit, in a transaction
  holding that site alone (:func:`settle_site`), so two sites cascading into each other
  never deadlock; a record a crash left is settled by that site's next push or ``jxc
  central check --repair``, and :func:`check` names it.

:func:`value_from_scratch` values the whole ledger afresh; :func:`check` compares it, and
the ledger's sums per balance key, with what is stored (``jxc central check``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError

from central_api.core import driver
from central_api.core.db import WRITE_INTENT, after_commit, write_transaction
from central_api.core.driver import Prepared, prepare
from central_api.core.sqlbits import list_param, one_of
from central_api.core.sqlbits import placeholder as _placeholder
from central_api.models.base import from_micro_units, to_micro_units_many
from central_api.models.inventory import transfer_orders
from central_api.models.items import items
from central_api.models.ledger import central_events, ledger_events
from central_api.models.master import item_units
from central_api.models.purchasing import purchase_order_lines, purchase_orders
from central_api.models.stock import NO_LOT, stock_balances
from central_api.models.valuation import (
    valuation_entries,
    valuation_layers,
    valuation_pending,
    valuation_state,
)
from central_api.services.central_events import ledger_union, lock_site
from central_api.services.ingest import (
    _COPY_FROM_ROWS,
    _copy_rows,
    _id_texts,
    _insert_sql,
    _ledger_binds,
)
from central_api.services.projections import AcceptedEvents
from central_api.services.purchasing import plain
from jxc import uuid7
from jxc.contract import DECIMAL_PLACES, EventKind, LedgerEvent

log = logging.getLogger("central_api.services.valuation")

NAME = "valuation"
MOVING_AVERAGE = "moving_average"
FIFO = "fifo"
METHODS = frozenset({MOVING_AVERAGE, FIFO})

PURCHASE_ORDER = "purchase_order"
TRANSFER = "transfer_order"
"""The document type a transfer's events name (its line links out and in); the same as
``services.transfers.TRANSFER_ORDER`` and the contract's ``DocumentType``."""

LAG_AFTER = 2_000
"""A late event of a moving-average (site, item) with more later entries than this is not
re-valued in its push: the push writes its own events and records the (site, item) as
*lagging* from the late point (a ``valuation_pending`` tail), and the tail is re-valued
right after the commit, in chunks (:func:`settle_site`); every reader of values settles
first (:func:`settle_for_reading`). Re-valuing 50,000 later entries costs 0.4 to 0.9 s,
most of it reading and writing them, so no push that does it can answer in 100 ms
(``docs/valuation.md``, "A long tail")."""
SETTLE_CHUNK = 10_000
"""Entries a settling transaction re-values at most before it commits and lets a push of
the site in."""
MAX_SETTLE_CHUNKS = 10_000
"""A bound on one settling's transactions: far more chunks than any (site, item) holds,
so reaching it means a bug, logged, never an endless loop."""
TAIL = "valuation_tail"
"""The ``link`` prefix of a lagging (site, item)'s ``valuation_pending`` row."""

_ZERO = Decimal(0)
_MICRO = Decimal("0.000001")
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)

OrderKey = tuple[datetime, str]
"""Where a movement stands in its (site, item)'s valuation: ``(occurred_at, event_id)``."""

Key = tuple[str, str]
"""(site_id, item)."""


def money(amount: Decimal) -> Decimal:
    """``amount`` rounded to micro-units (half to even), the one rounding rule used."""
    return amount.quantize(_MICRO, ROUND_HALF_EVEN)


def utc(moment: datetime) -> datetime:
    """SQLite hands a stored time back without its offset; central stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- the valuation itself: pure functions over movements, in micro-units ------------------

MICRO: int = 10**DECIMAL_PLACES
"""Micro-units per unit: every quantity, amount and unit cost in the engine is an ``int``
count of millionths, the representation the database stores (``MicroUnits``)."""


def div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to an integer, half to even: the one rounding
    rule, exact for any size (Decimal's default context would round products past 28
    digits first).

    A rounded amount of micro-units is what ``Decimal.quantize`` to six places gives for
    the same quotient, so ``money(a * b / c)`` in units is ``div(a * b, c)`` in micro-units,
    ``money(a * b)`` is ``div(a * b, MICRO)`` and ``money(a / b)`` is ``div(a * MICRO, b)``.
    """
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)
    twice = remainder * 2
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


@dataclass(slots=True)
class Move:
    """One movement as valuation sees it: its inputs, fixed when first valued."""

    event_id: str
    occurred_at: datetime
    kind: str
    qty: int
    """Micro-units of the item's base unit, signed: positive in, negative out."""
    in_cost: int | None
    """Micro-units per base unit, for an inbound movement; None: at the running cost."""
    cost_source: str
    link: str | None = None
    """``transfer:<id>:<line>`` for a transfer's events: what carries cost between sites."""

    @property
    def order(self) -> OrderKey:
        return (self.occurred_at, self.event_id)


_ORDER: Callable[[Move], OrderKey] = attrgetter("occurred_at", "event_id")
"""``move.order``, as a C-level key function for sorting a push's movements."""


class Result(NamedTuple):
    """What a movement came to, and the (site, item)'s state after it (micro-units).

    A tuple in the entry table's column order: a push makes one per event and its row
    is the tuple itself, unpacked."""

    in_value: int
    cogs: int
    variance: int
    shortfall: int
    qty_after: int
    value_after: int
    last_cost_after: int


@dataclass(slots=True)
class Layer:
    event_id: str
    qty: int
    value: int


@dataclass(slots=True)
class State:
    """A (site, item)'s running valuation in micro-units. ``qty < 0`` is negative stock
    (a deficit valued at the cost it was issued at); FIFO layers exist only while
    ``qty > 0``."""

    method: str
    qty: int = 0
    value: int = 0
    last_cost: int = 0
    layers: list[Layer] = field(default_factory=list)

    def running_cost(self) -> int:
        """What one more unit costs now: the average (moving average, stock on hand),
        else the last known unit cost."""
        if self.method == MOVING_AVERAGE and self.qty > 0:
            return div(self.value * MICRO, self.qty)
        return self.last_cost


def apply(state: State, move: Move) -> Result:
    """Value ``move`` against ``state`` (changed in place); what it came to."""
    if move.qty > 0:
        return _take_in(state, move)
    return _give_out(state, move)


def _take_in(state: State, move: Move) -> Result:
    qty = move.qty
    unit = state.running_cost() if move.in_cost is None else move.in_cost
    in_value = div(qty * unit, MICRO)
    variance = 0
    if state.qty < 0:
        # Fill the hole first: what is left of the deficit stays at its provisional cost,
        # what is left of the receipt is at the receipt's; the rest is the correction.
        after = state.qty + qty
        if after >= 0:
            target = div(in_value * after, qty)
            if after > 0 and state.method == FIFO:
                state.layers.append(Layer(move.event_id, after, target))
        else:
            target = div(state.value * after, state.qty)
        variance = state.value + in_value - target
        state.qty, state.value = after, target
    else:
        state.qty += qty
        state.value += in_value
        if state.method == FIFO:
            state.layers.append(Layer(move.event_id, qty, in_value))
    if state.method == MOVING_AVERAGE and state.qty > 0:
        state.last_cost = div(state.value * MICRO, state.qty)
    else:
        state.last_cost = unit
    return Result(in_value, 0, variance, 0, state.qty, state.value, state.last_cost)


def _give_out(state: State, move: Move) -> Result:
    out = -move.qty
    cogs = 0
    covered = min(out, state.qty) if state.qty > 0 else 0
    if covered:
        if state.method == FIFO:
            cogs = _consume(state.layers, covered)
        elif covered == state.qty:
            cogs = state.value
        else:
            cogs = div(state.value * covered, state.qty)
        state.qty -= covered
        state.value -= cogs
        if state.method == MOVING_AVERAGE and state.qty > 0:
            state.last_cost = div(state.value * MICRO, state.qty)
    shortfall = out - covered
    if shortfall:
        short_value = div(shortfall * state.last_cost, MICRO)
        state.qty -= shortfall
        state.value -= short_value
        cogs += short_value
    return Result(0, cogs, 0, shortfall, state.qty, state.value, state.last_cost)


def _consume(layers: list[Layer], qty: int) -> int:
    """Take ``qty`` from the oldest layers on (there is at least that much); its cost."""
    cost = 0
    while qty:
        layer = layers[0]
        if qty >= layer.qty:
            cost += layer.value
            qty -= layer.qty
            layers.pop(0)
        else:
            part = div(layer.value * qty, layer.qty)
            layer.qty -= qty
            layer.value -= part
            cost += part
            qty = 0
    return cost


def replay(state: State, moves: Iterable[Move]) -> dict[str, Result]:
    """Apply ``moves`` (already in order) to ``state``; each one's result by event id."""
    return {move.event_id: apply(state, move) for move in moves}


# --- inputs: what an event means to valuation ---------------------------------------------


def micro(column: Any) -> Any:
    """``column`` read as the integer the database stores (micro-units), not as a
    Decimal: the engine computes in integers, so no conversion either way."""
    return type_coerce(column, BigInteger).label(column.name)


def micro_param(name: str) -> Any:
    """A bound micro-units parameter, passed to the driver as the integer it is."""
    return bindparam(name, type_=BigInteger)


@dataclass(frozen=True, slots=True)
class _Item:
    uom: str
    method: str
    cost: int | None
    purchase_price: int | None


@dataclass(frozen=True, slots=True)
class _PoLine:
    site_id: str
    item: str
    base_price: int | None


_TRANSFER_KINDS = frozenset({EventKind.TRANSFER_OUT.value, EventKind.TRANSFER_IN.value})
_RECEIPT = EventKind.RECEIPT.value
_TRANSFER_IN = EventKind.TRANSFER_IN.value


# Built once with an expanding parameter, as the next read: building a select per push
# (coercing each code into a bound parameter, then a cache key) cost more than running it
# on a one-event push (docs/performance.md, "Cost per request: pushes and item creates").
_MASTER_ITEMS: dict[str, Prepared] = {}


def _master_items(connection: Connection) -> Prepared:
    """The items' read, per database, with the codes as one parameter (an array, or JSON
    on SQLite) and run at the driver (:mod:`central_api.core.driver`): an expanding
    ``IN`` rendered its SQL again on every push."""
    found = _MASTER_ITEMS.get(connection.dialect.name)
    if found is None:
        statement = select(
            items.c.item_code,
            items.c.uom,
            items.c.valuation,
            micro(items.c.cost),
            micro(items.c.purchase_price),
        ).where(one_of(connection, items.c.item_code, "b_codes"))
        found = _MASTER_ITEMS[connection.dialect.name] = prepare(statement, connection.dialect)
    return found


class _Master:
    """The master data a batch of events is valued with, read once per batch."""

    def __init__(
        self,
        connection: Connection,
        events: Sequence[Any],
    ) -> None:
        codes = sorted({event.item for event in events})
        self.items: dict[str, _Item] = {}
        for chunk in _chunks(codes):
            found = driver.rows(
                connection, _master_items(connection), {"b_codes": list_param(connection, chunk)}
            )
            for code, uom, valuation, cost, purchase_price in found:
                method = valuation if valuation in METHODS else MOVING_AVERAGE
                self.items[code] = _Item(uom, method, cost, purchase_price)
        pairs = sorted(
            {
                (event.item, event.uom)
                for event in events
                if event.item in self.items and event.uom != self.items[event.item].uom
            }
        )
        self.factors: dict[tuple[str, str], int] = {}
        for chunk in _chunks(pairs):
            for unit in connection.execute(
                select(item_units.c.item_code, item_units.c.uom, micro(item_units.c.factor)).where(
                    tuple_(item_units.c.item_code, item_units.c.uom).in_(chunk)
                )
            ):
                self.factors[(unit.item_code, unit.uom)] = unit.factor
        po_ids = sorted(
            {event.doc_id for event in events if event.doc_type == PURCHASE_ORDER and event.qty > 0}
        )
        self.po_lines: dict[tuple[str, int], _PoLine] = {}
        for chunk in _chunks(po_ids):
            for line in connection.execute(
                select(
                    purchase_order_lines.c.po_id,
                    purchase_order_lines.c.line_no,
                    purchase_orders.c.site_id,
                    purchase_order_lines.c.item_code,
                    micro(purchase_order_lines.c.qty),
                    micro(purchase_order_lines.c.base_qty),
                    micro(purchase_order_lines.c.unit_price),
                )
                .join(purchase_orders, purchase_orders.c.po_id == purchase_order_lines.c.po_id)
                .where(purchase_order_lines.c.po_id.in_(chunk))
            ):
                price = line.unit_price
                base_price = (
                    None
                    if price is None or not line.base_qty
                    else div(price * line.qty, line.base_qty)
                )
                self.po_lines[(line.po_id, line.line_no)] = _PoLine(
                    line.site_id, line.item_code, base_price
                )

    def method(self, item: str) -> str:
        known = self.items.get(item)
        return MOVING_AVERAGE if known is None else known.method

    def factor(self, item: str, uom: str) -> int:
        """Micro base units per ``uom``; one unit for the base unit, an unknown item or an
        unknown unit (``po_progress`` raises an exception for a receipt in a unit the item
        lacks)."""
        known = self.items.get(item)
        if known is None or uom == known.uom:
            return MICRO
        return self.factors.get((item, uom), MICRO)

    def moves(self, events: Sequence[Any]) -> list[Move]:
        """The valuation inputs of ledger events (:class:`LedgerEvent`\\ s or rows).

        Amounts are converted to micro-units for the whole batch at once (as ingest
        does); a push's events are mostly in their item's base unit, so the factor's
        multiplication is skipped for those.
        """
        quantities = to_micro_units_many([event.qty for event in events])
        ids = [event.event_id for event in events]
        if ids and not isinstance(ids[0], str):
            ids = _id_texts(ids)  # UUIDs of a push: spelled for the batch at once
        given = [event.unit_cost for event in events if event.unit_cost is not None]
        unit_costs = iter(to_micro_units_many(given))
        found: list[Move] = []
        known_items = self.items
        for event, event_id, base_qty in zip(events, ids, quantities, strict=True):
            # self.factor(), inlined: this loop runs once per event of every push.
            known = known_items.get(event.item)
            factor = MICRO
            if known is not None and event.uom != known.uom:
                factor = self.factors.get((event.item, event.uom), MICRO)
            qty = base_qty if factor == MICRO else div(base_qty * factor, MICRO)
            kind = str(event.kind)
            unit_cost = None if event.unit_cost is None else next(unit_costs)
            link = None
            if event.doc_type == TRANSFER and kind in _TRANSFER_KINDS:
                link = f"{TRANSFER}:{event.doc_id}:{event.doc_line}"
            in_cost: int | None = None
            source = "out"
            if qty > 0:
                if unit_cost is not None and factor == MICRO:
                    in_cost, source = unit_cost, "event"
                else:
                    in_cost, source = self._in_cost(event, kind, unit_cost, factor, link)
            at = event.occurred_at
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            found.append(Move(event_id, at, kind, qty, in_cost, source, link))
        return found

    def move(self, event: Any) -> Move:
        """The valuation inputs of one ledger event."""
        return self.moves([event])[0]

    def _in_cost(
        self, event: Any, kind: str, unit_cost: int | None, factor: int, link: str | None
    ) -> tuple[int | None, str]:
        if unit_cost is not None:
            return (unit_cost if factor == MICRO else div(unit_cost * MICRO, factor)), "event"
        if event.doc_type == PURCHASE_ORDER and kind == _RECEIPT:
            # Only a receipt comes in at the PO's price; a QC release (transfer_in naming
            # the line) moves goods within the site and takes the running cost below.
            line = self.po_lines.get((event.doc_id, event.doc_line))
            if (
                line is not None
                and line.base_price is not None
                and line.site_id == event.site_id
                and line.item == event.item
            ):
                return line.base_price, "po"
        if link is not None and kind == _TRANSFER_IN:
            return None, "transfer"  # provisional until the transfer_out is valued
        known = self.items.get(event.item)
        if kind == _RECEIPT and known is not None:
            if known.cost is not None:
                return known.cost, "standard"
            if known.purchase_price is not None:
                return known.purchase_price, "purchase_price"
        return None, "running"


_CHUNK = 500
"""Keys looked up per statement."""


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- the projection: incremental, in the push's transaction --------------------------------


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """The projection ingest runs: see the module docstring."""
    value_events(connection, accepted.events, at=accepted.received_at)


def value_events(connection: Connection, events: Sequence[LedgerEvent], *, at: datetime) -> None:
    """Value newly stored ``events`` and re-value what they move (late events, transfers).

    The events are one site's (a push's, a booking's), whose lock the transaction holds;
    another site whose transfer_ins they change is only recorded as pending here, and
    settled after the commit (:func:`settle_site`). Pending re-valuations of this site
    that a crash left unsettled are settled here too.
    """
    held = frozenset(event.site_id for event in events)
    states, pending = _states_and_pending(connection, events)
    pending_links, tails = _take_pending(connection, held, pending)
    master = _Master(connection, events)
    by_key: dict[Key, list[Move]] = defaultdict(list)
    for event, move in zip(events, master.moves(events), strict=True):
        by_key[(event.site_id, event.item)].append(move)
    changed_links = _value_keys(
        connection,
        by_key,
        {key: master.method(key[1]) for key in by_key},
        at=at,
        tails=tails,
        states=states,
    )
    # A transfer_in that arrives after its transfer_out was valued has nothing of that
    # line "changed", yet still needs the line's cost: look its links up too (a link
    # with no outbound entry yet changes nothing; the out's arrival brings the cost).
    changed_links |= {
        move.link
        for moves in by_key.values()
        for move in moves
        if move.link is not None and move.qty > 0
    }
    changed_links |= pending_links
    _carry_transfer_costs(connection, changed_links, master, at=at, held=held)
    for site_id in sorted({site_id for site_id, _item in tails}):
        # A tail a crash (or a failed settling) left: settled after this commit.
        after_commit(connection, (NAME, site_id), _settle_after_commit(site_id))


def _value_keys(
    connection: Connection,
    new_moves: Mapping[Key, list[Move]],
    methods: Mapping[Key, str],
    *,
    at: datetime,
    changed_inputs: Mapping[str, int | None] | None = None,
    since: Mapping[Key, OrderKey] | None = None,
    tails: dict[Key, OrderKey] | None = None,
    states: dict[Key, tuple[State, OrderKey]] | None = None,
) -> set[str]:
    """Value ``new_moves`` per key, re-valuing a key from the earliest point that moved.

    ``changed_inputs``: a new ``in_cost`` for stored entries (a transfer's cost arrived);
    ``since``: the earliest point such an entry stands at, per key. Returns the links of
    outbound transfer entries whose cost of goods was set or changed.

    ``tails``: the lagging keys of the sites concerned with their boundaries, when the
    caller has read them (a push reads its site's pending rows anyway), else read here;
    kept up to date with what this call records. A lagging key, and a late moving-average
    one with more than :data:`LAG_AFTER` later entries, is not re-valued here
    (:func:`_lagging`). ``states``: the stored states of every key, when the caller has
    read them (:func:`_states_and_pending`).
    """
    keys = sorted(set(new_moves) | set(since or {}))
    states = _read_states(connection, keys) if states is None else states
    fast, late = _fast_or_late(keys, states, new_moves, methods, since or {})
    if tails is None:
        tails = _read_tails(connection, keys)
    lagging = _lagging(
        connection,
        keys,
        states=states,
        new_moves=new_moves,
        methods=methods,
        since=since or {},
        tails=tails,
    )
    if lagging:
        fast = [key for key in fast if key not in lagging]
        late = {key: point for key, point in late.items() if key not in lagging}
    layers = _read_layers(
        connection,
        [key for key in fast if key in states and states[key][0].method == FIFO],
    )
    inserts: list[_NewEntry] = []
    updates: list[_KeyUpdates] = []
    finals: dict[Key, tuple[State, Move]] = {}
    changed_links: set[str] = set()
    for key in fast:
        state = states[key][0] if key in states else State(methods[key])
        if state.method == FIFO:
            state.layers = layers.get(key, [])
        moves = sorted(new_moves[key], key=_ORDER)
        for move in moves:
            inserts.append((key, move, apply(state, move)))
            if move.link is not None and move.qty < 0:
                changed_links.add(move.link)
        finals[key] = (state, moves[-1])
    for key, point in late.items():
        revalued = _revalue(
            connection,
            key,
            method=methods[key],
            point=point,
            fresh=new_moves.get(key, []),
            changed_inputs=changed_inputs or {},
        )
        inserts.extend(revalued.inserts)
        if revalued.updates:
            updates.append((key, revalued.since, revalued.updates))
        changed_links |= revalued.changed_links
        if revalued.final is not None:
            finals[key] = revalued.final
    for key in lagging:
        # Valued on from the stored state, which lags: provisional results, re-valued
        # when the tail is settled (the state row is left to that too).
        held = states[key][0]
        state = State(held.method, held.qty, held.value, held.last_cost)
        for move in sorted(new_moves.get(key, ()), key=_ORDER):
            inserts.append((key, move, apply(state, move)))
            if move.link is not None and move.qty < 0:
                changed_links.add(move.link)
    _write(connection, inserts, updates, finals, states, at=at)
    # A key re-valued whole (its method changed) no longer lags.
    boundaries: dict[Key, OrderKey | None] = {key: None for key in late if key in tails}
    boundaries.update(lagging)
    _write_tails(connection, boundaries, tails, at=at)
    return changed_links


def _lagging(
    connection: Connection,
    keys: Sequence[Key],
    *,
    states: Mapping[Key, tuple[State, OrderKey]],
    new_moves: Mapping[Key, list[Move]],
    methods: Mapping[Key, str],
    since: Mapping[Key, OrderKey],
    tails: Mapping[Key, OrderKey],
) -> dict[Key, OrderKey]:
    """The keys left lagging, each with its (new) boundary: every moving-average key that
    lags already (whatever its movements' dates: the state it would value on from is
    stale), and every late one with more than :data:`LAG_AFTER` entries from its point.

    A key whose method changed is not among them: it is re-valued whole, as ever."""
    found: dict[Key, OrderKey] = {}
    for key in keys:
        held = states.get(key)
        if held is None or held[0].method != methods[key] or methods[key] != MOVING_AVERAGE:
            continue
        points = [_ORDER(move) for move in new_moves.get(key, ())]
        if key in since:
            points.append(since[key])
        if key in tails:
            found[key] = min([*points, tails[key]])
            continue
        earliest = min(points)
        if earliest <= held[1] and _more_after(connection, key, earliest, LAG_AFTER):
            found[key] = earliest
    return found


@lru_cache(maxsize=8)
def _count_after_sql(dialect: Dialect) -> str:
    """How many entries of a (site, item) stand at or after a moment, counted up to a
    bound: the (site, item, occurred_at) index alone (an index-only scan on PostgreSQL),
    counting the few at the same instant whatever their event ids, which is near enough
    for a bound."""
    quote = dialect.identifier_preparer.format_column
    entries = valuation_entries.c
    table = dialect.identifier_preparer.format_table(valuation_entries)
    mark = _placeholder(dialect)
    where = (
        f"{quote(entries.site_id)} = {mark} AND {quote(entries.item)} = {mark}"
        f" AND {quote(entries.occurred_at)} >= {mark}"
    )
    return f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {mark}) AS later"  # noqa: S608 - our own names


def _more_after(connection: Connection, key: Key, point: OrderKey, bound: int) -> bool:
    """Whether more than ``bound`` entries of ``key`` stand from ``point`` on (give or
    take the ones at its very instant): an index range read of at most ``bound + 1``."""
    at = _ledger_binds(connection.dialect).times([point[0]])[0]
    parameters = (*key, at, bound + 1)
    with connection.exec_driver_sql(_count_after_sql(connection.dialect), parameters) as result:
        counted: int = result.scalar_one()
    return counted > bound


def _tail_link(item: str) -> str:
    return f"{TAIL}:{item}"


def _item_of_tail(link: str) -> str | None:
    """The item a lagging key's pending link names, or None for a transfer's link."""
    prefix, _, item = link.partition(":")
    return item if prefix == TAIL else None


def _read_tails(connection: Connection, keys: Sequence[Key]) -> dict[Key, OrderKey]:
    """The boundary of each of ``keys`` that lags: one query per site of ``keys``, made
    only by the transfer and settling paths (a push has read its site's pending rows)."""
    found: dict[Key, OrderKey] = {}
    pending = valuation_pending.c
    by_site: dict[str, set[str]] = defaultdict(set)
    for site_id, code in keys:
        by_site[site_id].add(code)
    for site_id, codes in sorted(by_site.items()):
        for row in connection.execute(
            select(pending.link, pending.since_at, pending.since_event_id).where(
                pending.site_id == site_id, pending.link.startswith(TAIL + ":")
            )
        ):
            item = _item_of_tail(row.link)
            if item is not None and item in codes and row.since_at is not None:
                key = (site_id, item)
                point = (utc(row.since_at), row.since_event_id)
                found[key] = min(found.get(key, point), point)
    return found


def _write_tails(
    connection: Connection,
    changes: Mapping[Key, OrderKey | None],
    tails: dict[Key, OrderKey],
    *,
    at: datetime,
) -> None:
    """Record each key's boundary (None: it no longer lags), in ``tails`` too, and settle
    each site that lags right after the commit. In the transaction holding the site's
    lock, as every write of a tail's row is (so delete and insert cannot race)."""
    pending = valuation_pending.c
    for (site_id, item), point in sorted(changes.items()):
        if point is not None and tails.get((site_id, item)) == point:
            continue  # already recorded there
        connection.execute(
            delete(valuation_pending).where(
                pending.site_id == site_id, pending.link == _tail_link(item)
            )
        )
        if point is None:
            tails.pop((site_id, item), None)
            continue
        tails[(site_id, item)] = point
        connection.execute(
            insert(valuation_pending).values(
                pending_id=str(uuid7()),
                site_id=site_id,
                link=_tail_link(item),
                recorded_at=at,
                since_at=point[0],
                since_event_id=point[1],
            )
        )
        after_commit(connection, (NAME, site_id), _settle_after_commit(site_id))


def _fast_or_late(
    keys: Sequence[Key],
    states: Mapping[Key, tuple[State, OrderKey]],
    new_moves: Mapping[Key, list[Move]],
    methods: Mapping[Key, str],
    since: Mapping[Key, OrderKey],
) -> tuple[list[Key], dict[Key, OrderKey | None]]:
    """Keys whose new movements all follow the latest valued one (valued on from the
    stored state), and the rest with the point to re-value from (None: from the start,
    for a key whose method changed)."""
    fast: list[Key] = []
    late: dict[Key, OrderKey | None] = {}
    for key in keys:
        points = list(map(_ORDER, new_moves.get(key, ())))
        if key in since:
            points.append(since[key])
        held = states.get(key)
        if held is None:
            fast.append(key)
        elif held[0].method != methods[key]:
            late[key] = None
        elif min(points) <= held[1]:
            late[key] = min(points)
        else:
            fast.append(key)
    return fast, late


_PendingRow = tuple[str, str, Any, Any]
"""A ``valuation_pending`` row as :func:`_take_pending` reads it: id, link, boundary."""


def _states_and_pending(
    connection: Connection, events: Sequence[LedgerEvent]
) -> tuple[dict[Key, tuple[State, OrderKey]] | None, list[_PendingRow] | None]:
    """A push's stored states and its site's pending rows in one statement, for one site
    and up to a chunk of items (every push from an edge): one round trip fewer than
    reading them apart. (None, None) for anything else, read apart then."""
    sites = {event.site_id for event in events}
    items = sorted({event.item for event in events})
    if len(sites) != 1 or not items or len(items) > _CHUNK:
        return None, None
    [site_id] = sites
    pending_at = len(_STATE_COLUMNS)  # where a pending row's own columns begin
    states: dict[Key, tuple[State, OrderKey]] = {}
    pending: list[_PendingRow] = []
    for row in driver.rows(
        connection,
        _states_and_pending_of_site(connection),
        {"b_site": site_id, "b_items": list_param(connection, items)},
    ):
        if row[pending_at] is not None:
            pending.append(row[pending_at:])
            continue
        states[(row[_STATE_SITE], row[_STATE_ITEM])] = _state_of(row)
    return states, pending


_STATES_AND_PENDING: dict[str, Prepared] = {}


def _states_and_pending_of_site(connection: Connection) -> Prepared:
    """``states of the items UNION ALL pending rows of the site``, per database: each
    half's columns are NULL where the other's are (typed alike, so that both are read
    back through the same result conversions)."""
    found = _STATES_AND_PENDING.get(connection.dialect.name)
    if found is None:
        pending = valuation_pending.c
        pending_columns = (
            pending.pending_id,
            pending.link,
            pending.since_at,
            pending.since_event_id,
        )
        states = select(
            *_STATE_COLUMNS, *(type_coerce(null(), column.type) for column in pending_columns)
        ).where(
            valuation_state.c.site_id == bindparam("b_site", type_=String),
            one_of(connection, valuation_state.c.item, "b_items"),
        )
        rows = select(
            *(type_coerce(null(), column.type) for column in _STATE_COLUMNS), *pending_columns
        ).where(pending.site_id == bindparam("b_site", type_=String))
        found = prepare(union_all(states, rows), connection.dialect)
        _STATES_AND_PENDING[connection.dialect.name] = found
    return found


def _read_states(connection: Connection, keys: Sequence[Key]) -> dict[Key, tuple[State, OrderKey]]:
    """The stored state of every key, with the order key of its latest movement: the one
    query a push makes for its (site, item)s (by primary key)."""
    found: dict[Key, tuple[State, OrderKey]] = {}
    by_site: dict[str, list[str]] = defaultdict(list)
    for site_id, item in keys:
        by_site[site_id].append(item)
    for site_id, codes in by_site.items():
        for chunk in _chunks(codes):
            for row in driver.rows(
                connection,
                _states_of_site(connection),
                {"b_site": site_id, "b_items": list_param(connection, chunk)},
            ):
                found[(row[_STATE_SITE], row[_STATE_ITEM])] = _state_of(row)
    return found


def _state_of(row: Sequence[Any]) -> tuple[State, OrderKey]:
    """A ``valuation_state`` row read by :data:`_STATE_COLUMNS`: the state, and the order
    key of its latest movement."""
    return (
        State(row[_STATE_METHOD], row[_STATE_QTY], row[_STATE_VALUE], row[_STATE_COST]),
        (utc(row[_STATE_LAST_AT]), row[_STATE_LAST_EVENT]),
    )


def _read_layers(connection: Connection, keys: Sequence[Key]) -> dict[Key, list[Layer]]:
    found: dict[Key, list[Layer]] = defaultdict(list)
    for chunk in _chunks(keys):
        rows = connection.execute(
            select(*_LAYER_COLUMNS)
            .where(tuple_(valuation_layers.c.site_id, valuation_layers.c.item).in_(chunk))
            .order_by(
                valuation_layers.c.site_id, valuation_layers.c.item, valuation_layers.c.layer_no
            )
        )
        for row in rows:
            found[(row.site_id, row.item)].append(Layer(row.event_id, row.qty, row.value))
    return found


_EntryUpdate = tuple[Any, ...]
"""A stored entry's new ``in_cost`` and seven results, then its handle (:func:`_handle`):
a row of :func:`_update_entries`, as the driver takes it."""

_KeyUpdates = tuple[Key, Any, list[_EntryUpdate]]
"""A (site, item), the driver's time of its earliest updated entry, and the updates."""

_HISTORY_COLUMNS = (
    "event_id",
    "occurred_at",
    "qty",
    "in_cost",
    "link",
    "in_value",
    "cogs",
    "variance",
    "shortfall",
    "qty_after",
    "value_after",
    "last_cost_after",
)
"""What a re-valuation reads of each stored entry, after the row's handle (SQLite's
``rowid``, else ``event_id``), in this order: a row is ``(handle, event_id, occurred_at,
qty, in_cost, link, *result)``, so ``row[6:]`` is the stored :class:`Result`. A fresh
movement's row is the first six alone."""
_RESULTS_AT = 6
_FRESH_LENGTH = 6


def _handle(dialect: Dialect) -> str:
    """What names an entry's row in an UPDATE: SQLite's ``rowid`` (read in the same
    write transaction, so it cannot change before the update) spares the lookup of the
    text primary key per row; PostgreSQL joins by ``event_id``."""
    if dialect.name == "sqlite":
        return "rowid"
    return dialect.identifier_preparer.format_column(valuation_entries.c.event_id)


@dataclass(slots=True)
class _Revalued:
    """What re-valuing one (site, item) from a point came to."""

    inserts: list[_NewEntry]
    updates: list[_EntryUpdate]
    changed_links: set[str]
    final: tuple[State, Move] | None
    since: Any = None
    """The time of the earliest updated entry, in the driver's form."""


@lru_cache(maxsize=8)
def _history_sql(dialect: Dialect, *, after_point: bool) -> str:
    """The stored entries of a (site, item), from a point on (``after_point``) or all."""
    quote = dialect.identifier_preparer.format_column
    entries = valuation_entries.c
    names = ", ".join([_handle(dialect), *(quote(entries[name]) for name in _HISTORY_COLUMNS)])
    table = dialect.identifier_preparer.format_table(valuation_entries)
    mark = _placeholder(dialect)
    where = f"{quote(entries.site_id)} = {mark} AND {quote(entries.item)} = {mark}"
    if after_point:
        at, event_id = quote(entries.occurred_at), quote(entries.event_id)
        # The first bound repeats the OR's for PostgreSQL's index scan (_state_before).
        where += (
            f" AND {at} >= {mark} AND ({at} > {mark} OR ({at} = {mark} AND {event_id} >= {mark}))"
        )
    return f"SELECT {names} FROM {table} WHERE {where}"  # noqa: S608 - our own names


def _state_before(connection: Connection, key: Key, method: str, point: OrderKey) -> State:
    """The running state stored on the entry just before ``point`` (moving average).

    ``occurred_at <= at`` says again what the OR says, for PostgreSQL: without it the
    backward index scan starts at the key's newest entry and filters every later one
    (50,000 rows, most of a second, for the middle of ``bench/central.py``'s busy key);
    SQLite draws the bound from the OR by itself."""
    entries = valuation_entries.c
    at, event_id = point
    same_key = (entries.site_id == key[0], entries.item == key[1])
    earlier = or_(
        entries.occurred_at < at, and_(entries.occurred_at == at, entries.event_id < event_id)
    )
    # Its moment first, in the index's own order, then the entry by event_id: robust to
    # a generic plan, which would sort every earlier entry of the key for event_id
    # (reports.newest_entry_at_or_before).
    newest = (
        select(entries.occurred_at)
        .where(*same_key, entries.occurred_at <= at, earlier)
        .order_by(entries.occurred_at.desc())
        .limit(1)
    )
    before = connection.execute(
        select(micro(entries.qty_after), micro(entries.value_after), micro(entries.last_cost_after))
        .where(*same_key, entries.occurred_at == newest.scalar_subquery(), earlier)
        .order_by(entries.event_id.desc())
        .limit(1)
    ).one_or_none()
    if before is None:
        return State(method)
    return State(method, before.qty_after, before.value_after, before.last_cost_after)


def _read_history(
    connection: Connection, key: Key, method: str, point: OrderKey | None
) -> tuple[State, list[Any]]:
    """The state just before ``point`` and the stored entries from it on, as the
    driver's tuples (:data:`_HISTORY_COLUMNS`).

    Moving average starts from the running state stored on the entry just before the
    point; FIFO (whose open layers at a past point are not stored) and a changed method
    start from nothing, with every entry.
    """
    dialect = connection.dialect
    state = State(method)
    if point is not None and method == MOVING_AVERAGE:
        state = _state_before(connection, key, method, point)
        at = _ledger_binds(dialect).times([point[0]])[0]
        parameters: tuple[Any, ...] = (*key, at, at, at, point[1])
        result = connection.exec_driver_sql(_history_sql(dialect, after_point=True), parameters)
    else:
        result = connection.exec_driver_sql(_history_sql(dialect, after_point=False), key)
    # The DBAPI cursor's own fetchall: plain tuples in one call, where SQLAlchemy's rows
    # cost a Python call each (a fifth of the read for 50,000 of them).
    with result:
        rows: list[Any] = list(result.cursor.fetchall())
    return state, rows


def _revalue(
    connection: Connection,
    key: Key,
    *,
    method: str,
    point: OrderKey | None,
    fresh: Sequence[Move],
    changed_inputs: Mapping[str, int | None],
) -> _Revalued:
    """Re-value ``key`` from ``point`` with its ``fresh`` movements: what to insert, and
    the stored entries whose inputs or results changed, as the driver's rows.

    A late event re-values every later movement of its (site, item) (50,000 of them for
    the busy key of ``bench/central.py``), so this works at the driver's level: the
    stored entries are read as plain tuples (their times in the driver's own form, which
    sort as the times do: SQLite's fixed-width UTC text, PostgreSQL's ``datetime``), the
    fresh movements' times are converted to the same form as ingest stores them, and
    moving average is replayed by :func:`_replay_average` on integers, with no object per
    movement. FIFO (whose open layers at a past point are not stored) and a changed
    method start from nothing and replay through :func:`apply`. The result is what
    :func:`apply` gives over the same inputs in the same order, so what
    :func:`value_from_scratch` gives (the property tests hold the two equal).
    """
    state, history = _read_history(connection, key, method, point)
    fresh_ids = {move.event_id for move in fresh}
    if fresh:
        times = _ledger_binds(connection.dialect).times([move.occurred_at for move in fresh])
        history.extend(
            (None, m.event_id, at, m.qty, m.in_cost, m.link)
            for m, at in zip(fresh, times, strict=True)
        )
    history.sort(key=_BY_TIME_AND_ID)  # already in time order but for ties and the fresh
    in_costs = [row[4] for row in history]
    if changed_inputs:
        in_costs = [
            changed_inputs.get(row[1], cost) if row[1] not in fresh_ids else cost
            for row, cost in zip(history, in_costs, strict=True)
        ]
    quantities = [row[3] for row in history]
    if method == MOVING_AVERAGE:
        results = _replay_average(state, quantities, in_costs)
    else:
        # apply() reads neither the time nor the kind of a movement: placeholders here.
        results = [
            tuple(apply(state, Move(row[1], _EPOCH, "", qty, in_cost, "", None)))
            for row, qty, in_cost in zip(history, quantities, in_costs, strict=True)
        ]
    fresh_by_id = {move.event_id: move for move in fresh}
    found = _Revalued([], [], set(), None)
    for row, in_cost, result in zip(history, in_costs, results, strict=True):
        if len(row) == _FRESH_LENGTH:
            move = fresh_by_id[row[1]]
            found.inserts.append((key, move, Result(*result)))
            if move.link is not None and move.qty < 0:
                found.changed_links.add(move.link)
        elif row[4] != in_cost or row[_RESULTS_AT:] != result:
            if not found.updates:
                found.since = row[2]
            found.updates.append((in_cost, *result, row[0]))
            if row[5] is not None and row[3] < 0 and row[_RESULTS_AT + 1] != result[1]:
                found.changed_links.add(row[5])
    if history:
        found.final = (state, _last_move(history[-1], fresh_by_id, in_costs[-1]))
    return found


def _last_move(row: Any, fresh_by_id: Mapping[str, Move], in_cost: int | None) -> Move:
    """The movement a re-valued key ends with, for its state row (which stores only its
    time and event id)."""
    if len(row) == _FRESH_LENGTH:
        return fresh_by_id[row[1]]
    at = row[2]
    moment = utc(datetime.fromisoformat(at) if isinstance(at, str) else at)
    return Move(row[1], moment, "", row[3], in_cost, "", row[5])


_BY_TIME_AND_ID = itemgetter(2, 1)


def _replay_average(  # noqa: PLR0912, PLR0915 - apply() inlined, on purpose
    state: State, quantities: list[int], in_costs: list[int | None]
) -> list[Any]:
    """:func:`apply` for moving average over many movements, inlined: each movement's
    results as a tuple in :class:`Result`'s order, ``state`` left after the last.

    The same arithmetic, step for step, as :func:`_take_in` and :func:`_give_out` for
    ``MOVING_AVERAGE`` (a test holds the two equal on random movements, negative stock
    included): a late event replays every later movement of its (site, item), and a
    call, a :class:`Move` and a :class:`Result` each cost more than the arithmetic. The
    frequent roundings by a positive denominator are :func:`div` written out (``divmod``
    floors, so the remainder is never negative); the rare ones call it.
    """
    if state.method != MOVING_AVERAGE:  # pragma: no cover - a caller's mistake
        raise ValueError("_replay_average values moving average only")
    qty, value, last = state.qty, state.value, state.last_cost
    results: list[Any] = []
    append = results.append
    for move_qty, in_cost in zip(quantities, in_costs, strict=True):
        if move_qty > 0:
            if in_cost is not None:
                unit = in_cost
            elif qty > 0:
                unit = div(value * MICRO, qty)
            else:
                unit = last
            in_value, rest = divmod(move_qty * unit, MICRO)
            if rest * 2 > MICRO or (rest * 2 == MICRO and in_value & 1):
                in_value += 1
            variance = 0
            if qty < 0:
                after = qty + move_qty
                target = div(in_value * after, move_qty) if after >= 0 else div(value * after, qty)
                variance = value + in_value - target
                qty, value = after, target
            else:
                qty += move_qty
                value += in_value
            if qty > 0:
                last, rest = divmod(value * MICRO, qty)
                if rest * 2 > qty or (rest * 2 == qty and last & 1):
                    last += 1
            else:
                last = unit
            append((in_value, 0, variance, 0, qty, value, last))
        else:
            out = -move_qty
            cogs = 0
            covered = (out if out < qty else qty) if qty > 0 else 0
            if covered:
                if covered == qty:
                    cogs = value
                else:
                    cogs, rest = divmod(value * covered, qty)
                    if rest * 2 > qty or (rest * 2 == qty and cogs & 1):
                        cogs += 1
                qty -= covered
                value -= cogs
                if qty > 0:
                    last, rest = divmod(value * MICRO, qty)
                    if rest * 2 > qty or (rest * 2 == qty and last & 1):
                        last += 1
            shortfall = out - covered
            if shortfall:
                short_value = div(shortfall * last, MICRO)
                qty -= shortfall
                value -= short_value
                cogs += short_value
            append((0, cogs, 0, shortfall, qty, value, last))
    state.qty, state.value, state.last_cost = qty, value, last
    return results


def _result_of(row: Any) -> Result:
    return Result(
        in_value=row.in_value,
        cogs=row.cogs,
        variance=row.variance,
        shortfall=row.shortfall,
        qty_after=row.qty_after,
        value_after=row.value_after,
        last_cost_after=row.last_cost_after,
    )


_NewEntry = tuple[Key, Move, Result]


def _insert_entries(connection: Connection, entries: Sequence[_NewEntry]) -> None:
    """Insert new entries as the driver's own rows: a push inserts one per event, and
    SQLAlchemy's per-row parameter handling cost several times the insert itself.

    The engine's amounts are already the integers the columns store; the times go
    through ingest's conversion, and the statement is ingest's (``COPY`` on PostgreSQL),
    so values reach the driver exactly as the column types' bind processors would give
    them.
    """
    dialect = connection.dialect
    times = _ledger_binds(dialect).times([move.occurred_at for _key, move, _result in entries])
    rows = [
        (
            move.event_id,
            key[0],
            key[1],
            occurred_at,
            move.kind,
            move.qty,
            move.in_cost,
            move.cost_source,
            move.link,
            *result,
        )
        for (key, move, result), occurred_at in zip(entries, times, strict=True)
    ]
    if dialect.name == "postgresql" and len(rows) >= _COPY_FROM_ROWS:
        _copy_rows(connection, valuation_entries, rows)
    else:
        driver.run_sql(connection, _insert_sql(dialect, valuation_entries), rows, many=True)


_ENTRY_ORDER = (
    "event_id",
    "site_id",
    "item",
    "occurred_at",
    "kind",
    "qty",
    "in_cost",
    "cost_source",
    "link",
    "in_value",
    "cogs",
    "variance",
    "shortfall",
    "qty_after",
    "value_after",
    "last_cost_after",
)
if tuple(column.name for column in valuation_entries.c) != _ENTRY_ORDER:  # pragma: no cover
    raise TypeError("valuation_entries' columns changed: update _insert_entries")

_RESULT_FIELDS = _ENTRY_ORDER[9:]
if Result._fields != _RESULT_FIELDS:  # pragma: no cover
    raise TypeError("Result's fields must be valuation_entries' result columns, in order")

_AMOUNTS = frozenset({"qty", "in_cost", *_RESULT_FIELDS, "value", "last_cost"})
_ENTRY_COLUMNS = tuple(
    micro(column) if column.name in _AMOUNTS else column for column in valuation_entries.c
)
_STATE_COLUMNS = tuple(
    micro(column) if column.name in _AMOUNTS else column for column in valuation_state.c
)
_STATES_OF_SITE: dict[str, Prepared] = {}
_STATE_SITE, _STATE_ITEM, _STATE_METHOD, _STATE_QTY, _STATE_VALUE, _STATE_COST = (
    [column.name for column in _STATE_COLUMNS].index(name)
    for name in ("site_id", "item", "method", "qty", "value", "last_cost")
)
_STATE_LAST_AT, _STATE_LAST_EVENT = (
    [column.name for column in _STATE_COLUMNS].index(name) for name in ("last_at", "last_event_id")
)


def _states_of_site(connection: Connection) -> Prepared:
    """The states' read of one site's items, per database, as :func:`_master_items`."""
    found = _STATES_OF_SITE.get(connection.dialect.name)
    if found is None:
        statement = select(*_STATE_COLUMNS).where(
            valuation_state.c.site_id == bindparam("b_site", type_=String),
            one_of(connection, valuation_state.c.item, "b_items"),
        )
        found = _STATES_OF_SITE[connection.dialect.name] = prepare(statement, connection.dialect)
    return found


_LAYER_COLUMNS = tuple(
    micro(column) if column.name in _AMOUNTS else column for column in valuation_layers.c
)
"""Each table's columns as the engine reads them: amounts as stored integers."""


def _results(result: Result) -> dict[str, int]:
    return result._asdict()


_UPDATED = ("in_cost", *_RESULT_FIELDS)
"""The columns a re-valuation rewrites, in the order of an :data:`_EntryUpdate`."""


@lru_cache(maxsize=8)
def _update_entry_sql(dialect: Dialect) -> str:
    """One entry's UPDATE by its handle (:func:`_handle`), for ``executemany``."""
    quote = dialect.identifier_preparer.format_column
    mark = _placeholder(dialect)
    table = dialect.identifier_preparer.format_table(valuation_entries)
    sets = ", ".join(f"{quote(valuation_entries.c[name])} = {mark}" for name in _UPDATED)
    return f"UPDATE {table} SET {sets} WHERE {_handle(dialect)} = {mark}"  # noqa: S608


_REVALUED = "jxc_revalued"
"""PostgreSQL: the temporary table a large re-valuation's rows are copied into."""


@lru_cache(maxsize=8)
def _update_from_copy_sql(dialect: Dialect, *, until: bool = False) -> tuple[str, str, str]:
    """PostgreSQL: the temporary table's DDL, its ``COPY`` and the ``UPDATE ... FROM``.

    The UPDATE is bounded to the (site, item) from the earliest changed entry on (the
    entries index), so the join reads the tail it rewrites, never the whole table (a hash
    join against every entry was the plan without the bound); with ``until``, up to the
    latest too: a settling chunk rewrites 10,000 entries of a longer tail, and without
    it each chunk's join read the whole rest of the tail (three times the entries for
    five chunks)."""
    quote = dialect.identifier_preparer.format_column
    table = dialect.identifier_preparer.format_table(valuation_entries)
    entries = valuation_entries.c
    columns = ", ".join(f"{name} bigint" for name in _UPDATED)
    create = (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_REVALUED} "
        f"({columns}, event_id varchar(36)) ON COMMIT DELETE ROWS"
    )
    names = ", ".join((*_UPDATED, "event_id"))
    copy = f"COPY {_REVALUED} ({names}) FROM STDIN (FORMAT BINARY)"
    sets = ", ".join(f"{quote(entries[name])} = u.{name}" for name in _UPDATED)
    update = (
        f"UPDATE {table} SET {sets} FROM {_REVALUED} AS u "  # noqa: S608 - our own names
        f"WHERE {table}.{quote(entries.site_id)} = %s AND {table}.{quote(entries.item)} = %s "
        f"AND {table}.{quote(entries.occurred_at)} >= %s "
        + (f"AND {table}.{quote(entries.occurred_at)} <= %s " if until else "")
        + f"AND {table}.{quote(entries.event_id)} = u.event_id"
    )
    return create, copy, update


def _update_entries(
    connection: Connection,
    key: Key,
    since: Any,
    rows: Sequence[_EntryUpdate],
    until: Any = None,
) -> None:
    """Rewrite re-valued entries of ``key`` (none before ``since``, none after ``until``
    when given: times in the driver's form) as the driver's own
    rows: ``in_cost`` and the results are the plain ``MicroUnits`` integers the columns
    store and the handle a rowid or an event id, so the values are what the columns' bind
    processors would give.

    SQLite: ``executemany`` of one prepared UPDATE by rowid. PostgreSQL, for a large
    batch: binary ``COPY`` into a temporary table and one ``UPDATE ... FROM`` it; against
    ``UPDATE ... FROM unnest(arrays)`` it costs the same on the server and an eighth of
    the client's CPU (psycopg dumps arrays element by element), against a pipelined
    ``executemany`` a round of parsing per row less (``docs/performance.md``).
    """
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) < _COPY_FROM_ROWS:
        connection.exec_driver_sql(_update_entry_sql(dialect), list(rows))
        return
    import psycopg  # noqa: PLC0415 - PostgreSQL's driver, needed only on PostgreSQL

    create, copy_sql, update_sql = _update_from_copy_sql(dialect, until=until is not None)
    connection.exec_driver_sql(create)
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(driver).__name__}")
    try:
        with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.set_types(["int8"] * len(_UPDATED) + ["varchar"])
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:
        raise DBAPIError.instance(copy_sql, None, error, psycopg.Error, dialect=dialect) from error
    bounds = (since,) if until is None else (since, until)
    connection.exec_driver_sql(update_sql, (*key, *bounds))
    connection.exec_driver_sql(f"TRUNCATE {_REVALUED}")


_INSERT_STATE = insert(valuation_state).values(
    {
        column.name: micro_param(column.name) if column.name in _AMOUNTS else bindparam(column.name)
        for column in valuation_state.c
    }
)
_UPDATE_STATE = (
    update(valuation_state)
    .where(
        valuation_state.c.site_id == bindparam("b_site"),
        valuation_state.c.item == bindparam("b_item"),
    )
    .values(
        {
            name: micro_param(name) if name in _AMOUNTS else bindparam(name)
            for name in (
                "method",
                "qty",
                "value",
                "last_cost",
                "last_at",
                "last_event_id",
                "updated_at",
            )
        }
    )
)
_INSERT_LAYER = insert(valuation_layers).values(
    {
        column.name: micro_param(column.name) if column.name in _AMOUNTS else bindparam(column.name)
        for column in valuation_layers.c
    }
)


def _write(
    connection: Connection,
    inserts: list[_NewEntry],
    updates: list[_KeyUpdates],
    finals: Mapping[Key, tuple[State, Move]],
    held: Mapping[Key, tuple[State, OrderKey]],
    *,
    at: datetime,
) -> None:
    """Every row a push changes, a statement per table (each an executemany)."""
    if _one_entry_and_its_state(connection, inserts, updates, finals, held, at=at):
        return
    if inserts:
        _insert_entries(connection, inserts)
    for key, since, rows in updates:
        _update_entries(connection, key, since, rows)
    if not finals:
        return
    state_rows = [_state_row(key, state, last, at) for key, (state, last) in finals.items()]
    existing = [row for row in state_rows if (row["site_id"], row["item"]) in held]
    new = [row for row in state_rows if (row["site_id"], row["item"]) not in held]
    if new:
        driver.run_many(connection, driver.prepared(_INSERT_STATE, connection.dialect), new)
    if existing:
        driver.run_many(
            connection,
            driver.prepared(_UPDATE_STATE, connection.dialect),
            [{**row, "b_site": row["site_id"], "b_item": row["item"]} for row in existing],
        )
    fifo = [key for key, (state, _last) in finals.items() if state.method == FIFO]
    dropped = [key for key, (state, _last) in finals.items() if state.method != FIFO]
    stale = fifo + [key for key in dropped if key in held and held[key][0].method == FIFO]
    for chunk in _chunks(stale):
        connection.execute(
            delete(valuation_layers).where(
                tuple_(valuation_layers.c.site_id, valuation_layers.c.item).in_(chunk)
            )
        )
    layer_rows = [
        {
            "site_id": key[0],
            "item": key[1],
            "layer_no": number,
            "event_id": layer.event_id,
            "qty": layer.qty,
            "value": layer.value,
        }
        for key in fifo
        for number, layer in enumerate(finals[key][0].layers, start=1)
    ]
    if layer_rows:
        connection.execute(_INSERT_LAYER, layer_rows)


def _state_row(key: Key, state: State, last: Move, at: datetime) -> dict[str, Any]:
    """A ``valuation_state`` row's values: ``state`` after ``last``, written ``at``."""
    return {
        "site_id": key[0],
        "item": key[1],
        "method": state.method,
        "qty": state.qty,
        "value": state.value,
        "last_cost": state.last_cost,
        "last_at": last.occurred_at,
        "last_event_id": last.event_id,
        "updated_at": at,
    }


_ENTRY_AND_STATE = _UPDATE_STATE.add_cte(
    insert(valuation_entries)
    .values(
        {
            name: micro_param(f"e_{name}")
            if name in _AMOUNTS
            else bindparam(f"e_{name}", type_=valuation_entries.c[name].type)
            for name in _ENTRY_ORDER
        }
    )
    .cte("entry")
)
"""PostgreSQL: a push's one entry inserted in a ``WITH`` of its state's update, one
statement (PostgreSQL runs a ``WITH``'s INSERT whether or not it is read)."""


def _one_entry_and_its_state(
    connection: Connection,
    inserts: list[_NewEntry],
    updates: list[_KeyUpdates],
    finals: Mapping[Key, tuple[State, Move]],
    held: Mapping[Key, tuple[State, OrderKey]],
    *,
    at: datetime,
) -> bool:
    """The commonest push on PostgreSQL, one movement of a (site, item) valued before
    (moving average), written in one round trip instead of two: True if it was.

    A one-event push made 13 round trips; each costs central about 50 us and PostgreSQL
    about 20 (``docs/performance.md``, "A push's round trips on PostgreSQL")."""
    if connection.dialect.name != "postgresql" or len(inserts) != 1 or updates:
        return False
    key, move, result = inserts[0]
    final = finals.get(key)
    if len(finals) != 1 or final is None or key not in held:
        return False
    state, last = final
    if state.method != MOVING_AVERAGE or held[key][0].method != MOVING_AVERAGE:
        return False
    given: dict[str, Any] = {
        "e_event_id": move.event_id,
        "e_site_id": key[0],
        "e_item": key[1],
        "e_occurred_at": move.occurred_at,
        "e_kind": move.kind,
        "e_qty": move.qty,
        "e_in_cost": move.in_cost,
        "e_cost_source": move.cost_source,
        "e_link": move.link,
        **{f"e_{name}": value for name, value in zip(_RESULT_FIELDS, result, strict=True)},
        **_state_row(key, state, last, at),
        "b_site": key[0],
        "b_item": key[1],
    }
    driver.run(connection, driver.prepared(_ENTRY_AND_STATE, connection.dialect), given)
    return True


# --- transfers: the sending site's cost travels with the goods -----------------------------


def _carry_transfer_costs(
    connection: Connection,
    links: set[str],
    master: _Master,
    *,
    at: datetime,
    held: frozenset[str],
) -> None:
    """Give every ``transfer_in`` of a transfer line at a ``held`` site what its
    ``transfer_out`` cost, and record the other sites that must do the same.

    The cost per base unit of a line is the cost of goods of its outbound entries over
    their quantity; an inbound entry of the same line (at a held site) whose ``in_cost``
    differs is re-valued from its point, which may change another transfer's cost in turn
    (a chain of transfers), hence the loop, bounded since a chain cannot be longer than
    the number of links.

    Inbound entries at a site this transaction does not hold are not touched: taking
    that site's lock here, while holding our own, is what deadlocked two sites cascading
    into each other. Each such (site, link), and the receiving site of every transfer
    whose line was looked up (its transfer_in may be in a transaction that has not
    committed yet, which this one cannot see), is recorded in ``valuation_pending`` and
    settled after the commit by :func:`settle_site`, holding that site alone.
    """
    elsewhere: set[tuple[str, str]] = set()
    looked_up: set[str] = set()
    seen = 0
    while links and seen < 1000:
        seen += len(links)
        looked_up |= links
        entries = valuation_entries.c
        rows = list(
            connection.execute(
                select(
                    entries.event_id,
                    entries.site_id,
                    entries.item,
                    entries.occurred_at,
                    micro(entries.qty),
                    micro(entries.cogs),
                    micro(entries.in_cost),
                    entries.link,
                ).where(entries.link.in_(sorted(links)))
            )
        )
        unit: dict[str, int] = {}
        totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for row in rows:
            if row.qty < 0:
                qty, cost = totals[row.link]
                totals[row.link] = (qty - row.qty, cost + row.cogs)
        for link, (qty, cost) in totals.items():
            unit[link] = div(cost * MICRO, qty)
        changed: dict[str, int | None] = {}
        since: dict[Key, OrderKey] = {}
        methods: dict[Key, str] = {}
        for row in rows:
            if row.qty > 0 and row.link in unit and row.in_cost != unit[row.link]:
                if row.site_id not in held:
                    elsewhere.add((row.site_id, row.link))
                    continue
                key = (row.site_id, row.item)
                changed[row.event_id] = unit[row.link]
                point = (utc(row.occurred_at), row.event_id)
                since[key] = min(since.get(key, point), point)
                methods[key] = (
                    master.method(key[1])
                    if key[1] in master.items
                    else _method_of(connection, key[1])
                )
        if not changed:
            break
        connection.execute(
            update(valuation_entries)
            .where(valuation_entries.c.event_id == bindparam("b_event_id"))
            .values(in_cost=micro_param("in_cost")),
            [{"b_event_id": event_id, "in_cost": cost} for event_id, cost in changed.items()],
        )
        links = _value_keys(connection, {}, methods, at=at, changed_inputs=changed, since=since)
    elsewhere |= _receiving_sites(connection, looked_up, held)
    _record_pending(connection, elsewhere, at=at)


def _transfer_of(link: str) -> str | None:
    """The transfer id a link ``transfer_order:<id>:<line>`` names."""
    prefix, _, rest = link.partition(":")
    transfer_id, _, _line = rest.rpartition(":")
    return transfer_id if prefix == TRANSFER and transfer_id else None


def _receiving_sites(
    connection: Connection, links: set[str], held: frozenset[str]
) -> set[tuple[str, str]]:
    """(receiving site, link) for every link whose transfer order is known and goes to a
    site not held: its transfer_in may be committing beside this transaction, unseen."""
    by_transfer: dict[str, list[str]] = defaultdict(list)
    for link in links:
        transfer_id = _transfer_of(link)
        if transfer_id is not None:
            by_transfer[transfer_id].append(link)
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(by_transfer)):
        for transfer_id, to_site in connection.execute(
            select(transfer_orders.c.transfer_id, transfer_orders.c.to_site).where(
                transfer_orders.c.transfer_id.in_(chunk)
            )
        ):
            if to_site not in held:
                found.update((to_site, link) for link in by_transfer[transfer_id])
    return found


def _record_pending(connection: Connection, targets: set[tuple[str, str]], *, at: datetime) -> None:
    """Record each (site, link) to settle, and settle each site right after the commit.

    Insert-only rows under fresh ids, so recording never waits for another transaction;
    the settling is queued per site (:func:`central_api.core.db.after_commit`)."""
    if not targets:
        return
    connection.execute(
        insert(valuation_pending),
        [
            {"pending_id": str(uuid7()), "site_id": site_id, "link": link, "recorded_at": at}
            for site_id, link in sorted(targets)
        ],
    )
    for site_id in sorted({site_id for site_id, _link in targets}):
        after_commit(connection, (NAME, site_id), _settle_after_commit(site_id))


def _settle_after_commit(site_id: str) -> Callable[[Connection], None]:
    def settle(connection: Connection) -> None:
        deferred = _DEFERRED.get()
        if deferred is not None:
            deferred.append(site_id)
            return
        settle_site(connection, site_id)

    return settle


_DEFERRED: ContextVar[list[str] | None] = ContextVar("jxc_valuation_deferred", default=None)
"""Set by :func:`settling_deferred`: the sites whose settling a commit queued, collected
instead of settled there."""


@contextmanager
def settling_deferred() -> Iterator[list[str]]:
    """Within it, the settling a commit queues (:func:`settle_site`) is not run but
    collected: the sites to settle, for the caller to settle once it has answered.

    The push route uses it so that a late event's long tail (or a transfer's cost to
    carry) is settled right after the edge has its answer, not before: the edge waits
    for its events to be stored, not for 50,000 later entries to be re-valued. Nothing
    is lost if the process dies in between: the records are durable, and the site's
    next push, any reader of values (:func:`settle_for_reading`) and ``jxc central
    check --repair`` settle them."""
    sites: list[str] = []
    token = _DEFERRED.set(sites)
    try:
        yield sites
    finally:
        _DEFERRED.reset(token)


def settle_pending(engine: Engine) -> list[str]:
    """Settle whatever is pending at any site (what a crash between a commit and its
    settling left): the sites found. The monitor runs it at every interval, so nothing
    lags for long even where no push or reader comes by."""
    with engine.connect() as connection:
        sites = list(connection.execute(_PENDING_SITES).scalars())
        connection.rollback()
        for site_id in sites:
            settle_site(connection, site_id)
    return sites


def settle_sites(engine: Engine, sites: Iterable[str]) -> None:
    """Settle ``sites`` (collected by :func:`settling_deferred`), each once, in order."""
    with engine.connect() as connection:
        for site_id in dict.fromkeys(sites):
            settle_site(connection, site_id)


_PENDING_OF_SITE = select(
    valuation_pending.c.pending_id,
    valuation_pending.c.link,
    valuation_pending.c.since_at,
    valuation_pending.c.since_event_id,
).where(valuation_pending.c.site_id == bindparam("b_site"))
"""Built once: every push runs it (and finds nothing, almost always), and building a
statement costs more than running this one (``docs/performance.md``)."""


def _take_pending(
    connection: Connection,
    site_ids: Iterable[str],
    read: Sequence[_PendingRow] | None = None,
) -> tuple[set[str], dict[Key, OrderKey]]:
    """The transfer links recorded as pending for ``site_ids`` (whose locks the
    transaction holds), deleted: the caller settles them in this transaction; and the
    keys of those sites that lag, with their boundaries (left in place: a tail is
    settled in chunks after the commit, :func:`settle_site`). ``read``: the rows of the
    one site, when the caller has read them (:func:`_states_and_pending`)."""
    links: dict[str, str] = {}
    tails: dict[Key, OrderKey] = {}
    for site_id in sorted(site_ids):
        rows = read
        if rows is None:
            rows = driver.rows(
                connection,
                driver.prepared(_PENDING_OF_SITE, connection.dialect),
                {"b_site": site_id},
            )
        for pending_id, link, since_at, since_event_id in rows:
            item = _item_of_tail(link)
            if item is None:
                links[pending_id] = link
            elif since_at is not None:
                point = (utc(since_at), since_event_id)
                tails[(site_id, item)] = min(tails.get((site_id, item), point), point)
    if links:
        for chunk in _chunks(sorted(links)):
            connection.execute(
                delete(valuation_pending).where(valuation_pending.c.pending_id.in_(chunk))
            )
    return set(links.values()), tails


def settle_site(connection: Connection, site_id: str) -> None:
    """Settle the re-valuations pending for ``site_id``, in a write transaction of its own
    that locks that site's sync row and no other (``connection`` outside a transaction).

    Run right after the commit of the transaction that recorded them; a failure here is
    logged and leaves the rows for the site's next push or ``jxc central check
    --repair``: the push that recorded them has committed and must not be answered an
    error (its edge would send it again for nothing).
    """
    try:
        for _chunk in range(MAX_SETTLE_CHUNKS):
            with write_transaction(connection):
                at = datetime.now(UTC)
                lock_site(connection, site_id, now=at)
                links, tails = _take_pending(connection, [site_id])
                master = _Master(connection, [])
                held = frozenset({site_id})
                if links:
                    _carry_transfer_costs(connection, links, master, at=at, held=held)
                if tails:
                    key = min(tails)
                    changed = _settle_chunk(connection, key, tails, master, at=at)
                    _carry_transfer_costs(connection, changed, master, at=at, held=held)
            if not tails:
                return
        log.error("valuation of %s: still lagging after %d chunks", site_id, MAX_SETTLE_CHUNKS)
    except Exception:
        log.exception("valuation of %s pending: settling failed, left for its next push", site_id)


@lru_cache(maxsize=8)
def _chunk_sql(dialect: Dialect) -> str:
    """The next entries of a (site, item) from a point, in valuation order, at most a
    number of them: a tail is settled a chunk at a time."""
    quote = dialect.identifier_preparer.format_column
    entries = valuation_entries.c
    order = f"{quote(entries.occurred_at)}, {quote(entries.event_id)}"
    return (
        f"{_history_sql(dialect, after_point=True)} ORDER BY {order} LIMIT {_placeholder(dialect)}"
    )


def _settle_chunk(
    connection: Connection,
    key: Key,
    tails: dict[Key, OrderKey],
    master: _Master,
    *,
    at: datetime,
) -> set[str]:
    """Re-value the next :data:`SETTLE_CHUNK` entries of lagging ``key`` from its
    boundary and move the boundary past them; after the last, write its state row and
    drop the tail. The links of the transfer_outs whose cost of goods changed.

    Only those entries are read and replayed, from the running state stored on the entry
    just before the boundary (right, as everything before a boundary is), so settling
    costs what re-valuing the tail does, however long. A key whose method changed since
    it began to lag is re-valued whole, as any push would."""
    point = tails[key]
    method = master.method(key[1]) if key[1] in master.items else _method_of(connection, key[1])
    held = _read_states(connection, [key])
    if key not in held:  # nothing valued to lag behind (a repair dropped it)
        _write_tails(connection, {key: None}, tails, at=at)
        return set()
    if method != MOVING_AVERAGE or held[key][0].method != method:
        return _value_keys(connection, {}, {key: method}, at=at, since={key: point}, tails=tails)
    dialect = connection.dialect
    state = _state_before(connection, key, MOVING_AVERAGE, point)
    bound_at = _ledger_binds(dialect).times([point[0]])[0]
    parameters = (*key, bound_at, bound_at, bound_at, point[1], SETTLE_CHUNK + 1)
    with connection.exec_driver_sql(_chunk_sql(dialect), parameters) as result:
        rows: list[Any] = list(result.cursor.fetchall())
    chunk = rows[:SETTLE_CHUNK]
    in_costs = [row[4] for row in chunk]
    results = _replay_average(state, [row[3] for row in chunk], in_costs)
    updates: list[_EntryUpdate] = []
    since: Any = None
    until: Any = None
    changed: set[str] = set()
    for row, result in zip(chunk, results, strict=True):
        if row[_RESULTS_AT:] != result:
            if since is None:
                since = row[2]
            until = row[2]
            updates.append((row[4], *result, row[0]))
            if row[5] is not None and row[3] < 0 and row[_RESULTS_AT + 1] != result[1]:
                changed.add(row[5])
    if updates:
        _update_entries(connection, key, since, updates, until)
    if len(rows) > SETTLE_CHUNK:
        next_at, next_id = rows[SETTLE_CHUNK][2], rows[SETTLE_CHUNK][1]
        moment = datetime.fromisoformat(next_at) if isinstance(next_at, str) else next_at
        _write_tails(connection, {key: (utc(moment), next_id)}, tails, at=at)
        return changed
    if chunk:
        final = (state, _last_move(chunk[-1], {}, in_costs[-1]))
        _write(connection, [], [], {key: final}, held, at=at)
    _write_tails(connection, {key: None}, tails, at=at)
    return changed


def settle_for_reading(connection: Connection) -> None:
    """Settle every pending re-valuation before a read of values: a lagging (site, item)
    and a transfer's cost still to carry leave stored values stale until settled, and a
    reader must not be shown them.

    Right after the push that recorded them, that push's own settling is usually done
    already: this finds nothing, with one read of a table that is empty almost always.
    ``connection`` is the reader's, called before its read, outside any write
    transaction. If anything is pending, the read transaction it has open is ended and
    each site settled on it, in transactions holding the site's lock (waiting, if the
    push's own settling is running, for the chunk in hand), so the read that follows
    sees what was settled. A settling that fails is logged and the read goes on (``jxc
    central check`` names what is left)."""
    if connection.get_execution_options().get(WRITE_INTENT):
        raise RuntimeError("settle_for_reading inside a write transaction would wait on itself")
    was_open = connection.in_transaction()
    sites = connection.execute(_PENDING_SITES).scalars().all()
    if not sites:
        if not was_open:
            connection.rollback()  # left as found: a writer may begin on it next
        return
    connection.rollback()
    for site_id in sites:
        settle_site(connection, site_id)


_PENDING_SITES = (
    select(valuation_pending.c.site_id).distinct().order_by(valuation_pending.c.site_id)
)


def _method_of(connection: Connection, item: str) -> str:
    method = connection.execute(
        select(items.c.valuation).where(items.c.item_code == item)
    ).scalar_one_or_none()
    return method if method in METHODS else MOVING_AVERAGE


# --- from scratch, and the check --------------------------------------------------------


@dataclass(slots=True)
class Valuation:
    """A valuation of the whole ledger: per key its state, per event its result."""

    states: dict[Key, State]
    results: dict[str, Result]
    moves: dict[str, Move]
    by_key: dict[Key, list[Move]]
    """Each key's movements in valuation order."""


_LEDGER_COLUMNS = (
    "event_id",
    "site_id",
    "seq",
    "occurred_at",
    "kind",
    "item",
    "location",
    "lot",
    "qty",
    "uom",
    "unit_cost",
    "doc_type",
    "doc_id",
    "doc_line",
)


def value_from_scratch(connection: Connection, *, stored_inputs: bool = False) -> Valuation:
    """Value every (site, item) from its first movement, reading only the ledger (and
    master data for the inputs; with ``stored_inputs``, the inputs recorded on each
    stored entry instead, as :func:`check` does: a cost is a fact fixed when the goods
    came in, not whatever the item master says today)."""
    rows = list(connection.execute(ledger_union(*_LEDGER_COLUMNS)))
    master = _Master(connection, rows)
    recorded: dict[str, Any] = {}
    if stored_inputs:
        recorded = {
            row.event_id: row
            for row in connection.execute(
                select(
                    valuation_entries.c.event_id,
                    micro(valuation_entries.c.in_cost),
                    valuation_entries.c.cost_source,
                )
            )
        }
    by_key: dict[Key, list[Move]] = defaultdict(list)
    moves: dict[str, Move] = {}
    for row, move in zip(rows, master.moves(rows), strict=True):
        held = recorded.get(move.event_id)
        if held is not None:
            move.in_cost, move.cost_source = held.in_cost, held.cost_source
        moves[move.event_id] = move
        by_key[(row.site_id, row.item)].append(move)
    for key_moves in by_key.values():
        key_moves.sort(key=_ORDER)
    valuation = Valuation(states={}, results={}, moves=moves, by_key=dict(by_key))
    _settle(valuation, {key: master.method(key[1]) for key in by_key})
    return valuation


def _settle(valuation: Valuation, methods: Mapping[Key, str]) -> None:
    """Value every key of ``valuation`` from its first movement, then again each whose
    transfer_ins' costs moved, until none does."""
    pending = set(valuation.by_key)
    for _round in range(1000):  # a chain of transfers settles in as many rounds as it is long
        for key in sorted(pending):
            state = State(methods[key])
            valuation.results.update(replay(state, valuation.by_key[key]))
            valuation.states[key] = state
        pending = _transfer_rounds(valuation, valuation.by_key)
        if not pending:
            break


def _transfer_rounds(valuation: Valuation, by_key: Mapping[Key, list[Move]]) -> set[Key]:
    """Set every transfer_in's cost from its line's transfer_out results; the keys whose
    inputs changed and must be valued again."""
    totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for move in valuation.moves.values():
        if move.link is not None and move.qty < 0:
            qty, cost = totals[move.link]
            totals[move.link] = (qty - move.qty, cost + valuation.results[move.event_id].cogs)
    again: set[Key] = set()
    for key, moves in by_key.items():
        for move in moves:
            if move.link is None or move.qty <= 0 or move.link not in totals:
                continue
            qty, cost = totals[move.link]
            unit = div(cost * MICRO, qty)
            if move.in_cost != unit:
                move.in_cost = unit
                again.add(key)
    return again


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing stored that the ledger does not bear out."""

    what: str
    key: str
    stored: str
    ledger: str

    def __str__(self) -> str:
        return f"{self.what} {self.key}: stored {self.stored}, ledger says {self.ledger}"


def check(connection: Connection, *, chunk_rows: int = 20_000) -> list[Difference]:
    """Every difference between stored balances and values and the ledger, recomputed.

    Balances: ``stock_balances`` per (site, location, item, lot) against the sum of the
    ledger's quantities, compared in the database (only the differences come back).
    Values: every event against its entry (one each, the same base quantity), every
    entry's results and every (site, item)'s quantity and value against a valuation
    from scratch with the inputs recorded on the entries.

    It streams: the ledger is read with each event's entry beside it, in (site, item)
    order, and valued about ``chunk_rows`` events at a time, so memory holds a chunk,
    the (site, item)s that transfers link, and the differences, never the whole ledger
    (5,000,000 events as Python objects would be gigabytes). Linked (site, item)s are
    valued together at the end, since a transfer_in's cost is its transfer_out's.
    """
    found = _balance_differences(connection)
    linked: dict[Key, list[tuple[Move, Any]]] = {}
    methods: dict[Key, str] = {}
    for chunk in _ledger_chunks(connection, chunk_rows):
        master = _Master(connection, [row for _key, rows in chunk for row in rows])
        held = _read_states(connection, [key for key, _rows in chunk])
        for key, rows in chunk:
            paired = _recorded_moves(master, rows)
            methods[key] = master.method(key[1])
            if any(move.link is not None for move, _row in paired):
                linked[key] = paired  # valued with the other linked ones below
                continue
            state = State(methods.pop(key))
            results = replay(state, [move for move, _row in paired])
            found.extend(_key_differences(key, paired, results, state, held))
    if linked:
        by_key = {key: [move for move, _row in paired] for key, paired in linked.items()}
        fresh = Valuation(
            states={},
            results={},
            moves={move.event_id: move for moves in by_key.values() for move in moves},
            by_key=by_key,
        )
        _settle(fresh, methods)
        held = _read_states(connection, sorted(linked))
        for key, paired in linked.items():
            found.extend(_key_differences(key, paired, fresh.results, fresh.states[key], held))
    found.extend(_entries_without_events(connection))
    found.extend(_unsettled(connection))
    return sorted(found, key=lambda d: (_KINDS_ORDER.get(d.what, 9), d.key))


_KINDS_ORDER = {"balance": 0, "entry": 1, "entry qty": 1, "value": 2, "pending": 3}
"""The order :func:`check` names differences in: balances, entries, values, pending
re-valuations."""


def _unsettled(connection: Connection) -> list[Difference]:
    """Re-valuations recorded for a site and not settled yet (a crash between a push's
    commit and the settling, or a settling that failed): the values they would change
    differ from the ledger's too, and are named as such; this says why."""
    pending = valuation_pending.c
    return [
        Difference(
            "pending",
            f"{row.site_id}/{row.link}",
            f"a re-valuation recorded at {utc(row.recorded_at).isoformat()}",
            "it is settled",
        )
        for row in connection.execute(
            select(pending.site_id, pending.link, pending.recorded_at).order_by(
                pending.site_id, pending.link, pending.recorded_at
            )
        )
    ]


def _balance_differences(connection: Connection) -> list[Difference]:
    """Balances that differ from the ledger's sums, compared by the database: the sums
    left-joined to the balances, and the balances left-joined to the sums (a full outer
    join, which SQLite has only since 3.39)."""
    union = ledger_union("site_id", "location", "item", "lot", "qty").subquery()
    lot = func.coalesce(union.c.lot, NO_LOT)
    summed = (
        select(
            union.c.site_id,
            union.c.location,
            union.c.item,
            lot.label("lot"),
            func.sum(union.c.qty).label("qty"),
        )
        .group_by(union.c.site_id, union.c.location, union.c.item, lot)
        .subquery()
    )
    held = stock_balances.c
    same_place = and_(
        held.site_id == summed.c.site_id,
        held.location == summed.c.location,
        held.item == summed.c.item,
        held.lot == summed.c.lot,
    )
    wanted = func.coalesce(type_coerce(summed.c.qty, BigInteger), 0)
    stored = func.coalesce(type_coerce(held.qty, BigInteger), 0)
    found: list[Difference] = []
    sums_first = (
        select(summed.c.site_id, summed.c.location, summed.c.item, summed.c.lot)
        .add_columns(summed.c.qty.label("wanted"), held.qty.label("stored"))
        .select_from(summed.outerjoin(stock_balances, same_place))
        .where(wanted != stored)
    )
    balances_first = (
        select(held.site_id, held.location, held.item, held.lot)
        .add_columns(summed.c.qty.label("wanted"), held.qty.label("stored"))
        .select_from(stock_balances.outerjoin(summed, same_place))
        .where(summed.c.site_id.is_(None), stored != 0)
    )
    for query in (sums_first, balances_first):
        for row in connection.execute(query):
            place = "/".join((row.site_id, row.location, row.item, row.lot))
            found.append(
                Difference("balance", place, str(row.stored or _ZERO), str(row.wanted or _ZERO))
            )
    return found


_ENTRY_PREFIX = "entry_"


def _ledger_with_entries() -> Any:
    """Every event of the ledger with its entry's inputs and results beside it (None
    when it has none), by (site, item): the one query :func:`check` streams."""
    union = ledger_union(*_LEDGER_COLUMNS).subquery()
    entry = valuation_entries.c
    beside = [
        (type_coerce(column, BigInteger) if column.name in _AMOUNTS else column).label(
            _ENTRY_PREFIX + column.name
        )
        for column in (
            entry.event_id,
            entry.qty,
            entry.in_cost,
            entry.cost_source,
            *(entry[name] for name in _RESULT_FIELDS),
        )
    ]
    return (
        select(union, *beside)
        .select_from(union.outerjoin(valuation_entries, entry.event_id == union.c.event_id))
        .order_by(union.c.site_id, union.c.item)
        .execution_options(stream_results=True, yield_per=2_000)
    )


def _ledger_chunks(
    connection: Connection, chunk_rows: int
) -> Iterator[list[tuple[Key, list[Any]]]]:
    """The ledger (with entries) by (site, item), a list of whole (site, item)s of
    about ``chunk_rows`` events at a time."""
    chunk: list[tuple[Key, list[Any]]] = []
    size = 0
    rows = connection.execute(_ledger_with_entries())
    for key, group in groupby(rows, key=attrgetter("site_id", "item")):
        events = list(group)
        chunk.append((key, events))
        size += len(events)
        if size >= chunk_rows:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _recorded_moves(master: _Master, rows: list[Any]) -> list[tuple[Move, Any]]:
    """A (site, item)'s movements with the inputs recorded on their entries (a cost is
    a fact of the day the goods came in), in valuation order, each with its row."""
    paired = list(zip(master.moves(rows), rows, strict=True))
    for move, row in paired:
        if row.entry_event_id is not None:
            move.in_cost, move.cost_source = row.entry_in_cost, row.entry_cost_source
    paired.sort(key=lambda pair: _ORDER(pair[0]))
    return paired


def _key_differences(
    key: Key,
    paired: list[tuple[Move, Any]],
    results: Mapping[str, Result],
    state: State,
    held: Mapping[Key, tuple[State, OrderKey]],
) -> list[Difference]:
    """What one (site, item)'s entries and state say against its fresh valuation."""
    found: list[Difference] = []
    for move, row in paired:
        if row.entry_event_id is None:
            found.append(Difference("entry", move.event_id, "none", "an event"))
            continue
        if row.entry_qty != move.qty:
            found.append(
                Difference("entry qty", move.event_id, _units(row.entry_qty), _units(move.qty))
            )
        mine = Result(*(getattr(row, _ENTRY_PREFIX + name) for name in _RESULT_FIELDS))
        theirs = results[move.event_id]
        if mine != theirs:
            found.append(Difference("entry", move.event_id, _show(mine), _show(theirs)))
    stored = held.get(key)
    stored_state = None if stored is None else (stored[0].qty, stored[0].value)
    if stored_state != (state.qty, state.value):
        found.append(
            Difference(
                "value",
                "/".join(key),
                _show_state(stored_state),
                _show_state((state.qty, state.value)),
            )
        )
    return found


def _entries_without_events(connection: Connection) -> list[Difference]:
    """Entries of no event in the ledger, and values of (site, item)s with no event at
    all: what the streamed pass over the ledger cannot see."""
    entry, state = valuation_entries.c, valuation_state.c

    def no_event(event_id: Any) -> Any:
        return and_(
            ~select(ledger_events.c.event_id).where(ledger_events.c.event_id == event_id).exists(),
            ~select(central_events.c.event_id)
            .where(central_events.c.event_id == event_id)
            .exists(),
        )

    found = [
        Difference("entry", event_id, "an entry", "none")
        for event_id in connection.execute(
            select(entry.event_id).where(no_event(entry.event_id))
        ).scalars()
    ]
    of_key = valuation_entries.alias("of_key")
    with_event = (
        select(of_key.c.event_id)
        .where(of_key.c.site_id == state.site_id, of_key.c.item == state.item)
        .where(~no_event(of_key.c.event_id))
        .exists()
    )
    for row in connection.execute(select(*_STATE_COLUMNS).where(~with_event)):
        found.append(
            Difference(
                "value", f"{row.site_id}/{row.item}", _show_state((row.qty, row.value)), "none"
            )
        )
    return found


def _units(amount: int) -> str:
    """Micro-units as the amount a person reads (``6``, ``3.75``)."""
    return str(plain(from_micro_units(amount)))


def _show_state(state: tuple[int, int] | None) -> str:
    return "none" if state is None else f"qty {_units(state[0])} value {_units(state[1])}"


def _show(result: Result) -> str:
    return (
        f"in {_units(result.in_value)} cogs {_units(result.cogs)} "
        f"variance {_units(result.variance)} qty_after {_units(result.qty_after)} "
        f"value_after {_units(result.value_after)}"
    )


def rebuild(connection: Connection, *, at: datetime) -> int:
    """Replace every stored valuation with one from scratch (recorded inputs where an
    event has an entry, fresh ones for the rest); the number of events valued. In the
    caller's write transaction: for a database that held events before valuation existed
    (``jxc central check --repair``), or after a repair of the data by hand. Settles
    every pending re-valuation it read (a valuation from scratch includes them)."""
    settled = connection.execute(select(valuation_pending.c.pending_id)).scalars().all()
    fresh = value_from_scratch(connection, stored_inputs=True)
    for chunk in _chunks(settled):
        # What was pending when the ledger was read is in this valuation; a row recorded
        # since (a push beside the repair) stays for its site to settle.
        connection.execute(
            delete(valuation_pending).where(valuation_pending.c.pending_id.in_(chunk))
        )
    connection.execute(delete(valuation_layers))
    connection.execute(delete(valuation_entries))
    connection.execute(delete(valuation_state))
    inserts = [
        (key, move, fresh.results[move.event_id])
        for key, moves in fresh.by_key.items()
        for move in moves
    ]
    finals = {key: (fresh.states[key], moves[-1]) for key, moves in fresh.by_key.items()}
    for chunk in _chunks(inserts, 5000):
        _insert_entries(connection, chunk)
    _write(connection, [], [], finals, {}, at=at)
    return len(inserts)


# --- reading it ---------------------------------------------------------------------------

MAX_ENTRIES = 1000


def list_states(
    connection: Connection,
    *,
    site_id: str | None,
    item: str | None,
    sites: frozenset[str] | None,
) -> list[dict[str, Any]]:
    """The valuation of every (site, item) matching the filters, within ``sites`` (None:
    every site), by site and item; ``average_cost`` only while there is stock."""
    state = valuation_state.c
    query = select(valuation_state).order_by(state.site_id, state.item)
    if site_id is not None:
        query = query.where(state.site_id == site_id)
    if item is not None:
        query = query.where(state.item == item)
    if sites is not None:
        query = query.where(state.site_id.in_(sorted(sites)))
    return [
        {
            "site_id": row.site_id,
            "item": row.item,
            "method": row.method,
            "qty": row.qty,
            "value": row.value,
            "average_cost": plain(money(row.value / row.qty)) if row.qty > _ZERO else None,
            "last_cost": row.last_cost,
            "last_movement_at": utc(row.last_at),
        }
        for row in connection.execute(query)
    ]


def list_entries(
    connection: Connection, *, site_id: str, item: str, limit: int = MAX_ENTRIES
) -> list[dict[str, Any]]:
    """The latest ``limit`` movements of one (site, item) with what each came to, in
    valuation order (oldest of them first)."""
    entries = valuation_entries.c
    same_key = (entries.site_id == site_id, entries.item == item)
    # The oldest moment among the latest ``limit`` first (the index alone, backwards),
    # then the entries from it: a generic plan of the one ORDER BY ... LIMIT would sort
    # every entry of the key for event_id (reports.newest_entry_at_or_before).
    oldest = connection.execute(
        select(entries.occurred_at)
        .where(*same_key)
        .order_by(entries.occurred_at.desc())
        .offset(limit - 1)
        .limit(1)
    ).scalar_one_or_none()
    wanted = same_key if oldest is None else (*same_key, entries.occurred_at >= oldest)
    rows = connection.execute(
        select(valuation_entries)
        .where(*wanted)
        .order_by(entries.occurred_at.desc(), entries.event_id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "event_id": row.event_id,
            "occurred_at": utc(row.occurred_at),
            "kind": row.kind,
            "qty": row.qty,
            "in_cost": row.in_cost,
            "cost_source": row.cost_source,
            **_results(_result_of(row)),
        }
        for row in reversed(rows)
    ]
