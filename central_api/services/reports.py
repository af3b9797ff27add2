"""The report centre (报表中心): stock on hand, the movement ledger, gross margin, slow and
dead stock, expiry and sync lag, read from the ledger and its projections.

Every report is a :class:`Report`: its columns (each with a kind, so an export can give a
number a number format, and a flag for the financial field group) and its rows as plain
dicts of exact values. The caller says whether the reader sees money (``financial``);
without it the financial columns are left out here, before any row leaves the service, so
no route, page or export can show one by forgetting to drop it.

Nothing here writes, and nothing reads ``services/valuation.py``'s code: values come from
its tables (``valuation_state`` for now, ``valuation_entries`` for a past date and for
cost of goods), so the report and ``GET /valuation`` agree by construction. See
``docs/reports.md`` for what each figure means and why it is computed the way it is.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal

from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Select,
    and_,
    cast,
    func,
    or_,
    select,
    type_coerce,
    union_all,
)

from central_api.core.db import write_transaction
from central_api.errors import InvalidError
from central_api.models.base import MicroUnits
from central_api.models.items import items
from central_api.models.ledger import central_events, ledger_events, refused_events, site_sync_state
from central_api.models.master import categories, item_units, partners, sites
from central_api.models.purchasing import (
    purchase_order_lines,
    supplier_invoice_lines,
    supplier_invoices,
)
from central_api.models.sales import retail_sales, sales_invoice_lines, sales_invoices
from central_api.models.stock import NO_LOT, stock_balances, stock_snapshots
from central_api.models.valuation import valuation_entries, valuation_state
from central_api.services import counts, receivables
from central_api.services.audit import AuditContext, record
from jxc.contract import OUTBOUND_KINDS

Kind = Literal["text", "qty", "money", "date", "datetime", "int", "percent"]

CENT: Final = Decimal("0.01")
RATE: Final = Decimal("0.0001")
ZERO: Final = Decimal(0)

MAX_PAGE: Final = 1000
"""Rows per page of the movement ledger; an export walks every page."""
EXPIRY_BUCKETS: Final = ("expired", "0-30", "31-60", "61-90")
"""Expiry buckets by days left on the report's day (a lot expiring today has 0 left)."""
OUTBOUND: Final = tuple(sorted(kind.value for kind in OUTBOUND_KINDS))
"""What counts as stock going out for slow-moving stock: issues, sales, transfers out,
scrap. A negative count adjustment is a correction, not demand, so it does not count."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a report: its key in each row, its heading (a msgid the console
    translates), what kind of value it holds, and whether it is money."""

    key: str
    label: str
    kind: Kind = "text"
    financial: bool = False


@dataclass(slots=True)
class Report:
    """A report's answer: the columns the reader may see, the rows, the totals of its
    summed columns (money only for a financial reader), and the next page's cursor."""

    name: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    next_after: str | None = None
    chart: list[tuple[str, Decimal]] = field(default_factory=list)
    """Label and figure pairs for the page's chart (top-N margin, expiry buckets); only
    financial figures, so empty for a reader without the group where they are money."""


def visible_columns(columns: Sequence[Column], financial: bool) -> list[Column]:
    """The columns a reader sees: without the financial ones unless it has the group."""
    return [column for column in columns if financial or not column.financial]


def _strip(rows: list[dict[str, Any]], columns: Sequence[Column]) -> list[dict[str, Any]]:
    keys = [column.key for column in columns]
    return [{key: row.get(key) for key in keys} for row in rows]


def cents(value: Decimal) -> Decimal:
    """Money as a report shows it: rounded to the cent, half to even, exact spelling."""
    return _plain(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def _plain(value: Decimal) -> Decimal:
    """``3.50`` → ``3.5``, ``2E+1`` → ``20``: the shortest exact spelling."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _aware(moment: datetime) -> datetime:
    """SQLite gives times back without an offset; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _in_scope(column: Any, site_id: str | None, visible: Collection[str] | None) -> list[Any]:
    where: list[Any] = []
    if site_id is not None:
        where.append(column == site_id)
    if visible is not None:
        where.append(column.in_(sorted(visible)))
    return where


EARLIEST: Final = date(1900, 1, 1)
LATEST: Final = date(9999, 12, 30)
"""The days a report takes: one more at either end, and "the end of the day" or "just
before it" would fall outside the calendar Python and the databases can hold."""


def checked_day(day: date | None, name: str) -> date | None:
    """``day`` if a report can use it; else the refusal a person understands (422)."""
    if day is not None and not EARLIEST <= day <= LATEST:
        raise InvalidError(f"{name}: a day from {EARLIEST} to {LATEST}")
    return day


def checked_moment(moment: datetime | None, name: str) -> datetime | None:
    """``moment`` (UTC if it has no offset) if its day is one a report can use."""
    if moment is None:
        return None
    aware = _aware(moment)
    try:
        in_utc = aware.astimezone(UTC)
    except OverflowError:
        raise InvalidError(f"{name}: a time from {EARLIEST} to {LATEST}") from None
    checked_day(in_utc.date(), name)
    return in_utc


def end_of(day: date | None, name: str) -> datetime | None:
    """The moment a report "on a day" is taken: the end of that day (the next one's
    start, UTC)."""
    checked = checked_day(day, name)
    if checked is None:
        return None
    return datetime(checked.year, checked.month, checked.day, tzinfo=UTC) + timedelta(days=1)


def start_of(day: date | None, name: str) -> datetime | None:
    checked = checked_day(day, name)
    if checked is None:
        return None
    return datetime(checked.year, checked.month, checked.day, tzinfo=UTC)


def record_read(
    connection: Connection,
    audit: AuditContext,
    *,
    name: str,
    site_id: str | None,
    filters: dict[str, Any],
    fmt: str,
    rows: int | None,
) -> None:
    """A read's audit entry (``report.read``), after the read, whose implicit transaction
    ends here: who looked at or took away which figures, in which format, how many rows."""
    if connection.in_transaction():
        connection.rollback()
    with write_transaction(connection):
        record(
            connection,
            audit,
            action="report.read",
            resource="report",
            resource_id=name,
            site_id=site_id,
            after={
                "format": fmt,
                "rows": rows,
                "filters": {k: _text(v) for k, v in filters.items() if v is not None},
            },
        )


def _text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _aware(value).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- shared lookups ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ItemFacts:
    name: str
    name_en: str
    base_uom: str
    category: str | None
    factors: dict[str, Decimal]


def _item_facts(connection: Connection, codes: Collection[str]) -> dict[str, _ItemFacts]:
    """Name, base unit, category and unit factors of each item named (two queries)."""
    if not codes:
        return {}
    wanted = sorted(set(codes))
    factors: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in connection.execute(
        select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
            item_units.c.item_code.in_(wanted)
        )
    ):
        factors[row.item_code][row.uom] = row.factor
    return {
        row.item_code: _ItemFacts(
            name=row.name,
            name_en=row.name_en,
            base_uom=row.uom,
            category=row.category_code,
            factors=factors.get(row.item_code, {}),
        )
        for row in connection.execute(
            select(
                items.c.item_code,
                items.c.name,
                items.c.name_en,
                items.c.uom,
                items.c.category_code,
            ).where(items.c.item_code.in_(wanted))
        )
    }


def _base_qty(facts: _ItemFacts | None, qty: Decimal, uom: str) -> Decimal:
    """``qty`` of ``uom`` in the item's base unit; an unknown unit counts as the base unit,
    as valuation counts it (docs/valuation.md, "Methods")."""
    if facts is None or uom == facts.base_uom:
        return qty
    return qty * facts.factors.get(uom, Decimal(1))


@dataclass(frozen=True, slots=True)
class _Worth:
    qty: Decimal
    value: Decimal
    last_cost: Decimal

    def of(self, base_qty: Decimal) -> Decimal:
        """The value of ``base_qty`` of this (site, item): its share of the stored value
        (the whole value when it is the whole stock), or the last cost when none is held."""
        if self.qty != 0:
            return self.value * base_qty / self.qty
        return self.last_cost * base_qty


def _worth_now(
    connection: Connection, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], _Worth]:
    if not keys:
        return {}
    site_ids = sorted({site for site, _item in keys})
    codes = sorted({item for _site, item in keys})
    found: dict[tuple[str, str], _Worth] = {}
    for row in connection.execute(
        select(
            valuation_state.c.site_id,
            valuation_state.c.item,
            valuation_state.c.qty,
            valuation_state.c.value,
            valuation_state.c.last_cost,
        ).where(valuation_state.c.site_id.in_(site_ids), valuation_state.c.item.in_(codes))
    ):
        found[(row.site_id, row.item)] = _Worth(row.qty, row.value, row.last_cost)
    return found


def _worth_at(
    connection: Connection, keys: Collection[tuple[str, str]], as_of: datetime
) -> dict[tuple[str, str], _Worth]:
    """The running state after the last movement of each (site, item) at or before
    ``as_of``, in valuation order (``occurred_at``, ``event_id``): what it was worth then."""
    if not keys:
        return {}
    if len(keys) <= _FEW_KEYS:
        return _worth_at_each(connection, keys, as_of)
    site_ids = sorted({site for site, _item in keys})
    codes = sorted({item for _site, item in keys})
    ranked = (
        select(
            valuation_entries.c.site_id,
            valuation_entries.c.item,
            valuation_entries.c.qty_after,
            valuation_entries.c.value_after,
            valuation_entries.c.last_cost_after,
            func.row_number()
            .over(
                partition_by=(valuation_entries.c.site_id, valuation_entries.c.item),
                order_by=(
                    valuation_entries.c.occurred_at.desc(),
                    valuation_entries.c.event_id.desc(),
                ),
            )
            .label("rank"),
        )
        .where(
            valuation_entries.c.site_id.in_(site_ids),
            valuation_entries.c.item.in_(codes),
            valuation_entries.c.occurred_at <= as_of,
        )
        .subquery()
    )
    return {
        (row.site_id, row.item): _Worth(row.qty_after, row.value_after, row.last_cost_after)
        for row in connection.execute(select(ranked).where(ranked.c.rank == 1))
    }


_FEW_KEYS: Final = 20
"""Up to this many (site, item)s, :func:`_worth_at` reads each one's entry by the index,
newest first, one row each; the window over every entry before ``as_of`` numbers all of a
key's movements first (a quarter of a second for one with 50,000 of them on SQLite)."""


def newest_entry_at_or_before(site_id: str, item: str, as_of: datetime) -> tuple[Any, ...]:
    """Conditions for a (site, item)'s valuation entries at its newest moment at or before
    ``as_of`` (several when movements share it; the caller orders them by ``event_id``).

    Said as ``occurred_at = (SELECT occurred_at ... ORDER BY occurred_at DESC LIMIT 1)``
    rather than ``ORDER BY occurred_at DESC, event_id DESC LIMIT 1``: the index is on
    (``site_id``, ``item``, ``occurred_at``), without ``event_id``, and PostgreSQL's
    generic plan (what a statement psycopg has prepared may get after five executions)
    estimates a key's rows as an average key's, a dozen, so it sorts all of them for the
    second order column: every entry before the moment, 50,000 for a busy item (266 ms for
    an as-of read on the 5,000,000-row bench). An order the index gives alone is one step
    backwards in any plan; ``max()`` is not (the generic plan aggregates every entry).
    docs/performance.md, "Generic plans".
    """
    entries = valuation_entries.c
    key = (entries.site_id == site_id, entries.item == item)
    newest = (
        select(entries.occurred_at)
        .where(*key, entries.occurred_at <= as_of)
        .order_by(entries.occurred_at.desc())
        .limit(1)
    )
    return (*key, entries.occurred_at == newest.scalar_subquery())


def _worth_at_each(
    connection: Connection, keys: Collection[tuple[str, str]], as_of: datetime
) -> dict[tuple[str, str], _Worth]:
    entries = valuation_entries.c
    found: dict[tuple[str, str], _Worth] = {}
    for site_id, item in sorted(keys):
        row = connection.execute(
            select(entries.qty_after, entries.value_after, entries.last_cost_after)
            .where(*newest_entry_at_or_before(site_id, item, as_of))
            .order_by(entries.event_id.desc())
            .limit(1)
        ).first()
        if row is not None:
            found[(site_id, item)] = _Worth(row.qty_after, row.value_after, row.last_cost_after)
    return found


def values_before(
    connection: Connection, wanted: Sequence[tuple[str, str, str, Decimal, datetime]]
) -> list[Decimal]:
    """The value at cost of each ``(site, item, uom, qty, moment)``: ``qty`` of ``uom``
    (in the item's base unit) as its share of the (site, item)'s valuation just before
    ``moment``, as stock on hand as of a moment is valued; zero for an item never valued
    there. One valuation query per distinct moment (a count's snapshot), two for the
    items: what the value-weighted count accuracy reads."""
    facts = _item_facts(connection, {item for _site, item, _uom, _qty, _at in wanted})
    moments: dict[datetime, set[tuple[str, str]]] = defaultdict(set)
    for site_id, item, _uom, _qty, moment in wanted:
        moments[_aware(moment)].add((site_id, item))
    worth = {
        moment: _worth_at(connection, keys, moment - _JUST_BEFORE)
        for moment, keys in moments.items()
    }
    values: list[Decimal] = []
    for site_id, item, uom, qty, moment in wanted:
        found = worth[_aware(moment)].get((site_id, item))
        values.append(ZERO if found is None else found.of(_base_qty(facts.get(item), qty, uom)))
    return values


@dataclass(frozen=True, slots=True)
class StockFilter:
    """Which balances a stock report reads; every filter left out matches everything.
    ``lot`` is :data:`NO_LOT` (``""``) for stock kept without a lot; ``visible`` is the
    reader's sites (None: every site)."""

    site_id: str | None = None
    item: str | None = None
    location: str | None = None
    lot: str | None = None
    visible: Collection[str] | None = None


# --- 1. stock on hand ----------------------------------------------------------------------

STOCK_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("location", "Location"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("lot", "Lot"),
    Column("qty", "Quantity", "qty"),
    Column("uom", "Unit"),
    Column("unit_cost", "Unit cost", "money", financial=True),
    Column("value", "Value", "money", financial=True),
)


def stock_on_hand(
    connection: Connection,
    chosen: StockFilter,
    *,
    as_of: datetime | None = None,
    financial: bool = False,
) -> Report:
    """What is on hand per (site, location, item, lot): now, from the balances ingest
    keeps; at a past moment, summed from both ledgers by ``occurred_at`` (an event that
    happened before ``as_of`` counts, however late it arrived). Keys summing to zero are
    left out. Value (financial): the key's share of its (site, item)'s valuation then."""
    if as_of is None:
        rows = _balances_now(connection, chosen)
    else:
        rows = _balances_at(connection, chosen, _aware(as_of))
    facts = _item_facts(connection, {row["item"] for row in rows})
    total = ZERO
    if financial:
        keys = {(row["site_id"], row["item"]) for row in rows}
        worth = (
            _worth_now(connection, keys)
            if as_of is None
            else _worth_at(connection, keys, _aware(as_of))
        )
    for row in rows:
        known = facts.get(row["item"])
        row["item_name"] = known.name if known else ""
        if financial:
            found = worth.get((row["site_id"], row["item"]))
            value = ZERO if found is None else found.of(_base_qty(known, row["qty"], row["uom"]))
            row["value"] = cents(value)
            row["unit_cost"] = (
                _plain((value / row["qty"]).quantize(Decimal("0.000001"))) if row["qty"] else None
            )
            total += row["value"]
    columns = visible_columns(STOCK_COLUMNS, financial)
    return Report(
        name="stock-on-hand",
        columns=columns,
        rows=_strip(rows, columns),
        totals={"value": _plain(total)} if financial else {},
    )


def _balances_now(
    connection: Connection, chosen: StockFilter, *, lots_held: bool = False
) -> list[dict[str, Any]]:
    """Balances now; ``lots_held``: only positive ones of a lot (what can expire)."""
    table = stock_balances
    site_id, item, location, lot = chosen.site_id, chosen.item, chosen.location, chosen.lot
    visible = chosen.visible
    query = (
        select(
            table.c.site_id, table.c.location, table.c.item, table.c.lot, table.c.uom, table.c.qty
        )
        .where(*_in_scope(table.c.site_id, site_id, visible), table.c.qty != ZERO)
        .order_by(table.c.site_id, table.c.location, table.c.item, table.c.lot)
    )
    if item is not None:
        query = query.where(table.c.item == item)
    if location is not None:
        query = query.where(table.c.location == location)
    if lot is not None:
        query = query.where(table.c.lot == lot)
    if lots_held:
        query = query.where(table.c.lot != NO_LOT, table.c.qty > ZERO)
    return [_key_row(row) for row in connection.execute(query)]


def _key_row(row: Any) -> dict[str, Any]:
    return {
        "site_id": row.site_id,
        "location": row.location,
        "item": row.item,
        "lot": None if row.lot == NO_LOT else row.lot,
        "qty": row.qty,
        "uom": row.uom,
    }


def _balances_at(
    connection: Connection, chosen: StockFilter, as_of: datetime
) -> list[dict[str, Any]]:
    """Stock per (site, location, item, lot) at ``as_of``, from whichever reads least.

    * No item named (a whole site, every site): the ledgers' sums up to ``as_of``.
    * An item named: its events up to ``as_of`` found through ``valuation_entries``'
      (site_id, item, occurred_at) index and read from the ledger by primary key (every
      event has an entry: valuation runs in every push and every central booking, and
      ``valuation.check`` names a missing one), so the ledger needs no index of its own
      for this (migration 0037 dropped 0036's, which cost every ingested event a sixth
      more CPU).
    * An item at one site kept in one place only, in its base unit (most are): the
      quantity after its newest valuation entry then (:func:`_one_place_at`).
    * An item at one site with fewer movements after ``as_of`` than before it (counted in
      that index): the balances now less the movements after ``as_of``, in one statement,
      so a push committing in between cannot show half of itself. Exact either way (sums
      of integers); only the work differs. ``docs/reports.md``, "Stock as of a moment".
    """
    if chosen.item is None:
        return summed(connection, _ledger_parts(chosen, as_of))
    if chosen.site_id is not None and chosen.location is None and chosen.lot is None:
        one = _one_place_at(connection, chosen.site_id, chosen.item, as_of, chosen.visible)
        if one is not None:
            return one
    if chosen.site_id is not None:
        snapped = _from_snapshots(connection, chosen, as_of)
        if snapped is not None:
            return snapped
    if chosen.site_id is not None and _fewer_after(connection, chosen.site_id, chosen.item, as_of):
        return summed(connection, _back_from_now_parts(chosen, as_of))
    return summed(connection, _entry_parts(chosen, as_of, after=False))


def _one_place_at(
    connection: Connection,
    site_id: str,
    item: str,
    as_of: datetime,
    visible: Collection[str] | None,
) -> list[dict[str, Any]] | None:
    """The stock of a (site, item) kept in one place only: None if it is not.

    An item that has only ever been in one (location, lot) at a site (one balance row:
    balances are never deleted), counted in its base unit, held at ``as_of`` exactly the
    quantity after its newest valuation entry at or before ``as_of`` (``qty_after``: the
    running sum of both ledgers' quantities in (occurred_at, event_id) order): one indexed
    row, however many movements the item has. Read in one statement with the balance
    rows, so a push adding a second place in between is seen by both or neither.
    """
    if visible is not None and site_id not in visible:
        return []
    held, entries = stock_balances.c, valuation_entries.c
    key = (held.site_id == site_id, held.item == item)
    then = (
        select(entries.qty_after)
        .where(*newest_entry_at_or_before(site_id, item, as_of))
        .order_by(entries.event_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    base = select(items.c.uom).where(items.c.item_code == item).scalar_subquery()
    found = connection.execute(
        select(
            select(func.count()).where(*key).scalar_subquery(),
            select(func.max(held.location)).where(*key).scalar_subquery(),
            select(func.max(held.lot)).where(*key).scalar_subquery(),
            select(func.max(held.uom)).where(*key).scalar_subquery(),
            base,
            type_coerce(then, MicroUnits()),
        )
    ).one()
    places, location, lot, uom, base_uom, qty = found
    if places != 1 or uom != base_uom:
        return None
    if qty is None or qty == 0:
        return []
    return [
        {
            "site_id": site_id,
            "location": location,
            "item": item,
            "lot": None if lot == NO_LOT else lot,
            "qty": qty,
            "uom": uom,
        }
    ]


_PROBE: Final = 256
"""Movements counted on each side of the moment before counting a side in full: an
ordinary (site, item) has a few dozen, so one cheap statement decides for it."""


def _fewer_after(connection: Connection, site_id: str, item: str, as_of: datetime) -> bool:
    """Whether fewer of the (site, item)'s movements follow ``as_of`` than precede it,
    counted in the valuation entries' index (no ledger row read): first at most
    :data:`_PROBE` each side, then, if both sides have that many, in full."""
    entries = valuation_entries.c
    key = (entries.site_id == site_id, entries.item == item)
    before = (*key, entries.occurred_at <= as_of)
    after = (*key, entries.occurred_at > as_of)

    def counted(where: tuple[Any, ...], cap: int | None) -> Any:
        inner = select(entries.event_id).where(*where)
        if cap is not None:
            inner = inner.limit(cap)
        return select(func.count()).select_from(inner.subquery()).scalar_subquery()

    row = connection.execute(select(counted(before, _PROBE), counted(after, _PROBE))).one()
    if row[0] >= _PROBE and row[1] >= _PROBE:
        row = connection.execute(select(counted(before, None), counted(after, None))).one()
    return bool(row[1] < row[0])


def _placed(part: Select[Any], table: Any, chosen: StockFilter) -> Select[Any]:
    """``part`` limited to the filter's location and lot (``NO_LOT``: no lot)."""
    if chosen.location is not None:
        part = part.where(table.c.location == chosen.location)
    if chosen.lot is not None:
        part = (
            part.where(table.c.lot.is_(None))
            if chosen.lot == NO_LOT
            else part.where(table.c.lot == chosen.lot)
        )
    return part


def _event_columns(table: Any, *, negated: bool = False) -> tuple[Any, ...]:
    qty = -table.c.qty if negated else table.c.qty
    return (
        table.c.site_id,
        table.c.location,
        table.c.item,
        func.coalesce(table.c.lot, NO_LOT).label("lot"),
        table.c.uom,
        type_coerce(qty, MicroUnits()).label("qty"),
    )


def _ledger_parts(chosen: StockFilter, as_of: datetime) -> list[Select[Any]]:
    """Both ledgers' events up to ``as_of``, read by site (no item named)."""
    parts = []
    for table in (ledger_events, central_events):
        part = select(*_event_columns(table)).where(
            table.c.occurred_at <= as_of,
            *_in_scope(table.c.site_id, chosen.site_id, chosen.visible),
        )
        parts.append(_placed(part, table, chosen))
    return parts


def _window(column: Any, since: Any, through: Any, after: Any, before: Any) -> list[Any]:
    """``column`` bounded: ``since``/``through`` inclusive, ``after``/``before`` strict."""
    bounds = []
    if since is not None:
        bounds.append(column >= since)
    if through is not None:
        bounds.append(column <= through)
    if after is not None:
        bounds.append(column > after)
    if before is not None:
        bounds.append(column < before)
    return bounds


def moved_parts(
    chosen: StockFilter,
    *,
    since: datetime | None = None,
    through: datetime | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    negated: bool = False,
) -> list[Select[Any]]:
    """The named item's events with ``occurred_at`` in the bounds given (``since`` and
    ``through`` inclusive, ``after`` and ``before`` strict), negated if asked: an edge's
    through the valuation entries' (site_id, item, occurred_at) index and the ledger's
    primary key, central's own (few) through its (item, lot) index."""
    entries = valuation_entries.c
    edge = (
        select(*_event_columns(ledger_events, negated=negated))
        .select_from(
            valuation_entries.join(ledger_events, ledger_events.c.event_id == entries.event_id)
        )
        .where(
            entries.item == chosen.item,
            *_window(entries.occurred_at, since, through, after, before),
            *_in_scope(entries.site_id, chosen.site_id, chosen.visible),
        )
    )
    times = central_events.c.occurred_at
    central = select(*_event_columns(central_events, negated=negated)).where(
        central_events.c.item == chosen.item,
        *_window(times, since, through, after, before),
        *_in_scope(central_events.c.site_id, chosen.site_id, chosen.visible),
    )
    return [_placed(edge, ledger_events, chosen), _placed(central, central_events, chosen)]


def _entry_parts(chosen: StockFilter, as_of: datetime, *, after: bool) -> list[Select[Any]]:
    """The named item's events up to ``as_of`` (``after``: following it, negated)."""
    if after:
        return moved_parts(chosen, after=as_of, negated=True)
    return moved_parts(chosen, through=as_of)


def snapshot_part(chosen: StockFilter, moment: datetime) -> Select[Any]:
    """The named (site, item)'s snapshot rows at ``moment`` (``services.snapshots``),
    limited to the filter's location and lot, in the shape of :func:`_event_columns`."""
    held = stock_snapshots.c
    part = select(held.site_id, held.location, held.item, held.lot, held.uom, held.qty).where(
        held.site_id == chosen.site_id, held.item == chosen.item, held.moment == moment
    )
    if chosen.location is not None:
        part = part.where(held.location == chosen.location)
    if chosen.lot is not None:
        part = part.where(held.lot == chosen.lot)
    return part


def _from_snapshots(
    connection: Connection, chosen: StockFilter, as_of: datetime
) -> list[dict[str, Any]] | None:
    """Stock of a named (site, item) at ``as_of`` from its nearest snapshot: the one at or
    before it plus the movements since, or the one after it less the movements between
    (or, with none after, the balances now less the movements since ``as_of``), whichever
    is nearer in time; None if the (site, item) has no snapshot (read as before).

    The moments are chosen by one statement and the sum is another; a push committing in
    between changes nothing: snapshots are never deleted, and a late event it booked is
    both in the snapshots after it (corrected in its transaction) and out of the
    movements read from them, or neither, within the one summing statement."""
    site_id = chosen.site_id
    if chosen.visible is not None and site_id not in chosen.visible:
        return []
    held = stock_snapshots.c
    key = (held.site_id == site_id, held.item == chosen.item)
    moment_type = DateTime(timezone=True)
    before_q = select(func.max(held.moment)).where(*key, held.moment <= as_of)
    after_q = select(func.min(held.moment)).where(*key, held.moment > as_of)
    found = connection.execute(
        select(
            type_coerce(before_q.scalar_subquery(), moment_type),
            type_coerce(after_q.scalar_subquery(), moment_type),
        )
    ).one()
    if found[0] is None and found[1] is None:
        return None
    earlier = None if found[0] is None else _aware(found[0])
    later = None if found[1] is None else _aware(found[1])
    distance_after = (later if later is not None else datetime.now(UTC)) - as_of
    if earlier is not None and as_of - earlier <= distance_after:
        return from_snapshot_at(connection, chosen, as_of, earlier)
    if later is not None:
        return from_snapshot_at(connection, chosen, as_of, later)
    return summed(connection, _back_from_now_parts(chosen, as_of))


def from_snapshot_at(
    connection: Connection, chosen: StockFilter, as_of: datetime, moment: datetime
) -> list[dict[str, Any]]:
    """Stock of the named (site, item) at ``as_of`` from its snapshot at ``moment`` (which
    holds the events before ``moment``): plus the movements in [``moment``, ``as_of``] if
    ``moment`` is not after ``as_of``, else less those in (``as_of``, ``moment``). One
    statement. Any snapshot of the key gives the same figures; the nearest reads least."""
    if moment <= as_of:
        parts = [snapshot_part(chosen, moment), *moved_parts(chosen, since=moment, through=as_of)]
    else:
        parts = [
            snapshot_part(chosen, moment),
            *moved_parts(chosen, after=as_of, before=moment, negated=True),
        ]
    return summed(connection, parts)


def _back_from_now_parts(chosen: StockFilter, as_of: datetime) -> list[Select[Any]]:
    """The balances now and, negated, the movements after ``as_of``."""
    held = stock_balances.c
    now = select(held.site_id, held.location, held.item, held.lot, held.uom, held.qty).where(
        held.item == chosen.item,
        *_in_scope(held.site_id, chosen.site_id, chosen.visible),
    )
    if chosen.location is not None:
        now = now.where(held.location == chosen.location)
    if chosen.lot is not None:
        now = now.where(held.lot == chosen.lot)
    return [now, *_entry_parts(chosen, as_of, after=True)]


def summed(connection: Connection, parts: Sequence[Select[Any]]) -> list[dict[str, Any]]:
    """The parts' quantities summed per (site, location, item, lot), zero sums left out."""
    moved = union_all(*parts).subquery()
    summed = type_coerce(func.sum(moved.c.qty), MicroUnits())
    query = (
        select(
            moved.c.site_id,
            moved.c.location,
            moved.c.item,
            moved.c.lot,
            func.max(moved.c.uom).label("uom"),
            summed.label("qty"),
        )
        .group_by(moved.c.site_id, moved.c.location, moved.c.item, moved.c.lot)
        .having(func.sum(moved.c.qty) != 0)
        .order_by(moved.c.site_id, moved.c.location, moved.c.item, moved.c.lot)
    )
    return [_key_row(row) for row in connection.execute(query)]


# --- 2. the movement ledger ----------------------------------------------------------------

MOVEMENT_COLUMNS: Final = (
    Column("occurred_at", "Occurred at", "datetime"),
    Column("site_id", "Site"),
    Column("kind", "Movement"),
    Column("item", "Item code"),
    Column("location", "Location"),
    Column("lot", "Lot"),
    Column("qty", "Quantity", "qty"),
    Column("uom", "Unit"),
    Column("document", "Document"),
    Column("ref", "Reference"),
    Column("actor", "By"),
    Column("stream", "Booked by"),
    Column("event_id", "Event"),
    Column("in_value", "Value in", "money", financial=True),
    Column("cogs", "Cost of goods", "money", financial=True),
)


@dataclass(frozen=True, slots=True)
class MovementFilter:
    """The movement ledger's filters; every one left out matches everything. ``since``
    and ``until`` bound ``occurred_at`` (from ``since`` on, before ``until``)."""

    site_id: str | None = None
    item: str | None = None
    kind: str | None = None
    location: str | None = None
    doc_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(occurred_at: datetime, event_id: str) -> str:
    """The next page's cursor: the last row's valuation-order key, opaque to the client."""
    text = f"{_aware(occurred_at).astimezone(UTC).isoformat()}|{event_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, event_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return _aware(datetime.fromisoformat(moment)), event_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidError(
            "after: not a cursor this report gave (use next_after of the previous page)"
        ) from None


def movements(
    connection: Connection,
    chosen: MovementFilter,
    *,
    after: str | None = None,
    limit: int = 100,
    visible: Collection[str] | None = None,
    financial: bool = False,
) -> Report:
    """One page of movements from both ledgers, oldest first by (``occurred_at``,
    ``event_id``) (the order valuation follows), with the cost of goods of each for a
    financial reader. ``next_after`` is the cursor of the next page, None at the end."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidError(f"limit: 1 to {MAX_PAGE} rows a page")
    start = None if after is None else decode_cursor(after)
    found: list[dict[str, Any]] = []
    through = _page_through(connection, chosen, start, visible, limit)
    for stream, table in (("edge", ledger_events), ("central", central_events)):
        query = _movement_query(table, chosen, start, visible, through=through)
        found.extend(
            {**each._asdict(), "stream": stream}
            for each in connection.execute(query.limit(limit + 1))
        )
    if through is not None and sum(_aware(row["occurred_at"]) <= through for row in found) <= limit:
        # Fewer than a page at or before the bound (valuation entries the two ledgers'
        # queries do not show): the edge ledger's page again without it.
        found = [row for row in found if row["stream"] == "central"]
        query = _movement_query(ledger_events, chosen, start, visible)
        found.extend(
            {**each._asdict(), "stream": "edge"}
            for each in connection.execute(query.limit(limit + 1))
        )
    found.sort(key=lambda row: (_aware(row["occurred_at"]), row["event_id"]))
    more = len(found) > limit
    page = found[:limit]
    for entry in page:
        entry["occurred_at"] = _aware(entry["occurred_at"])
        entry["document"] = (
            f"{entry['doc_type']}:{entry['doc_id']}/{entry['doc_line']}"
            if entry["doc_type"]
            else None
        )
    columns = visible_columns(MOVEMENT_COLUMNS, financial)
    if financial:
        costs = _entry_costs(connection, [entry["event_id"] for entry in page])
        for entry in page:
            in_value, cogs = costs.get(entry["event_id"], (None, None))
            entry["in_value"], entry["cogs"] = in_value, cogs
    last = page[-1] if more and page else None
    return Report(
        name="movements",
        columns=columns,
        rows=_strip(page, columns),
        next_after=None if last is None else encode_cursor(last["occurred_at"], last["event_id"]),
    )


def iter_movements(
    connection: Connection,
    chosen: MovementFilter,
    *,
    visible: Collection[str] | None = None,
    financial: bool = False,
) -> Iterator[Report]:
    """Every page of the movement ledger in turn, for an export."""
    after: str | None = None
    while True:
        page = movements(
            connection, chosen, after=after, limit=MAX_PAGE, visible=visible, financial=financial
        )
        yield page
        if page.next_after is None:
            return
        after = page.next_after


def _page_window(
    occurred_at: Any, event_id: Any, chosen: MovementFilter, start: tuple[datetime, str] | None
) -> list[Any]:
    """A movement page's time window and where its cursor left off, on these columns."""
    conditions: list[Any] = []
    if chosen.since is not None:
        conditions.append(occurred_at >= _aware(chosen.since))
    if chosen.until is not None:
        conditions.append(occurred_at < _aware(chosen.until))
    if start is not None:
        moment, last_id = start
        # ``>=`` says again what the OR says, so an index scan starts at the cursor.
        conditions.append(occurred_at >= moment)
        conditions.append(
            or_(occurred_at > moment, and_(occurred_at == moment, event_id > last_id))
        )
    return conditions


def _page_through(
    connection: Connection,
    chosen: MovementFilter,
    start: tuple[datetime, str] | None,
    visible: Collection[str] | None,
    limit: int,
) -> datetime | None:
    """For a page of one (site, item) with no other filter: the moment of its
    ``limit + 1``-th valuation entry from ``start`` on, read in the index's own order
    (None: fewer entries than that, or another kind of page).

    The page's query then reads no entry after it. Without the bound, PostgreSQL's
    generic plan (what a statement psycopg has prepared may get after five executions)
    estimates the key's entries as an average key's, a dozen, and sorts every one from
    ``since`` or the cursor on for ``event_id``, the second order column the (``site_id``,
    ``item``, ``occurred_at``) index does not give: 50,000 entries, half a second, for a
    page of the busy item of the 5,000,000-row bench (docs/performance.md, "Generic
    plans"; reports.newest_entry_at_or_before is the same cure).
    """
    if chosen.site_id is None or chosen.item is None:
        return None
    if any(getattr(chosen, name) is not None for name in ("kind", "location", "doc_id")):
        return None
    entries = valuation_entries.c
    query = select(entries.occurred_at).where(
        *_in_scope(entries.site_id, chosen.site_id, visible),
        entries.item == chosen.item,
        *_page_window(entries.occurred_at, entries.event_id, chosen, start),
    )
    through = connection.execute(
        query.order_by(entries.occurred_at).offset(limit).limit(1)
    ).scalar_one_or_none()
    return None if through is None else _aware(through)


def _movement_query(
    table: Any,
    chosen: MovementFilter,
    start: tuple[datetime, str] | None,
    visible: Collection[str] | None,
    *,
    through: datetime | None = None,
) -> Select[Any]:
    """One ledger's page query. An edge ledger filtered to an item is walked through the
    valuation entries' (site_id, item, occurred_at) index and read by primary key (the
    ledger has no item index: migration 0037), so a page of an item with 100,000
    movements reads a page, not the site's whole ledger."""
    query = select(
        table.c.event_id,
        table.c.occurred_at,
        table.c.site_id,
        table.c.kind,
        table.c.item,
        table.c.location,
        table.c.lot,
        table.c.qty,
        table.c.uom,
        table.c.doc_type,
        table.c.doc_id,
        table.c.doc_line,
        table.c.ref,
        table.c.actor,
    )
    keyed = table.c
    if table is ledger_events and chosen.item is not None:
        keyed = valuation_entries.c
        query = query.select_from(
            valuation_entries.join(table, table.c.event_id == valuation_entries.c.event_id)
        )
    query = query.where(*_in_scope(keyed.site_id, chosen.site_id, visible))
    if chosen.item is not None:
        query = query.where(keyed.item == chosen.item)
    for name in ("kind", "location", "doc_id"):
        wanted = getattr(chosen, name)
        if wanted is not None:
            query = query.where(table.c[name] == wanted)
    query = query.where(*_page_window(keyed.occurred_at, keyed.event_id, chosen, start))
    if through is not None and table is ledger_events:
        query = query.where(keyed.occurred_at <= through)
    return query.order_by(keyed.occurred_at, keyed.event_id)


def _entry_costs(
    connection: Connection, event_ids: Sequence[str]
) -> dict[str, tuple[Decimal | None, Decimal | None]]:
    found: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for chunk in range(0, len(event_ids), 500):
        for row in connection.execute(
            select(
                valuation_entries.c.event_id, valuation_entries.c.in_value, valuation_entries.c.cogs
            ).where(valuation_entries.c.event_id.in_(event_ids[chunk : chunk + 500]))
        ):
            found[row.event_id] = (cents(row.in_value), cents(row.cogs))
    return found


# --- 3. gross margin -----------------------------------------------------------------------

MARGIN_GROUPS: Final = ("item", "category", "customer", "site", "month")

MARGIN_COLUMNS: Final = (
    Column("key", "Group"),
    Column("name", "Name"),
    Column("invoices", "Invoices", "int"),
    Column("receipts", "Counter receipts", "int"),
    Column("revenue", "Revenue", "money", financial=True),
    Column("cogs", "Cost of goods", "money", financial=True),
    Column("margin", "Gross margin", "money", financial=True),
    Column("margin_rate", "Margin rate", "percent", financial=True),
)


def gross_margin(
    connection: Connection,
    *,
    by: str = "item",
    since: date | None = None,
    until: date | None = None,
    site_id: str | None = None,
    visible: Collection[str] | None = None,
    top: int = 10,
) -> Report:
    """Revenue against cost of goods by item, category, customer, site or month, from
    ``since`` to ``until`` inclusive; largest margin first. All money, so only for a
    financial reader (the route checks).

    Two sources: sales invoice lines (before tax, on the invoice date) against the
    valuation entries of the shipment each invoice bills, per item; and the stores'
    counter sales (``retail_sales``, on the UTC day of the event) against the valuation
    entry of the same event, a refund's negative revenue against the value valuation put
    back in stock (its ``in_value``, at the running cost), which reduces the cost of goods.
    A counter sale has no customer: by customer it is the row with the empty key."""
    if by not in MARGIN_GROUPS:
        raise InvalidError(f"by: one of {', '.join(MARGIN_GROUPS)}")
    where = _in_scope(sales_invoices.c.site_id, site_id, visible)
    if since is not None:
        where.append(sales_invoices.c.invoice_date >= since)
    if until is not None:
        where.append(sales_invoices.c.invoice_date <= until)
    lines = connection.execute(
        select(
            sales_invoices.c.invoice_id,
            sales_invoices.c.shipment_id,
            sales_invoices.c.customer_code,
            sales_invoices.c.site_id,
            sales_invoices.c.invoice_date,
            sales_invoice_lines.c.item_code,
            sales_invoice_lines.c.amount,
        )
        .join(sales_invoice_lines, sales_invoice_lines.c.invoice_id == sales_invoices.c.invoice_id)
        .where(*where)
    ).all()
    cost_rows = connection.execute(
        select(
            central_events.c.ref,
            central_events.c.item,
            type_coerce(func.sum(valuation_entries.c.cogs), MicroUnits()).label("cogs"),
        )
        .join(valuation_entries, valuation_entries.c.event_id == central_events.c.event_id)
        .join(sales_invoices, sales_invoices.c.shipment_id == central_events.c.ref)
        .where(central_events.c.doc_type == "sales_order", *where)
        .group_by(central_events.c.ref, central_events.c.item)
    ).all()
    costs = {(row.ref, row.item): row.cogs or ZERO for row in cost_rows}
    counter = _counter_lines(connection, since=since, until=until, site_id=site_id, visible=visible)
    facts = _item_facts(
        connection, {line.item_code for line in lines} | {line.item_code for line in counter}
    )

    def key_of(line: Any) -> str:
        if by == "item":
            return str(line.item_code)
        if by == "category":
            known = facts.get(line.item_code)
            return (known.category if known else None) or ""
        if by == "customer":
            return str(line.customer_code or "")
        if by == "site":
            return str(line.site_id)
        return str(line.invoice_date.strftime("%Y-%m"))

    revenue: dict[str, Decimal] = defaultdict(Decimal)
    cogs: dict[str, Decimal] = defaultdict(Decimal)
    invoices: dict[str, set[str]] = defaultdict(set)
    counted: set[tuple[str, str]] = set()
    for line in lines:
        key = key_of(line)
        revenue[key] += line.amount
        invoices[key].add(line.invoice_id)
        # An invoice line per shipment line: the shipment's cost of an item is counted
        # once, with its first line of that item.
        pair = (line.shipment_id, line.item_code)
        if pair not in counted:
            counted.add(pair)
            cogs[key] += costs.get(pair, ZERO)
    receipts: dict[str, set[str]] = defaultdict(set)
    for sold in counter:
        key = key_of(sold)
        revenue[key] += sold.amount
        cogs[key] += sold.cogs
        if not sold.refund:
            receipts[key].add(sold.receipt)
    names = _group_names(connection, by, [key for key in revenue if key], facts)
    rows: list[dict[str, Any]] = []
    for key, earned in revenue.items():
        margin = earned - cogs[key]
        rows.append(
            {
                "key": key,
                "name": names.get(key, ""),
                "invoices": len(invoices[key]),
                "receipts": len(receipts[key]),
                "revenue": cents(earned),
                "cogs": cents(cogs[key]),
                "margin": cents(margin),
                "margin_rate": (_plain((margin / earned).quantize(RATE)) if earned else None),
            }
        )
    rows.sort(key=lambda row: (-row["margin"], row["key"]))
    total_revenue = sum((row["revenue"] for row in rows), ZERO)
    total_cogs = sum((row["cogs"] for row in rows), ZERO)
    return Report(
        name="gross-margin",
        columns=list(MARGIN_COLUMNS),
        rows=rows,
        totals={
            "revenue": _plain(total_revenue),
            "cogs": _plain(total_cogs),
            "margin": _plain(total_revenue - total_cogs),
        },
        chart=[(row["key"], row["margin"]) for row in rows[:top]],
    )


@dataclass(frozen=True, slots=True)
class _CounterLine:
    """A counter sale or refund line as the margin groups it (the names an invoice line
    has, so one ``key_of`` serves both)."""

    item_code: str
    customer_code: None
    site_id: str
    invoice_date: date
    receipt: str
    refund: str | None
    amount: Decimal
    cogs: Decimal
    """A sale's cost of goods; a refund's value back in stock, negative."""


def _counter_lines(
    connection: Connection,
    *,
    since: date | None,
    until: date | None,
    site_id: str | None,
    visible: Collection[str] | None,
) -> list[_CounterLine]:
    """The counter's lines in the period with the cost valuation gave each event (an
    outer join: an event not valued yet counts no cost rather than hiding its revenue)."""
    where = _in_scope(retail_sales.c.site_id, site_id, visible)
    if since is not None:
        where.append(retail_sales.c.sold_at >= start_of(since, "since"))
    if until is not None:
        where.append(retail_sales.c.sold_at < end_of(until, "until"))
    found = []
    for row in connection.execute(
        select(
            retail_sales.c.item_code,
            retail_sales.c.site_id,
            retail_sales.c.sold_at,
            retail_sales.c.receipt,
            retail_sales.c.refund,
            retail_sales.c.amount,
            valuation_entries.c.cogs,
            valuation_entries.c.in_value,
        )
        .outerjoin(valuation_entries, valuation_entries.c.event_id == retail_sales.c.event_id)
        .where(*where)
    ):
        cost = (row.cogs or ZERO) - (row.in_value or ZERO)
        found.append(
            _CounterLine(
                row.item_code,
                None,
                row.site_id,
                _aware(row.sold_at).astimezone(UTC).date(),
                row.receipt,
                row.refund,
                row.amount,
                cost,
            )
        )
    return found


def _group_names(
    connection: Connection, by: str, keys: list[str], facts: dict[str, _ItemFacts]
) -> dict[str, str]:
    if not keys:
        return {}
    if by == "item":
        return {code: known.name for code, known in facts.items()}
    table, code = {
        "category": (categories, categories.c.code),
        "customer": (partners, partners.c.code),
        "site": (sites, sites.c.site_id),
    }.get(by, (None, None))
    if table is None or code is None:
        return {}
    return {
        row.code: row.name
        for row in connection.execute(
            select(code.label("code"), table.c.name).where(code.in_(sorted(keys)))
        )
    }


# --- 3b. counter takings --------------------------------------------------------------------

TAKINGS_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("site_name", "Name"),
    Column("day", "Day", "date"),
    Column("payment", "Payment method"),
    Column("receipts", "Counter receipts", "int"),
    Column("refunds", "Refund slips", "int"),
    Column("sold", "Sold", "money", financial=True),
    Column("refunded", "Refunded", "money", financial=True),
    Column("net", "Net takings", "money", financial=True),
)


def retail_takings(
    connection: Connection,
    *,
    since: date | None = None,
    until: date | None = None,
    site_id: str | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """A store's till per site, UTC day and payment method: receipts and refund slips,
    money sold and refunded, and the net, which is what
    :func:`central_api.services.retail.takings` gives for that site, day and method. One
    query over ``retail_sales`` for every row rather than ``takings()`` per site and day
    (that gives one site's sum over a span, not the rows). Latest day first."""
    where = _in_scope(retail_sales.c.site_id, site_id, visible)
    if since is not None:
        where.append(retail_sales.c.sold_at >= start_of(since, "since"))
    if until is not None:
        where.append(retail_sales.c.sold_at < end_of(until, "until"))
    sold: dict[tuple[str, date, str], Decimal] = defaultdict(Decimal)
    refunded: dict[tuple[str, date, str], Decimal] = defaultdict(Decimal)
    receipts: dict[tuple[str, date, str], set[str]] = defaultdict(set)
    refunds: dict[tuple[str, date, str], set[str]] = defaultdict(set)
    for row in connection.execute(
        select(
            retail_sales.c.site_id,
            retail_sales.c.sold_at,
            retail_sales.c.payment,
            retail_sales.c.receipt,
            retail_sales.c.refund,
            retail_sales.c.amount,
        ).where(*where)
    ):
        key = (row.site_id, _aware(row.sold_at).astimezone(UTC).date(), row.payment)
        if row.refund is None:
            sold[key] += row.amount
            receipts[key].add(row.receipt)
        else:
            refunded[key] -= row.amount
            refunds[key].add(row.refund)
    keys = sorted(set(sold) | set(refunded), key=lambda k: (-k[1].toordinal(), k[0], k[2]))
    names = _group_names(connection, "site", sorted({key[0] for key in keys}), {})
    rows: list[dict[str, Any]] = [
        {
            "site_id": key[0],
            "site_name": names.get(key[0], ""),
            "day": key[1],
            "payment": key[2],
            "receipts": len(receipts[key]),
            "refunds": len(refunds[key]),
            "sold": cents(sold[key]),
            "refunded": cents(refunded[key]),
            "net": cents(sold[key] - refunded[key]),
        }
        for key in keys
    ]
    return Report(
        name="retail-takings",
        columns=list(TAKINGS_COLUMNS),
        rows=rows,
        totals={
            name: _plain(sum((row[name] for row in rows), ZERO))
            for name in ("sold", "refunded", "net")
        },
    )


# --- 4. slow-moving and dead stock ---------------------------------------------------------

SLOW_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("qty", "Quantity", "qty"),
    Column("uom", "Unit"),
    Column("last_out", "Last out", "datetime"),
    Column("days_idle", "Days without going out", "int"),
    Column("last_in", "Last in", "datetime"),
    Column("value", "Value", "money", financial=True),
)


def slow_moving(
    connection: Connection,
    *,
    days: int = 90,
    on: datetime | None = None,
    site_id: str | None = None,
    visible: Collection[str] | None = None,
    financial: bool = False,
) -> Report:
    """Every (site, item) with stock on hand now and no movement out (issue, sale,
    transfer out, scrap) in the ``days`` before ``on``, or none ever (``days_idle`` then
    counts from its first movement in); longest idle first. Movements after ``on`` are
    not looked at; the stock is today's. Dead stock (呆滞) is the same list with a long
    ``days``; value (financial) from the valuation."""
    if not 1 <= days <= 36_500:
        raise InvalidError("days: 1 to 36500")
    moment = _aware(on) if on is not None else datetime.now(UTC)
    if moment.date() - timedelta(days=days) < EARLIEST:
        raise InvalidError(f"days: counted back from {moment.date()}, too far")
    held = connection.execute(
        select(
            stock_balances.c.site_id,
            stock_balances.c.item,
            stock_balances.c.uom,
            type_coerce(func.sum(stock_balances.c.qty), MicroUnits()).label("qty"),
        )
        .where(*_in_scope(stock_balances.c.site_id, site_id, visible))
        .group_by(stock_balances.c.site_id, stock_balances.c.item, stock_balances.c.uom)
    ).all()
    on_hand: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(dict)
    for each in held:
        if each.qty:
            on_hand[(each.site_id, each.item)][each.uom] = each.qty
    positive = {key: units for key, units in on_hand.items() if sum(units.values()) > 0}
    if not positive:
        columns = visible_columns(SLOW_COLUMNS, financial)
        return Report(name="slow-moving", columns=columns, rows=[])
    moved = _moves(connection, site_id, visible, moment)
    cutoff = moment - timedelta(days=days)
    facts = _item_facts(connection, {item for _site, item in positive})
    worth = _worth_now(connection, set(positive)) if financial else {}
    rows: list[dict[str, Any]] = []
    total = ZERO
    for (site, item), units in sorted(positive.items()):
        out = moved.last_out.get((site, item))
        if out is not None and out >= cutoff:
            continue
        since = out if out is not None else moved.first_in.get((site, item))
        known = facts.get(item)
        uom = known.base_uom if known else next(iter(units))
        row: dict[str, Any] = {
            "site_id": site,
            "item": item,
            "item_name": known.name if known else "",
            "qty": _plain(sum((_base_qty(known, q, u) for u, q in units.items()), ZERO)),
            "uom": uom,
            "last_out": out,
            "days_idle": None if since is None else max((moment - since).days, 0),
            "last_in": moved.last_in.get((site, item)),
        }
        if financial:
            found = worth.get((site, item))
            row["value"] = cents(found.value) if found is not None else ZERO
            total += row["value"]
        rows.append(row)
    rows.sort(key=lambda row: (-(row["days_idle"] or 0), row["site_id"], row["item"]))
    columns = visible_columns(SLOW_COLUMNS, financial)
    return Report(
        name="slow-moving",
        columns=columns,
        rows=_strip(rows, columns),
        totals={"value": _plain(total)} if financial else {},
    )


@dataclass(slots=True)
class _Moves:
    last_out: dict[tuple[str, str], datetime] = field(default_factory=dict)
    first_in: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last_in: dict[tuple[str, str], datetime] = field(default_factory=dict)


def _moves(
    connection: Connection, site_id: str | None, visible: Collection[str] | None, until: datetime
) -> _Moves:
    """Per (site, item), up to ``until``: the latest movement out, the first and the
    latest movement in (anything else with a positive quantity counts as in)."""
    found = _Moves()
    for table in (ledger_events, central_events):
        direction = table.c.kind.in_(OUTBOUND)
        for row in connection.execute(
            select(
                table.c.site_id,
                table.c.item,
                direction.label("out"),
                func.min(table.c.occurred_at).label("first"),
                func.max(table.c.occurred_at).label("last"),
            )
            .where(
                table.c.occurred_at <= until,
                or_(direction, table.c.qty > ZERO),
                *_in_scope(table.c.site_id, site_id, visible),
            )
            .group_by(table.c.site_id, table.c.item, direction)
        ):
            key = (row.site_id, row.item)
            first, last = _aware(row.first), _aware(row.last)
            if row.out:
                found.last_out[key] = max(last, found.last_out.get(key, last))
            else:
                found.last_in[key] = max(last, found.last_in.get(key, last))
                found.first_in[key] = min(first, found.first_in.get(key, first))
    return found


# --- 5. expiry -----------------------------------------------------------------------------

EXPIRY_COLUMNS: Final = (
    Column("bucket", "Expiry"),
    Column("site_id", "Site"),
    Column("location", "Location"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("lot", "Lot"),
    Column("expiry", "Expires on", "date"),
    Column("days_left", "Days left", "int"),
    Column("qty", "Quantity", "qty"),
    Column("uom", "Unit"),
    Column("value", "Value", "money", financial=True),
)


def expiry_bucket(expiry: date, on: date) -> str | None:
    """``expired`` (before ``on``), ``0-30``, ``31-60``, ``61-90`` days left; None beyond."""
    left = (expiry - on).days
    if left < 0:
        return "expired"
    if left <= 30:
        return "0-30"
    if left <= 60:
        return "31-60"
    if left <= 90:
        return "61-90"
    return None


def expiry(
    connection: Connection,
    *,
    on: date | None = None,
    site_id: str | None = None,
    item: str | None = None,
    visible: Collection[str] | None = None,
    financial: bool = False,
) -> Report:
    """Lots on hand that expired before ``on`` or expire within 90 days of it, soonest
    first, each in its bucket; the chart's figures are the value per bucket (financial
    readers) or the number of lots. A lot's expiry is the one its movements carry."""
    today = checked_day(on, "on") or datetime.now(UTC).date()
    rows = [
        row
        for row in _balances_now(
            connection, StockFilter(site_id=site_id, item=item, visible=visible), lots_held=True
        )
        if row["lot"] is not None and row["qty"] > 0
    ]
    expiries = _lot_expiries(connection, {(row["item"], row["lot"]) for row in rows})
    facts = _item_facts(connection, {row["item"] for row in rows})
    worth = _worth_now(connection, {(r["site_id"], r["item"]) for r in rows}) if financial else {}
    chosen = []
    per_bucket: dict[str, Decimal] = dict.fromkeys(EXPIRY_BUCKETS, ZERO)
    for row in rows:
        expires = expiries.get((row["item"], row["lot"]))
        if expires is None:
            continue
        bucket = expiry_bucket(expires, today)
        if bucket is None:
            continue
        known = facts.get(row["item"])
        row.update(
            bucket=bucket,
            expiry=expires,
            days_left=(expires - today).days,
            item_name=known.name if known else "",
        )
        if financial:
            found = worth.get((row["site_id"], row["item"]))
            base = _base_qty(known, row["qty"], row["uom"])
            row["value"] = cents(found.of(base)) if found is not None else ZERO
            per_bucket[bucket] += row["value"]
        else:
            per_bucket[bucket] += 1
        chosen.append(row)
    chosen.sort(key=lambda row: (row["expiry"], row["site_id"], row["item"], row["lot"]))
    columns = visible_columns(EXPIRY_COLUMNS, financial)
    return Report(
        name="expiry",
        columns=columns,
        rows=_strip(chosen, columns),
        totals={f"value_{k}": _plain(v) for k, v in per_bucket.items()} if financial else {},
        chart=list(per_bucket.items()),
    )


def _lot_expiries(
    connection: Connection, lots: Collection[tuple[str, str]]
) -> dict[tuple[str, str], date]:
    """The expiry of each (item, lot): the latest any of its movements gives."""
    if not lots:
        return {}
    codes = sorted({item for item, _lot in lots})
    found: dict[tuple[str, str], date] = {}
    for table in (ledger_events, central_events):
        for row in connection.execute(
            select(table.c.item, table.c.lot, func.max(table.c.expiry).label("expiry"))
            .where(table.c.item.in_(codes), table.c.expiry.is_not(None))
            .group_by(table.c.item, table.c.lot)
        ):
            key = (row.item, row.lot)
            if key in lots and (key not in found or found[key] < row.expiry):
                found[key] = row.expiry
    return found


# --- 6. turnover ---------------------------------------------------------------------------

TURNOVER_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("opening_value", "Opening value", "money", financial=True),
    Column("closing_value", "Closing value", "money", financial=True),
    Column("cogs", "Cost of goods", "money", financial=True),
    Column("turns", "Turns", "qty", financial=True),
    Column("days_on_hand", "Days of stock", "qty", financial=True),
)
_JUST_BEFORE: Final = timedelta(microseconds=1)


def turnover(
    connection: Connection,
    *,
    since: date,
    until: date,
    site_id: str | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """Stock turnover (周转) per (site, item) over the days ``since`` to ``until``
    inclusive: cost of goods in the period over the average of the opening and closing
    stock value (turns), and the days of stock that makes (days ÷ turns); fastest first.
    All money, so for a financial reader only (the route checks)."""
    start, end = start_of(since, "since"), end_of(until, "until")
    assert start is not None
    assert end is not None
    if end <= start:
        raise InvalidError("until: on or after since")
    entries = valuation_entries
    spent = {
        (row.site_id, row.item): row.cogs or ZERO
        for row in connection.execute(
            select(
                entries.c.site_id,
                entries.c.item,
                type_coerce(func.sum(entries.c.cogs), MicroUnits()).label("cogs"),
            )
            .where(
                entries.c.occurred_at >= start,
                entries.c.occurred_at < end,
                *_in_scope(entries.c.site_id, site_id, visible),
            )
            .group_by(entries.c.site_id, entries.c.item)
        )
    }
    held = {
        (row.site_id, row.item)
        for row in connection.execute(
            select(valuation_state.c.site_id, valuation_state.c.item).where(
                *_in_scope(valuation_state.c.site_id, site_id, visible)
            )
        )
    }
    keys = held | set(spent)
    opening = _worth_at(connection, keys, start - _JUST_BEFORE)
    closing = _worth_at(connection, keys, end - _JUST_BEFORE)
    facts = _item_facts(connection, {item for _site, item in keys})
    days = Decimal((end - start).days)
    rows: list[dict[str, Any]] = []
    for key in keys:
        first = opening[key].value if key in opening else ZERO
        last = closing[key].value if key in closing else ZERO
        cost = spent.get(key, ZERO)
        if first == 0 and last == 0 and cost == 0:
            continue
        average = (first + last) / 2
        turns = cost / average if average > 0 else None
        known = facts.get(key[1])
        rows.append(
            {
                "site_id": key[0],
                "item": key[1],
                "item_name": known.name if known else "",
                "opening_value": cents(first),
                "closing_value": cents(last),
                "cogs": cents(cost),
                "turns": None if turns is None else _plain(turns.quantize(CENT)),
                "days_on_hand": (
                    _plain((days / turns).quantize(Decimal("0.1"))) if turns else None
                ),
            }
        )
    rows.sort(key=lambda row: (-(row["turns"] or ZERO), row["site_id"], row["item"]))
    return Report(name="turnover", columns=list(TURNOVER_COLUMNS), rows=rows)


# --- 7. sync lag ---------------------------------------------------------------------------

SYNC_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("acked_through_seq", "Held through seq", "int"),
    Column("last_push_at", "Last push", "datetime"),
    Column("last_event_at", "Latest movement", "datetime"),
    Column("lag_minutes", "Minutes since last push", "int"),
    Column("refused", "Refused events", "int"),
)


def sync_lag(
    connection: Connection,
    *,
    on: datetime | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """Per site that has an edge: how far central holds its ledger, when it last pushed,
    the latest movement it holds, and how many of its events wait refused; the site that
    has been silent longest first. Nothing here is money."""
    moment = _aware(on) if on is not None else datetime.now(UTC)
    state = site_sync_state
    latest = (
        select(ledger_events.c.site_id, func.max(ledger_events.c.occurred_at).label("at"))
        .group_by(ledger_events.c.site_id)
        .subquery()
    )
    refused = (
        select(refused_events.c.site_id, func.count().label("n"))
        .group_by(refused_events.c.site_id)
        .subquery()
    )
    query = (
        select(
            state.c.site_id,
            state.c.acked_through_seq,
            state.c.updated_at,
            latest.c.at,
            func.coalesce(refused.c.n, 0).label("refused"),
        )
        .outerjoin(latest, latest.c.site_id == state.c.site_id)
        .outerjoin(refused, refused.c.site_id == state.c.site_id)
        .where(*_in_scope(state.c.site_id, None, visible))
        .order_by(state.c.site_id)
    )
    rows: list[dict[str, Any]] = []
    for found in connection.execute(query):
        pushed = _aware(found.updated_at)
        rows.append(
            {
                "site_id": found.site_id,
                "acked_through_seq": found.acked_through_seq,
                "last_push_at": pushed,
                "last_event_at": None if found.at is None else _aware(found.at),
                "lag_minutes": max(int((moment - pushed).total_seconds() // 60), 0),
                "refused": int(found.refused),
            }
        )
    rows.sort(key=lambda row: (-row["lag_minutes"], row["site_id"]))
    return Report(name="sync-lag", columns=list(SYNC_COLUMNS), rows=rows)


# --- 8. count accuracy -----------------------------------------------------------------------

ACCURACY_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("sessions", "Count sessions", "int"),
    Column("lines_counted", "Lines counted", "int"),
    Column("lines_right", "Lines without a variance", "int"),
    Column("accuracy", "Count accuracy", "percent"),
    Column("value_counted", "Value counted", "money", financial=True),
    Column("value_right", "Value counted right", "money", financial=True),
    Column("value_accuracy", "Value-weighted accuracy", "percent", financial=True),
)


def count_accuracy(
    connection: Connection,
    *,
    site_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    visible: Collection[str] | None = None,
    financial: bool = False,
) -> Report:
    """Count accuracy (盘点准确率) per site over its posted count sessions: the share of
    counted lines whose count equalled the system's quantity and, for a financial
    reader, the value-weighted share (value of the lines counted right / value counted,
    at each session's snapshot cost). It is ``services.counts.accuracy`` as a report
    (one reading, so the count review page and this report cannot disagree). The
    chart is the line rate per site."""
    found = counts.accuracy(
        connection,
        site_id=site_id,
        since=since,
        until=until,
        visible=None if visible is None else frozenset(visible),
        financial=financial,
    )
    columns = visible_columns(ACCURACY_COLUMNS, financial)
    rows = _strip([counts.accuracy_row(each) for each in found], columns)
    counted = sum(each.lines_counted for each in found)
    right = sum(each.lines_right for each in found)
    totals: dict[str, Decimal] = {}
    if counted:
        totals["accuracy"] = counts.rate(Decimal(right), Decimal(counted))
    if financial:
        value = sum((each.value_counted or ZERO for each in found), ZERO)
        value_right = sum((each.value_right or ZERO for each in found), ZERO)
        totals |= {"value_counted": _plain(value), "value_right": _plain(value_right)}
        if value:
            totals["value_accuracy"] = counts.rate(value_right, value)
    return Report(
        name="count-accuracy",
        columns=columns,
        rows=rows,
        totals=totals,
        chart=[(each.site_id, rate) for each in found if (rate := each.accuracy) is not None],
    )


# --- 9. receivables ageing -------------------------------------------------------------------

AGEING_COLUMNS: Final = (
    Column("customer", "Customer"),
    Column("current", "Current (not yet due)", "money", financial=True),
    Column("days_1_30", "1–30 days past due", "money", financial=True),
    Column("days_31_60", "31–60 days past due", "money", financial=True),
    Column("days_61_90", "61–90 days past due", "money", financial=True),
    Column("over_90", "Over 90 days past due", "money", financial=True),
    Column("total", "Outstanding", "money", financial=True),
)
_AGEING_KEYS: Final = dict(
    zip(receivables.BUCKETS, [c.key for c in AGEING_COLUMNS[1:6]], strict=True)
)


def receivables_ageing(
    connection: Connection,
    *,
    on: date | None = None,
    customer: str | None = None,
    site_id: str | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """Receivables ageing (应收账龄) per customer on a day (today unless given): what is
    outstanding by days past due, from ``services.receivables.ageing`` (the console's
    ageing page reads the same). A site narrows the invoices read to that site's, within
    the reader's sites. All money: the route and page refuse a reader without the group.
    The chart is the buckets' totals, labelled by their column keys."""
    day = checked_day(on, "on") or datetime.now(UTC).date()
    scope: frozenset[str] | None = None if visible is None else frozenset(visible)
    if site_id is not None:
        scope = frozenset({site_id}) if scope is None else scope & {site_id}
    found = receivables.ageing(connection, on=day, customer=customer, visible=scope)
    rows: list[dict[str, Any]] = [
        {
            "customer": each.customer,
            **{_AGEING_KEYS[name]: cents(value) for name, value in each.buckets.items()},
            "total": cents(each.total),
        }
        for each in found
    ]
    totals = {
        key: cents(sum((row[key] for row in rows), ZERO))
        for key in (*_AGEING_KEYS.values(), "total")
    }
    return Report(
        name="receivables-ageing",
        columns=list(AGEING_COLUMNS),
        rows=rows,
        totals=totals if rows else {},
        chart=[(key, totals[key]) for key in _AGEING_KEYS.values()] if rows else [],
    )


# --- 10. stock-out rate ----------------------------------------------------------------------

STOCKOUT_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("days", "Days stocked", "int"),
    Column("days_out", "Days out of stock", "int"),
    Column("stockout_rate", "Stock-out rate", "percent"),
    Column("closing_qty", "Closing quantity", "qty"),
    Column("uom", "Unit"),
)
LONGEST_PERIOD: Final = 3660
"""Days a stock-out report may span: it walks the period a day at a time per item."""


def _opening_and_moves(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    site_id: str | None,
    item: str | None,
    visible: Collection[str] | None,
) -> list[Any]:
    """Both ledgers' movements as one row per (site, item, unit) and UTC day from
    ``start`` to ``end``, and one per (site, item, unit) before ``start``: each the sum of
    its quantities at the earliest of its moments (which falls on its day, and is all the
    day-by-day count needs of what came before: the opening stock, and that the item was
    carried). One statement, so a push cannot land between the two."""
    parts: list[Select[Any]] = []
    for table in (ledger_events, central_events):
        where = _in_scope(table.c.site_id, site_id, visible)
        if item is not None:
            where.append(table.c.item == item)
        columns = (
            table.c.site_id,
            table.c.item,
            table.c.uom,
            type_coerce(func.sum(table.c.qty), MicroUnits()).label("qty"),
            func.min(table.c.occurred_at).label("occurred_at"),
        )
        parts.append(
            select(*columns)
            .where(table.c.occurred_at >= start, table.c.occurred_at < end, *where)
            .group_by(
                table.c.site_id,
                table.c.item,
                table.c.uom,
                _utc_day(connection, table.c.occurred_at),
            )
        )
        parts.append(
            select(*columns)
            .where(table.c.occurred_at < start, *where)
            .group_by(table.c.site_id, table.c.item, table.c.uom)
        )
    return list(connection.execute(select(union_all(*parts).subquery())))


def _utc_day(connection: Connection, moment: Any) -> Any:
    """The UTC day of a stored moment, in SQL: SQLite keeps UTC text
    (``YYYY-MM-DD HH:MM:SS...``), PostgreSQL a ``timestamptz``."""
    if connection.dialect.name == "postgresql":
        return cast(func.timezone("UTC", moment), Date)
    return func.substr(moment, 1, 10)


def _days_out(
    opening: Decimal, changes: dict[int, Decimal], counted_from: int, period: int
) -> tuple[Decimal, int]:
    """The stock at the period's end and how many of its days from ``counted_from`` on
    ended with none (zero or less), given the stock before it and each day's change: the
    stock is constant between two days with a change, so each stretch is counted whole
    (one step per day with a movement, not one per day of the period)."""
    held, out, since = opening, 0, 0
    for day in sorted(changes):
        if held <= 0:
            out += max(0, day - max(since, counted_from))
        held += changes[day]
        since = day
    if held <= 0:
        out += max(0, period - max(since, counted_from))
    return held, out


def stock_outs(
    connection: Connection,
    *,
    since: date,
    until: date,
    site_id: str | None = None,
    item: str | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """Stock-out rate (缺货率) per (site, item) over the days ``since`` to ``until``
    inclusive: a day is out of stock when what the site holds of the item (every
    location and lot, in the base unit) is zero or less at the day's end (UTC), from both
    ledgers by ``occurred_at`` (so a late push corrects past days). Days count from the
    first day the site ever held the item (before it, the item was not carried, which
    is not a stock-out); an item never moved at a site before the period ends is not in
    it. Worst first; no money. The chart is the ten worst rates above zero."""
    start, end = start_of(since, "since"), end_of(until, "until")
    assert start is not None
    assert end is not None
    if end <= start:
        raise InvalidError("until: on or after since")
    if (end - start).days > LONGEST_PERIOD:
        raise InvalidError(f"until: a period of at most {LONGEST_PERIOD} days")

    found = _opening_and_moves(connection, start, end, site_id=site_id, item=item, visible=visible)
    facts = _item_facts(connection, {row.item for row in found})
    period = (end - start).days
    opening: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    first: dict[tuple[str, str], int] = {}
    deltas: dict[tuple[str, str], dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in found:
        key = (row.site_id, row.item)
        qty = _base_qty(facts.get(row.item), row.qty, row.uom)
        day = (_aware(row.occurred_at) - start).days
        first[key] = min(first.get(key, day), day)
        if day < 0:
            opening[key] += qty
        else:
            deltas[key][day] += qty
    rows: list[dict[str, Any]] = []
    for key, begins in first.items():
        held, out = _days_out(opening[key], deltas[key], max(begins, 0), period)
        days = period - max(begins, 0)
        known = facts.get(key[1])
        rows.append(
            {
                "site_id": key[0],
                "item": key[1],
                "item_name": known.name if known else "",
                "days": days,
                "days_out": out,
                "stockout_rate": _plain((Decimal(out) / days).quantize(Decimal("0.0001"))),
                "closing_qty": _plain(held),
                "uom": known.base_uom if known else "",
            }
        )
    rows.sort(key=lambda row: (-row["stockout_rate"], row["site_id"], row["item"]))
    stocked = sum(row["days"] for row in rows)
    return Report(
        name="stock-outs",
        columns=list(STOCKOUT_COLUMNS),
        rows=rows,
        totals={}
        if not stocked
        else {
            "stockout_rate": _plain(
                (Decimal(sum(row["days_out"] for row in rows)) / stocked).quantize(
                    Decimal("0.0001")
                )
            )
        },
        chart=[
            (f"{row['site_id']} {row['item']}", row["stockout_rate"])
            for row in rows[:10]
            if row["stockout_rate"] > 0
        ],
    )


# --- 11. purchase price variance -------------------------------------------------------------

PPV_COLUMNS: Final = (
    Column("site_id", "Site"),
    Column("supplier", "Supplier"),
    Column("item", "Item code"),
    Column("item_name", "Item name"),
    Column("invoices", "Invoices", "int"),
    Column("qty", "Quantity", "qty"),
    Column("uom", "Unit"),
    Column("po_amount", "At the PO's price", "money", financial=True),
    Column("invoiced_amount", "As invoiced", "money", financial=True),
    Column("variance", "Price variance", "money", financial=True),
    Column("variance_rate", "Variance rate", "percent", financial=True),
)


def price_variance(
    connection: Connection,
    *,
    since: date | None = None,
    until: date | None = None,
    site_id: str | None = None,
    supplier: str | None = None,
    visible: Collection[str] | None = None,
) -> Report:
    """Purchase price variance (采购价格差异) per (site, supplier, item): what supplier
    invoices charged against the PO's price for the same quantities, from the three-way
    match's own figures (``po_price`` at matching, in the invoice line's unit): at the
    PO's price Σ po_price × qty, as invoiced Σ unit_price × qty, the variance (positive:
    paid more) and its rate. Disputed invoices are left out (not accepted); matched,
    held (a variance waiting for finance) and approved ones count. Dated by the invoice's
    entry (UTC day); a line whose PO line had no price is left out. Largest variance (by
    size) first. All money: the route and page refuse a reader without the group."""
    inv, lines, ordered = supplier_invoices, supplier_invoice_lines, purchase_order_lines
    query = (
        select(
            inv.c.site_id,
            inv.c.supplier_code,
            inv.c.invoice_id,
            ordered.c.item_code,
            lines.c.qty,
            lines.c.base_qty,
            lines.c.unit_price,
            lines.c.po_price,
        )
        .join(lines, lines.c.invoice_id == inv.c.invoice_id)
        .join(ordered, and_(ordered.c.po_id == inv.c.po_id, ordered.c.line_no == lines.c.po_line))
        .where(
            inv.c.status != "disputed",
            lines.c.po_price.is_not(None),
            *_in_scope(inv.c.site_id, site_id, visible),
        )
    )
    start, end = start_of(since, "since"), end_of(until, "until")
    if start is not None:
        query = query.where(inv.c.created_at >= start)
    if end is not None:
        query = query.where(inv.c.created_at < end)
    if supplier is not None:
        query = query.where(inv.c.supplier_code == supplier)
    sums: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in connection.execute(query):
        key = (row.site_id, row.supplier_code, row.item_code)
        into = sums.setdefault(key, {"invoices": set(), "qty": ZERO, "po": ZERO, "paid": ZERO})
        into["invoices"].add(row.invoice_id)
        into["qty"] += row.base_qty
        into["po"] += row.po_price * row.qty
        into["paid"] += row.unit_price * row.qty
    facts = _item_facts(connection, {item for _site, _supplier, item in sums})
    rows: list[dict[str, Any]] = []
    for (site, party, item), into in sums.items():
        known = facts.get(item)
        variance = into["paid"] - into["po"]
        rows.append(
            {
                "site_id": site,
                "supplier": party,
                "item": item,
                "item_name": known.name if known else "",
                "invoices": len(into["invoices"]),
                "qty": _plain(into["qty"]),
                "uom": known.base_uom if known else "",
                "po_amount": cents(into["po"]),
                "invoiced_amount": cents(into["paid"]),
                "variance": cents(variance),
                "variance_rate": _plain((variance / into["po"]).quantize(Decimal("0.0001")))
                if into["po"]
                else None,
            }
        )
    rows.sort(key=lambda row: (-abs(row["variance"]), row["site_id"], row["supplier"], row["item"]))
    totals = {
        key: cents(sum((row[key] for row in rows), ZERO))
        for key in ("po_amount", "invoiced_amount", "variance")
    }
    return Report(
        name="purchase-price-variance",
        columns=list(PPV_COLUMNS),
        rows=rows,
        totals=totals if rows else {},
        chart=[(f"{row['supplier']} {row['item']}", row["variance"]) for row in rows[:10]],
    )


__all__ = [
    "EXPIRY_BUCKETS",
    "MARGIN_GROUPS",
    "MAX_PAGE",
    "Column",
    "MovementFilter",
    "Report",
    "StockFilter",
    "checked_day",
    "checked_moment",
    "count_accuracy",
    "end_of",
    "expiry",
    "expiry_bucket",
    "gross_margin",
    "iter_movements",
    "movements",
    "price_variance",
    "receivables_ageing",
    "retail_takings",
    "slow_moving",
    "start_of",
    "stock_on_hand",
    "stock_outs",
    "sync_lag",
    "turnover",
]
