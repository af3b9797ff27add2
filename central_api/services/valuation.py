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
  rounded to micro-units at the same steps).
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

:func:`value_from_scratch` values the whole ledger afresh; :func:`check` compares it, and
the ledger's sums per balance key, with what is stored (``jxc central check``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, tuple_, update

from central_api.models.base import to_micro_units_many
from central_api.models.items import items
from central_api.models.ledger import site_sync_state
from central_api.models.master import item_units
from central_api.models.purchasing import purchase_order_lines, purchase_orders
from central_api.models.stock import NO_LOT, stock_balances
from central_api.models.valuation import valuation_entries, valuation_layers, valuation_state
from central_api.services.central_events import ledger_union
from central_api.services.ingest import _COPY_FROM_ROWS, _copy_rows, _insert_sql, _ledger_binds
from central_api.services.projections import AcceptedEvents
from central_api.services.purchasing import plain
from jxc.contract import EventKind, LedgerEvent

NAME = "valuation"
MOVING_AVERAGE = "moving_average"
FIFO = "fifo"
METHODS = frozenset({MOVING_AVERAGE, FIFO})

PURCHASE_ORDER = "purchase_order"
TRANSFER = "transfer_order"
"""The document type a transfer's events name (its line links out and in); the same as
``services.transfers.TRANSFER_ORDER`` and the contract's ``DocumentType``."""

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


# --- the valuation itself: pure functions over movements ----------------------------------


@dataclass(slots=True)
class Move:
    """One movement as valuation sees it: its inputs, fixed when first valued."""

    event_id: str
    occurred_at: datetime
    kind: str
    qty: Decimal
    """In the item's base unit, signed: positive in, negative out."""
    in_cost: Decimal | None
    """Per base unit, for an inbound movement; None: at the running cost."""
    cost_source: str
    link: str | None = None
    """``transfer:<id>:<line>`` for a transfer's events: what carries cost between sites."""

    @property
    def order(self) -> OrderKey:
        return (self.occurred_at, self.event_id)


@dataclass(frozen=True, slots=True)
class Result:
    """What a movement came to, and the (site, item)'s state after it."""

    in_value: Decimal
    cogs: Decimal
    variance: Decimal
    shortfall: Decimal
    qty_after: Decimal
    value_after: Decimal
    last_cost_after: Decimal


@dataclass(slots=True)
class Layer:
    event_id: str
    qty: Decimal
    value: Decimal


@dataclass(slots=True)
class State:
    """A (site, item)'s running valuation. ``qty < 0`` is negative stock (a deficit
    valued at the cost it was issued at); FIFO layers exist only while ``qty > 0``."""

    method: str
    qty: Decimal = _ZERO
    value: Decimal = _ZERO
    last_cost: Decimal = _ZERO
    layers: list[Layer] = field(default_factory=list)

    def running_cost(self) -> Decimal:
        """What one more unit costs now: the average (moving average, stock on hand),
        else the last known unit cost."""
        if self.method == MOVING_AVERAGE and self.qty > _ZERO:
            return money(self.value / self.qty)
        return self.last_cost


def apply(state: State, move: Move) -> Result:
    """Value ``move`` against ``state`` (changed in place); what it came to."""
    if move.qty > _ZERO:
        return _take_in(state, move)
    return _give_out(state, move)


def _take_in(state: State, move: Move) -> Result:
    qty = move.qty
    unit = state.running_cost() if move.in_cost is None else move.in_cost
    in_value = money(qty * unit)
    variance = _ZERO
    if state.qty < _ZERO:
        # Fill the hole first: what is left of the deficit stays at its provisional cost,
        # what is left of the receipt is at the receipt's; the rest is the correction.
        after = state.qty + qty
        if after >= _ZERO:
            target = money(in_value * after / qty)
            if after > _ZERO and state.method == FIFO:
                state.layers.append(Layer(move.event_id, after, target))
        else:
            target = money(state.value * after / state.qty)
        variance = state.value + in_value - target
        state.qty, state.value = after, target
    else:
        state.qty += qty
        state.value += in_value
        if state.method == FIFO:
            state.layers.append(Layer(move.event_id, qty, in_value))
    if state.method == MOVING_AVERAGE and state.qty > _ZERO:
        state.last_cost = money(state.value / state.qty)
    else:
        state.last_cost = unit
    return _after(state, in_value=in_value, variance=variance)


def _give_out(state: State, move: Move) -> Result:
    out = -move.qty
    cogs = _ZERO
    covered = min(out, state.qty) if state.qty > _ZERO else _ZERO
    if covered:
        if state.method == FIFO:
            cogs = _consume(state.layers, covered)
        elif covered == state.qty:
            cogs = state.value
        else:
            cogs = money(state.value * covered / state.qty)
        state.qty -= covered
        state.value -= cogs
        if state.method == MOVING_AVERAGE and state.qty > _ZERO:
            state.last_cost = money(state.value / state.qty)
    shortfall = out - covered
    if shortfall:
        short_value = money(shortfall * state.last_cost)
        state.qty -= shortfall
        state.value -= short_value
        cogs += short_value
    return _after(state, cogs=cogs, shortfall=shortfall)


def _after(
    state: State,
    *,
    in_value: Decimal = _ZERO,
    cogs: Decimal = _ZERO,
    variance: Decimal = _ZERO,
    shortfall: Decimal = _ZERO,
) -> Result:
    """A movement's result, with the state it left behind."""
    return Result(in_value, cogs, variance, shortfall, state.qty, state.value, state.last_cost)


def _consume(layers: list[Layer], qty: Decimal) -> Decimal:
    """Take ``qty`` from the oldest layers on (there is at least that much); its cost."""
    cost = _ZERO
    while qty:
        layer = layers[0]
        if qty >= layer.qty:
            cost += layer.value
            qty -= layer.qty
            layers.pop(0)
        else:
            part = money(layer.value * qty / layer.qty)
            layer.qty -= qty
            layer.value -= part
            cost += part
            qty = _ZERO
    return cost


def replay(state: State, moves: Iterable[Move]) -> dict[str, Result]:
    """Apply ``moves`` (already in order) to ``state``; each one's result by event id."""
    return {move.event_id: apply(state, move) for move in moves}


# --- inputs: what an event means to valuation ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    uom: str
    method: str
    cost: Decimal | None
    purchase_price: Decimal | None


@dataclass(frozen=True, slots=True)
class _PoLine:
    site_id: str
    item: str
    base_price: Decimal | None


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
            for row in connection.execute(
                select(
                    items.c.item_code,
                    items.c.uom,
                    items.c.valuation,
                    items.c.cost,
                    items.c.purchase_price,
                ).where(items.c.item_code.in_(chunk))
            ):
                method = row.valuation if row.valuation in METHODS else MOVING_AVERAGE
                self.items[row.item_code] = _Item(row.uom, method, row.cost, row.purchase_price)
        pairs = sorted(
            {
                (event.item, event.uom)
                for event in events
                if event.item in self.items and event.uom != self.items[event.item].uom
            }
        )
        self.factors: dict[tuple[str, str], Decimal] = {}
        for chunk in _chunks(pairs):
            for unit in connection.execute(
                select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
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
                    purchase_order_lines.c.qty,
                    purchase_order_lines.c.base_qty,
                    purchase_order_lines.c.unit_price,
                )
                .join(purchase_orders, purchase_orders.c.po_id == purchase_order_lines.c.po_id)
                .where(purchase_order_lines.c.po_id.in_(chunk))
            ):
                price = line.unit_price
                base_price = (
                    None
                    if price is None or not line.base_qty
                    else money(price * line.qty / line.base_qty)
                )
                self.po_lines[(line.po_id, line.line_no)] = _PoLine(
                    line.site_id, line.item_code, base_price
                )

    def method(self, item: str) -> str:
        known = self.items.get(item)
        return MOVING_AVERAGE if known is None else known.method

    def factor(self, item: str, uom: str) -> Decimal:
        """Base units per ``uom``; 1 for the base unit, an unknown item or an unknown unit
        (``po_progress`` raises an exception for a receipt in a unit the item lacks)."""
        known = self.items.get(item)
        if known is None or uom == known.uom:
            return Decimal(1)
        return self.factors.get((item, uom), Decimal(1))

    def move(self, event: Any) -> Move:
        """The valuation inputs of a ledger event (a :class:`LedgerEvent` or a row)."""
        factor = self.factor(event.item, event.uom)
        qty = money(event.qty * factor)
        link = None
        if event.doc_type == TRANSFER and event.kind in (
            EventKind.TRANSFER_OUT.value,
            EventKind.TRANSFER_IN.value,
        ):
            link = f"{TRANSFER}:{event.doc_id}:{event.doc_line}"
        in_cost: Decimal | None = None
        source = "out"
        if qty > _ZERO:
            in_cost, source = self._in_cost(event, factor, link)
        return Move(
            event_id=str(event.event_id),
            occurred_at=utc(event.occurred_at),
            kind=str(event.kind),
            qty=qty,
            in_cost=in_cost,
            cost_source=source,
            link=link,
        )

    def _in_cost(self, event: Any, factor: Decimal, link: str | None) -> tuple[Decimal | None, str]:
        if event.unit_cost is not None:
            return money(event.unit_cost / factor), "event"
        if event.doc_type == PURCHASE_ORDER and event.kind == EventKind.RECEIPT.value:
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
        if link is not None and event.kind == EventKind.TRANSFER_IN.value:
            return None, "transfer"  # provisional until the transfer_out is valued
        known = self.items.get(event.item)
        if event.kind == EventKind.RECEIPT.value and known is not None:
            if known.cost is not None:
                return known.cost, "standard"
            if known.purchase_price is not None:
                return known.purchase_price, "purchase_price"
        return None, "running"


def _chunks(values: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- the projection: incremental, in the push's transaction --------------------------------


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """The projection ingest runs: see the module docstring."""
    value_events(connection, accepted.events, at=accepted.received_at)


def value_events(connection: Connection, events: Sequence[LedgerEvent], *, at: datetime) -> None:
    """Value newly stored ``events`` and re-value what they move (late events, transfers)."""
    master = _Master(connection, events)
    by_key: dict[Key, list[Move]] = defaultdict(list)
    for event in events:
        by_key[(event.site_id, event.item)].append(master.move(event))
    changed_links = _value_keys(
        connection, by_key, {key: master.method(key[1]) for key in by_key}, at=at
    )
    _carry_transfer_costs(connection, changed_links, master, at=at)


def _value_keys(
    connection: Connection,
    new_moves: Mapping[Key, list[Move]],
    methods: Mapping[Key, str],
    *,
    at: datetime,
    changed_inputs: Mapping[str, Decimal | None] | None = None,
    since: Mapping[Key, OrderKey] | None = None,
) -> set[str]:
    """Value ``new_moves`` per key, re-valuing a key from the earliest point that moved.

    ``changed_inputs``: a new ``in_cost`` for stored entries (a transfer's cost arrived);
    ``since``: the earliest point such an entry stands at, per key. Returns the links of
    outbound transfer entries whose cost of goods was set or changed.
    """
    keys = sorted(set(new_moves) | set(since or {}))
    states = _read_states(connection, keys)
    fast, late = _fast_or_late(keys, states, new_moves, methods, since or {})
    layers = _read_layers(
        connection,
        [key for key in fast if key in states and states[key][0].method == FIFO],
    )
    inserts: list[_NewEntry] = []
    updates: list[dict[str, Any]] = []
    finals: dict[Key, tuple[State, Move]] = {}
    changed_links: set[str] = set()
    for key in fast:
        state = states[key][0] if key in states else State(methods[key])
        if state.method == FIFO:
            state.layers = layers.get(key, [])
        moves = sorted(new_moves[key], key=lambda move: move.order)
        results = replay(state, moves)
        inserts.extend(_entry_row(key, move, results[move.event_id]) for move in moves)
        changed_links.update(m.link for m in moves if m.link is not None and m.qty < _ZERO)
        finals[key] = (state, moves[-1])
    for key, point in late.items():
        state, moves, stored = _history(connection, key, methods[key], point, changed_inputs or {})
        fresh = new_moves.get(key, [])
        fresh_ids = {move.event_id for move in fresh}
        moves = sorted([*moves, *fresh], key=lambda move: move.order)
        results = replay(state, moves)
        for move in moves:
            result = results[move.event_id]
            if move.event_id in fresh_ids:
                inserts.append(_entry_row(key, move, result))
                if move.link is not None and move.qty < _ZERO:
                    changed_links.add(move.link)
                continue
            before = stored[move.event_id]
            if before != (move.in_cost, result):
                updates.append(_update_row(move, result))
                if move.link is not None and move.qty < _ZERO and before[1].cogs != result.cogs:
                    changed_links.add(move.link)
        if moves:
            finals[key] = (state, moves[-1])
    _write(connection, inserts, updates, finals, states, at=at)
    return changed_links


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
        points = [move.order for move in new_moves.get(key, ())]
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


def _read_states(connection: Connection, keys: Sequence[Key]) -> dict[Key, tuple[State, OrderKey]]:
    """The stored state of every key, with the order key of its latest movement: the one
    query a push makes for its (site, item)s (by primary key)."""
    found: dict[Key, tuple[State, OrderKey]] = {}
    by_site: dict[str, list[str]] = defaultdict(list)
    for site_id, item in keys:
        by_site[site_id].append(item)
    for site_id, codes in by_site.items():
        for chunk in _chunks(codes):
            for row in connection.execute(
                select(valuation_state).where(
                    valuation_state.c.site_id == site_id, valuation_state.c.item.in_(chunk)
                )
            ):
                found[(row.site_id, row.item)] = (
                    State(row.method, row.qty, row.value, row.last_cost),
                    (utc(row.last_at), row.last_event_id),
                )
    return found


def _read_layers(connection: Connection, keys: Sequence[Key]) -> dict[Key, list[Layer]]:
    found: dict[Key, list[Layer]] = defaultdict(list)
    for chunk in _chunks(keys):
        rows = connection.execute(
            select(valuation_layers)
            .where(tuple_(valuation_layers.c.site_id, valuation_layers.c.item).in_(chunk))
            .order_by(
                valuation_layers.c.site_id, valuation_layers.c.item, valuation_layers.c.layer_no
            )
        )
        for row in rows:
            found[(row.site_id, row.item)].append(Layer(row.event_id, row.qty, row.value))
    return found


_Stored = dict[str, tuple[Decimal | None, Result]]


def _history(
    connection: Connection,
    key: Key,
    method: str,
    point: OrderKey | None,
    changed_inputs: Mapping[str, Decimal | None],
) -> tuple[State, list[Move], _Stored]:
    """The state just before ``point`` and the stored movements from it on.

    Moving average starts from the running state stored on the entry just before the
    point; FIFO (whose open layers at a past point are not stored) and a changed method
    start from nothing.
    """
    site_id, item = key
    entries = valuation_entries.c
    of_key = and_(entries.site_id == site_id, entries.item == item)
    state = State(method)
    if point is not None and method == MOVING_AVERAGE:
        at, event_id = point
        before = connection.execute(
            select(entries.qty_after, entries.value_after, entries.last_cost_after)
            .where(
                of_key,
                or_(
                    entries.occurred_at < at,
                    and_(entries.occurred_at == at, entries.event_id < event_id),
                ),
            )
            .order_by(entries.occurred_at.desc(), entries.event_id.desc())
            .limit(1)
        ).one_or_none()
        if before is not None:
            state = State(method, before.qty_after, before.value_after, before.last_cost_after)
        later = or_(
            entries.occurred_at > at, and_(entries.occurred_at == at, entries.event_id >= event_id)
        )
        rows = connection.execute(select(valuation_entries).where(of_key, later))
    else:
        rows = connection.execute(select(valuation_entries).where(of_key))
    moves: list[Move] = []
    stored: _Stored = {}
    for row in rows:
        in_cost = changed_inputs.get(row.event_id, row.in_cost)
        moves.append(
            Move(
                event_id=row.event_id,
                occurred_at=utc(row.occurred_at),
                kind=row.kind,
                qty=row.qty,
                in_cost=in_cost,
                cost_source=row.cost_source,
                link=row.link,
            )
        )
        stored[row.event_id] = (row.in_cost, _result_of(row))
    return state, moves, stored


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


def _entry_row(key: Key, move: Move, result: Result) -> _NewEntry:
    return (key, move, result)


def _insert_entries(connection: Connection, entries: Sequence[_NewEntry]) -> None:
    """Insert new entries as the driver's own rows: a push inserts one per event, and
    SQLAlchemy's per-row parameter handling cost several times the insert itself.

    Uses ingest's statement builders, conversions and ``COPY`` (PostgreSQL), so values
    reach the driver exactly as the column types' bind processors would give them.
    """
    dialect = connection.dialect
    moves = [move for _key, move, _result in entries]
    results = [result for _key, _move, result in entries]
    costs = [move.in_cost for move in moves if move.in_cost is not None]
    known_costs = iter(to_micro_units_many(costs))
    amounts = [
        to_micro_units_many([getattr(result, name) for result in results])
        for name in _RESULT_FIELDS
    ]
    columns: dict[str, list[Any]] = {
        "event_id": [move.event_id for move in moves],
        "site_id": [key[0] for key, _move, _result in entries],
        "item": [key[1] for key, _move, _result in entries],
        "occurred_at": _ledger_binds(dialect).times([move.occurred_at for move in moves]),
        "kind": [move.kind for move in moves],
        "qty": to_micro_units_many([move.qty for move in moves]),
        "in_cost": [None if move.in_cost is None else next(known_costs) for move in moves],
        "cost_source": [move.cost_source for move in moves],
        "link": [move.link for move in moves],
        **dict(zip(_RESULT_FIELDS, amounts, strict=True)),
    }
    names = tuple(column.name for column in valuation_entries.c)
    rows = list(zip(*(columns[name] for name in names), strict=True))
    if dialect.name == "postgresql" and len(rows) >= _COPY_FROM_ROWS:
        _copy_rows(connection, valuation_entries, rows)
    else:
        connection.exec_driver_sql(_insert_sql(dialect, valuation_entries), rows)


_RESULT_FIELDS = (
    "in_value",
    "cogs",
    "variance",
    "shortfall",
    "qty_after",
    "value_after",
    "last_cost_after",
)


def _results(result: Result) -> dict[str, Decimal]:
    return {
        "in_value": result.in_value,
        "cogs": result.cogs,
        "variance": result.variance,
        "shortfall": result.shortfall,
        "qty_after": result.qty_after,
        "value_after": result.value_after,
        "last_cost_after": result.last_cost_after,
    }


def _update_row(move: Move, result: Result) -> dict[str, Any]:
    return {"b_event_id": move.event_id, "in_cost": move.in_cost, **_results(result)}


_UPDATE_ENTRY = (
    update(valuation_entries)
    .where(valuation_entries.c.event_id == bindparam("b_event_id"))
    .values(
        {name: bindparam(name) for name in ("in_cost", *_results(Result(*([_ZERO] * 7))).keys())}
    )
)


def _write(
    connection: Connection,
    inserts: list[_NewEntry],
    updates: list[dict[str, Any]],
    finals: Mapping[Key, tuple[State, Move]],
    held: Mapping[Key, tuple[State, OrderKey]],
    *,
    at: datetime,
) -> None:
    """Every row a push changes, a statement per table (each an executemany)."""
    if inserts:
        _insert_entries(connection, inserts)
    if updates:
        connection.execute(_UPDATE_ENTRY, updates)
    if not finals:
        return
    state_rows = [
        {
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
        for key, (state, last) in finals.items()
    ]
    existing = [row for row in state_rows if (row["site_id"], row["item"]) in held]
    new = [row for row in state_rows if (row["site_id"], row["item"]) not in held]
    if new:
        connection.execute(valuation_state.insert(), new)
    if existing:
        connection.execute(
            update(valuation_state)
            .where(
                valuation_state.c.site_id == bindparam("b_site"),
                valuation_state.c.item == bindparam("b_item"),
            )
            .values(
                {
                    name: bindparam(name)
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
            ),
            [{**row, "b_site": row.pop("site_id"), "b_item": row.pop("item")} for row in existing],
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
        connection.execute(valuation_layers.insert(), layer_rows)


# --- transfers: the sending site's cost travels with the goods -----------------------------


def _carry_transfer_costs(
    connection: Connection, links: set[str], master: _Master, *, at: datetime
) -> None:
    """Give every ``transfer_in`` of a transfer line what its ``transfer_out`` cost.

    The cost per base unit of a line is the cost of goods of its outbound entries over
    their quantity; an inbound entry of the same line whose ``in_cost`` differs is
    re-valued from its point, which may change another transfer's cost in turn (a chain
    of transfers), hence the loop, bounded since a chain cannot be longer than the
    number of links.
    """
    seen = 0
    while links and seen < 1000:
        seen += len(links)
        entries = valuation_entries.c
        rows = list(
            connection.execute(
                select(
                    entries.event_id,
                    entries.site_id,
                    entries.item,
                    entries.occurred_at,
                    entries.qty,
                    entries.cogs,
                    entries.in_cost,
                    entries.link,
                ).where(entries.link.in_(sorted(links)))
            )
        )
        unit: dict[str, Decimal] = {}
        totals: dict[str, tuple[Decimal, Decimal]] = defaultdict(lambda: (_ZERO, _ZERO))
        for row in rows:
            if row.qty < _ZERO:
                qty, cost = totals[row.link]
                totals[row.link] = (qty - row.qty, cost + row.cogs)
        for link, (qty, cost) in totals.items():
            unit[link] = money(cost / qty)
        changed: dict[str, Decimal | None] = {}
        since: dict[Key, OrderKey] = {}
        methods: dict[Key, str] = {}
        for row in rows:
            if row.qty > _ZERO and row.link in unit and row.in_cost != unit[row.link]:
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
            return
        _lock_sites(connection, {site_id for site_id, _item in since})
        connection.execute(
            update(valuation_entries)
            .where(valuation_entries.c.event_id == bindparam("b_event_id"))
            .values(in_cost=bindparam("in_cost")),
            [{"b_event_id": event_id, "in_cost": cost} for event_id, cost in changed.items()],
        )
        links = _value_keys(connection, {}, methods, at=at, changed_inputs=changed, since=since)


def _lock_sites(connection: Connection, site_ids: set[str]) -> None:
    """Lock the receiving sites' sync rows before re-valuing their stock: the row a push
    of that site locks, so a concurrent push there cannot write the same state from a
    stale read (PostgreSQL; SQLite's write lock is whole already). Two sites cascading
    into each other at once deadlock, which PostgreSQL breaks by failing one push; its
    edge sends it again."""
    if site_ids:
        connection.execute(
            select(site_sync_state.c.site_id)
            .where(site_sync_state.c.site_id.in_(sorted(site_ids)))
            .order_by(site_sync_state.c.site_id)
            .with_for_update()
        ).all()


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
                    valuation_entries.c.qty,
                    valuation_entries.c.in_cost,
                    valuation_entries.c.cost_source,
                )
            )
        }
    by_key: dict[Key, list[Move]] = defaultdict(list)
    moves: dict[str, Move] = {}
    for row in rows:
        move = master.move(row)
        held = recorded.get(move.event_id)
        if held is not None:
            move.in_cost, move.cost_source = held.in_cost, held.cost_source
        moves[move.event_id] = move
        by_key[(row.site_id, row.item)].append(move)
    for key_moves in by_key.values():
        key_moves.sort(key=lambda move: move.order)
    valuation = Valuation(states={}, results={}, moves=moves, by_key=dict(by_key))
    pending = set(by_key)
    for _round in range(1000):  # a chain of transfers settles in as many rounds as it is long
        for key in sorted(pending):
            state = State(master.method(key[1]))
            valuation.results.update(replay(state, by_key[key]))
            valuation.states[key] = state
        pending = _transfer_rounds(valuation, by_key)
        if not pending:
            break
    return valuation


def _transfer_rounds(valuation: Valuation, by_key: Mapping[Key, list[Move]]) -> set[Key]:
    """Set every transfer_in's cost from its line's transfer_out results; the keys whose
    inputs changed and must be valued again."""
    totals: dict[str, tuple[Decimal, Decimal]] = defaultdict(lambda: (_ZERO, _ZERO))
    for move in valuation.moves.values():
        if move.link is not None and move.qty < _ZERO:
            qty, cost = totals[move.link]
            totals[move.link] = (qty - move.qty, cost + valuation.results[move.event_id].cogs)
    again: set[Key] = set()
    for key, moves in by_key.items():
        for move in moves:
            if move.link is None or move.qty <= _ZERO or move.link not in totals:
                continue
            qty, cost = totals[move.link]
            unit = money(cost / qty)
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


def check(connection: Connection) -> list[Difference]:
    """Every difference between stored balances and values and the ledger, recomputed.

    Balances: ``stock_balances`` per (site, location, item, lot) against the sum of the
    ledger's quantities. Values: ``valuation_state`` per (site, item) and every entry's
    results against :func:`value_from_scratch` (with the recorded inputs), and every event
    against its entry (one each, the same base quantity).
    """
    differences: list[Difference] = []
    union = ledger_union("site_id", "location", "item", "lot", "qty").subquery()
    lot = func.coalesce(union.c.lot, NO_LOT)
    summed = {
        (row.site_id, row.location, row.item, row.lot): row.qty
        for row in connection.execute(
            select(
                union.c.site_id,
                union.c.location,
                union.c.item,
                lot.label("lot"),
                func.sum(union.c.qty).label("qty"),
            ).group_by(union.c.site_id, union.c.location, union.c.item, lot)
        )
    }
    held = {
        (row.site_id, row.location, row.item, row.lot): row.qty
        for row in connection.execute(
            select(
                stock_balances.c.site_id,
                stock_balances.c.location,
                stock_balances.c.item,
                stock_balances.c.lot,
                stock_balances.c.qty,
            )
        )
    }
    for place in sorted(set(summed) | set(held)):
        stored, wanted = held.get(place, _ZERO), summed.get(place, _ZERO)
        if stored != wanted:
            differences.append(Difference("balance", "/".join(place), str(stored), str(wanted)))
    fresh = value_from_scratch(connection, stored_inputs=True)
    stored_entries = {row.event_id: row for row in connection.execute(select(valuation_entries))}
    for event_id in sorted(set(fresh.moves) | set(stored_entries)):
        move, row = fresh.moves.get(event_id), stored_entries.get(event_id)
        if move is None or row is None:
            differences.append(
                Difference(
                    "entry",
                    event_id,
                    "none" if row is None else "an entry",
                    "none" if move is None else "an event",
                )
            )
            continue
        if row.qty != move.qty:
            differences.append(Difference("entry qty", event_id, str(row.qty), str(move.qty)))
        mine, theirs = _result_of(row), fresh.results[event_id]
        if mine != theirs:
            differences.append(Difference("entry", event_id, _show(mine), _show(theirs)))
    states = {(row.site_id, row.item): row for row in connection.execute(select(valuation_state))}
    for key in sorted(set(states) | set(fresh.states)):
        row, state = states.get(key), fresh.states.get(key)
        held_state = None if row is None else (row.qty, row.value)
        fresh_state = None if state is None else (state.qty, state.value)
        if held_state != fresh_state:
            differences.append(
                Difference(
                    "value", "/".join(key), _show_state(held_state), _show_state(fresh_state)
                )
            )
    return differences


def _show_state(state: tuple[Decimal, Decimal] | None) -> str:
    return "none" if state is None else f"qty {plain(state[0])} value {plain(state[1])}"


def _show(result: Result) -> str:
    return (
        f"in {plain(result.in_value)} cogs {plain(result.cogs)} "
        f"variance {plain(result.variance)} qty_after {plain(result.qty_after)} "
        f"value_after {plain(result.value_after)}"
    )


def rebuild(connection: Connection, *, at: datetime) -> int:
    """Replace every stored valuation with one from scratch (recorded inputs where an
    event has an entry, fresh ones for the rest); the number of events valued. In the
    caller's write transaction: for a database that held events before valuation existed
    (``jxc central check --repair``), or after a repair of the data by hand."""
    fresh = value_from_scratch(connection, stored_inputs=True)
    connection.execute(delete(valuation_layers))
    connection.execute(delete(valuation_entries))
    connection.execute(delete(valuation_state))
    inserts = [
        _entry_row(key, move, fresh.results[move.event_id])
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
    rows = connection.execute(
        select(valuation_entries)
        .where(entries.site_id == site_id, entries.item == item)
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
