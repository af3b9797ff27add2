"""The alerts inbox (预警与例外): stock alerts raised and cleared by the stock itself, the
exceptions other modules raise, one table, each with an owner and a resolution.

Kinds central raises (``source = 'stock'``):

* ``below_safety``: a site's on-hand of an item is below its safety stock;
  ``below_reorder``: it is at or below the reorder point but not below safety stock.
  One of the two at a time per (site, item): crossing from one band to the other clears
  the first and raises the second. Evaluated by the :func:`project` projection for the
  (site, item) pairs a push or a central document touches, in that transaction: a pair no
  event touched cannot have crossed anything.
* ``negative_stock``: an item with a balance below zero at a site (any location, lot or
  unit), raised by the same projection (only edge facts can do that: central refuses such
  documents), with ``since_at`` the time the crossing event happened at the edge. One per
  (site, item), not per balance key: what a person acts on is the item at the site, and a
  backlog that drives many keys negative raises a tenth of the rows (``docs/performance.md``,
  "Alerts"); which balances are negative now is the negative-stock report's, derived when it
  is read (:func:`negative_stock`).
* ``expiry``: a lot on hand within one of its category's bands (30/60/90 days by default;
  ``threshold`` is the band, 0 = expired). Time moves the band, not events, so it is
  evaluated by :func:`evaluate_expiry`, called with the day to judge by (a scheduled job
  passes today; tests pass a fixed day).

A condition that ends is *cleared* (``cleared_at``) by the evaluation; a person *resolves*
an alert (``resolution``), cleared or not. At most one uncleared stock alert exists per key
(a partial unique index), so a condition that persists is one alert, not one per push.

Exceptions other modules already keep (receiving's ``purchase_exceptions``, transfer
arrival's ``transfer_exceptions``) stay where they are, with their own commands; the
projection *mirrors* each new open one into the inbox (``source`` names its table,
``source_id`` its id), so the inbox has everything with one owner and resolution.
Resolving a mirrored row resolves the exception itself in the same transaction; an
exception resolved at its own route shows as resolved in the inbox (read through).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
    update,
)

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.core.driver import Prepared, prepare
from central_api.core.sqlbits import list_param, one_of
from central_api.errors import ConflictError, InvalidError
from central_api.models.base import from_micro_units
from central_api.models.inventory import transfer_exceptions, transfer_orders
from central_api.models.items import items
from central_api.models.master import categories, item_site_levels, item_units, locations
from central_api.models.people import users
from central_api.models.purchasing import purchase_exceptions
from central_api.models.replenishment import alerts, expiry_alert_days
from central_api.models.sales import sales_order_lines, sales_orders
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services.audit import AuditContext
from central_api.services.central_events import ledger_union
from central_api.services.documents import (
    UnknownDocumentError,
    check_version,
    document_write,
    plain,
    site_conditions,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import AcceptedEvents
from jxc.pick_shorts import PickShort

NAME = "alerts"
STOCK = "stock"
PURCHASE_EXCEPTION = "purchase_exception"
TRANSFER_EXCEPTION = "transfer_exception"
DEFAULT_EXPIRY_DAYS: tuple[int, ...] = (30, 60, 90)
HELD_BACK_KINDS = ("quarantine", "damaged", "in_transit")
"""Locations whose stock is not available to sell, so does not hold stock above safety."""
CHUNK = 500
MICRO = Decimal("0.000001")
MAX_PAGE = 500


class AlertKind(StrEnum):
    BELOW_SAFETY = "below_safety"
    BELOW_REORDER = "below_reorder"
    NEGATIVE_STOCK = "negative_stock"
    EXPIRY = "expiry"


class AlertStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
    RESOLVED = "resolved"


LEVEL_KINDS = (AlertKind.BELOW_SAFETY.value, AlertKind.BELOW_REORDER.value)


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: int
    kind: str
    source: str
    source_id: str
    site_id: str
    item_code: str
    location: str
    lot: str
    qty: Decimal | None
    threshold: Decimal | None
    detail: str
    since_at: datetime | None
    raised_at: datetime
    cleared_at: datetime | None
    status: str
    owner: str | None
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    version: int


def _alert(row: Any) -> Alert:
    return Alert(
        alert_id=row.alert_id,
        kind=row.kind,
        source=row.source,
        source_id=row.source_id,
        site_id=row.site_id,
        item_code=row.item_code,
        location=row.location,
        lot=row.lot,
        qty=row.qty,
        threshold=row.threshold,
        detail=row.detail,
        since_at=utc(row.since_at),
        raised_at=utc(row.raised_at) or row.raised_at,
        cleared_at=utc(row.cleared_at),
        status=row.status,
        owner=row.owner,
        resolution=row.resolution,
        resolved_by=row.resolved_by,
        resolved_at=utc(row.resolved_at),
        version=row.version,
    )


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _raise(connection: Connection, rows: list[dict[str, Any]], at: datetime) -> None:
    if rows:
        connection.execute(
            insert(alerts),
            [
                {
                    "source": STOCK,
                    "location": "",
                    "lot": NO_LOT,
                    "qty": None,
                    "threshold": None,
                    "since_at": None,
                    **row,
                    # cleared_at, owner, resolution, resolved_*: NULL, not bound per row
                    "raised_at": at,
                    "status": AlertStatus.OPEN.value,
                    "version": 1,
                    "updated_at": at,
                }
                for row in rows
            ],
        )


def raise_exceptions(connection: Connection, rows: list[dict[str, Any]], at: datetime) -> None:
    """Put exceptions that live only in the inbox into it (no table of their own: a push
    dated inside a closed period); each row names its ``source`` and ``source_id``."""
    _raise(connection, rows, at)


def _clear(connection: Connection, ids: Sequence[int], at: datetime) -> None:
    """The condition ended: an open alert becomes ``cleared``; a resolved one keeps its
    resolution and only gains ``cleared_at``."""
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id.in_(chunk), alerts.c.cleared_at.is_(None))
            .values(
                cleared_at=at,
                status=func.coalesce(
                    func.nullif(alerts.c.status, AlertStatus.OPEN.value),
                    AlertStatus.CLEARED.value,
                ),
                version=alerts.c.version + 1,
                updated_at=at,
            )
        )


# --- stock on hand, in the base unit -------------------------------------------------------


def site_on_hand(
    connection: Connection, site_id: str, item_codes: Sequence[str]
) -> dict[str, Decimal]:
    """Available on-hand per item at the site in its base unit: every balance but those in
    quarantine, damaged or in-transit locations. A balance in a unit the item does not
    have (an edge's mistake) cannot be converted and is left out."""
    held = set(
        connection.execute(
            select(locations.c.code).where(
                locations.c.site_id == site_id, locations.c.kind.in_(HELD_BACK_KINDS)
            )
        ).scalars()
    )
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for chunk in _chunks(item_codes):
        # Summed by the database: one row (and one decimal conversion) per item and unit.
        query = (
            select(stock_balances.c.item, stock_balances.c.uom)
            .add_columns(func.sum(stock_balances.c.qty).label("qty"))
            .where(stock_balances.c.site_id == site_id, stock_balances.c.item.in_(chunk))
            .group_by(stock_balances.c.item, stock_balances.c.uom)
        )
        if held:
            query = query.where(stock_balances.c.location.not_in(sorted(held)))
        for row in connection.execute(query).all():
            sums[(row.item, row.uom)] += row.qty
    return _to_base(connection, sums)


def _to_base(connection: Connection, sums: dict[tuple[str, str], Decimal]) -> dict[str, Decimal]:
    codes = sorted({item for item, _uom in sums})
    base: dict[str, str] = {}
    for chunk in _chunks(codes):
        base.update(
            connection.execute(
                select(items.c.item_code, items.c.uom).where(items.c.item_code.in_(chunk))
            ).all()
        )
    other = sorted({item for item, uom in sums if base.get(item) != uom})
    factors: dict[tuple[str, str], Decimal] = {}
    for chunk in _chunks(other):
        for row in connection.execute(
            select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
                item_units.c.item_code.in_(chunk)
            )
        ).all():
            factors[(row.item_code, row.uom)] = row.factor
    found: dict[str, Decimal] = {code: Decimal(0) for code in codes}
    for (item, uom), qty in sums.items():
        if base.get(item) == uom:
            found[item] += qty
        elif (item, uom) in factors:
            found[item] += qty * factors[(item, uom)]
    return {code: plain(qty.quantize(MICRO)) for code, qty in found.items()}


# --- the projection: levels and negative stock for what a push touched ---------------------


_READS: dict[str, Prepared] = {}
"""Per dialect name: the statement is the same for every connection of a kind."""

# What a row of the projection's one read is, in its first column (``tag``).
_HELD_BACK, _LEVEL, _HELD, _BALANCE = 0, 1, 2, 3


def _reads(connection: Connection) -> Prepared:
    """The projection's one read, built once per dialect with ``:site_id`` and ``:items``
    as parameters: building and keying the statement on every push cost a fifth of the
    projection in a realistic backlog (it holds no state, so sharing it is safe). It is
    compiled once too and run at the driver (:mod:`central_api.core.driver`): through
    ``execute`` its two constant ``IN`` lists were rendered again on every push."""
    found = _READS.get(connection.dialect.name)
    if found is None:
        found = _READS[connection.dialect.name] = prepare(
            _build_reads(connection), connection.dialect
        )
    return found


def _build_reads(connection: Connection) -> CompoundSelect[Any]:
    """The four reads the projection needs, as one ``UNION ALL`` of rows of one shape.

    They were four statements (issue 16); each execution costs a push the same fixed
    client work (SQLAlchemy's execute and result set-up, the driver's call, on PostgreSQL a
    round trip), which on a one-event push was most of the projection (issue 19). The
    rows are told apart by ``tag``; the other columns mean, per tag:

    ========== ========== ========== ========== ========== ========== ==========
    tag        s1         s2         s3         s4         s5         n1, n2
    ========== ========== ========== ========== ========== ========== ==========
    held back  location
    level      item                                                   safety, reorder
    held       kind       location   item       lot                   alert id
    balance    location   item       lot        unit       base unit  micro-units
    ========== ========== ========== ========== ========== ========== ==========

    Every filler is a typed NULL, so PostgreSQL resolves each column's type the same in
    every branch and neither driver converts anything the checks do not use.
    """
    site = bindparam("site_id", type_=String)
    text, number = null().cast(String), null().cast(BigInteger)

    def tag(value: int) -> Any:  # inline, not a parameter: the same in every push
        return literal_column(str(value), Integer).label("tag")

    held_back = select(
        tag(_HELD_BACK), locations.c.code, text, text, text, text, number, number
    ).where(locations.c.site_id == site, locations.c.kind.in_(HELD_BACK_KINDS))
    levels = select(
        tag(_LEVEL),
        item_site_levels.c.item_code,
        text,
        text,
        text,
        text,
        type_coerce(item_site_levels.c.safety_stock, BigInteger),
        type_coerce(item_site_levels.c.reorder_point, BigInteger),
    ).where(
        item_site_levels.c.site_id == site,
        one_of(connection, item_site_levels.c.item_code, "items"),
    )
    held = select(
        tag(_HELD),
        alerts.c.kind,
        alerts.c.location,
        alerts.c.item_code,
        alerts.c.lot,
        text,
        cast(alerts.c.alert_id, BigInteger),
        number,
    ).where(
        alerts.c.site_id == site,
        one_of(connection, alerts.c.item_code, "items"),
        alerts.c.kind.in_((*LEVEL_KINDS, AlertKind.NEGATIVE_STOCK.value)),
        alerts.c.source == STOCK,
        alerts.c.cleared_at.is_(None),
    )
    balances = (
        select(
            tag(_BALANCE),
            stock_balances.c.location,
            stock_balances.c.item,
            stock_balances.c.lot,
            stock_balances.c.uom,
            items.c.uom,
            type_coerce(stock_balances.c.qty, BigInteger),
            number,
        )
        .outerjoin(items, items.c.item_code == stock_balances.c.item)
        .where(
            stock_balances.c.site_id == site,
            one_of(connection, stock_balances.c.item, "items"),
        )
    )
    return union_all(held_back, levels, held, balances)


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """Raise and clear level and negative-stock alerts for the pairs these events touched;
    mirror new exceptions when the events named a purchase or transfer order.

    One read for the whole push, whatever its size (:func:`_build_reads`): the touched
    items' balances (with their base unit, quantities kept as raw micro-units so nothing is
    converted that is not needed), their levels (micro-units too), their uncleared stock
    alerts, and the site's held-back locations. Nothing is cached between pushes: several
    central processes may change levels and alerts, and an indexed read costs less than
    keeping a copy right."""
    site_id, at = accepted.site_id, accepted.received_at
    events = accepted.events
    # Comprehensions, and as few passes over every event as can be: they are the part of
    # the projection that grows with the push (keys and items are far fewer than events).
    keys = {
        (event.location, event.item, event.lot or NO_LOT): event.occurred_at for event in events
    }
    last_at: dict[str, datetime] = {}  # per item: the latest edge time among its keys' events
    for (_location, item, _lot), moved in keys.items():
        if item not in last_at or moved > last_at[item]:
            last_at[item] = moved
    documents = not {event.doc_type for event in events}.isdisjoint(
        ("purchase_order", "transfer_order")
    )
    touched = sorted(last_at)
    # The touched items as one parameter (an array, or JSON on SQLite): the same statement
    # on every push, so neither SQLAlchemy nor the driver renders or parses 300 placeholders.
    among = {"site_id": site_id, "items": list_param(connection, touched)}
    held_back: set[str] = set()
    levels: dict[str, _Level] = {}
    held: dict[tuple[str, str, str, str], int] = {}
    balances: list[tuple[str, str, str, str, str | None, int]] = []
    # Rows unpacked by position: what each column means depends on the tag.
    for row in driver.rows(connection, _reads(connection), among):
        tag, s1, s2, s3, s4, s5, n1, n2 = row
        if tag == _BALANCE:
            balances.append((s1, s2, s3, s4, s5, n1))
        elif tag == _HELD:
            held[(s1, s2, s3, s4)] = n1
        elif tag == _LEVEL:
            levels[s1] = _Level(n1, n2)
        else:
            held_back.add(s1)
    available: dict[tuple[str, str], int] = defaultdict(int)
    base: dict[str, str | None] = {}
    negative: dict[str, list[tuple[str, str, str, int]]] = defaultdict(list)
    for location, item, lot, uom, base_uom, micro in balances:
        base[item] = base_uom
        if micro < 0:
            negative[item].append((location, lot, uom, micro))
        if location not in held_back:
            available[(item, uom)] += micro
    _levels(connection, site_id, levels, held, available, base, last_at, at)
    _negative(connection, site_id, touched, negative, held, base, keys, at)
    if documents:
        mirror_exceptions(connection, at)


class _Level(NamedTuple):
    """An item's levels at the site, in micro-units."""

    safety: int
    reorder: int


def _on_hand(
    connection: Connection,
    wanted: Iterable[str],
    available: dict[tuple[str, str], int],
    base: dict[str, str | None],
) -> dict[str, int]:
    """Available micro-units per (item, unit) → base-unit micro-units for ``wanted`` items
    (a unit the item does not have is left out). Kept as integers: the level check compares
    them with the levels' micro-units, and only a raised alert needs a Decimal."""
    wanted = set(wanted)
    found: dict[str, int] = dict.fromkeys(wanted, 0)
    other: dict[tuple[str, str], int] = {}
    for (item, uom), micro in available.items():
        if item not in wanted:
            continue
        if base.get(item) == uom:
            found[item] += micro
        else:
            other[(item, uom)] = micro
    if other:
        converted: dict[str, Decimal] = defaultdict(Decimal)
        for row in connection.execute(
            select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
                item_units.c.item_code.in_(sorted({item for item, _uom in other}))
            )
        ).all():
            amount = other.get((row.item_code, row.uom))
            if amount is not None:
                converted[row.item_code] += amount * row.factor
        for item, total in converted.items():  # rounded once, half-even, as quantize does
            found[item] += int(total.to_integral_value())
    return found


def _levels(  # noqa: PLR0917 - the reads project() shares between the checks
    connection: Connection,
    site_id: str,
    levels: dict[str, _Level],
    held: dict[tuple[str, str, str, str], int],
    available: dict[tuple[str, str], int],
    base: dict[str, str | None],
    last_at: dict[str, datetime],
    at: datetime,
) -> None:
    """Levels and on-hand compared as micro-units: a Decimal only for a raised alert."""
    open_rows = {
        item: (kind, alert_id)
        for (kind, _location, item, _lot), alert_id in held.items()
        if kind in LEVEL_KINDS
    }
    if not levels and not open_rows:
        return
    on_hand = _on_hand(connection, levels, available, base)
    raised: list[dict[str, Any]] = []
    cleared: list[int] = []
    below_safety, below_reorder = AlertKind.BELOW_SAFETY.value, AlertKind.BELOW_REORDER.value
    for item in sorted(set(levels) | set(open_rows)):
        wanted: tuple[str, int] | None = None
        level = levels.get(item)
        micro = on_hand.get(item, 0)
        if level is not None:
            if micro < level.safety:
                wanted = (below_safety, level.safety)
            elif micro <= level.reorder and level.reorder > 0:
                wanted = (below_reorder, level.reorder)
        current = open_rows.get(item)
        if current is not None and (wanted is None or current[0] != wanted[0]):
            cleared.append(current[1])
            current = None
        if wanted is not None and current is None:
            kind, limit = wanted
            qty, threshold = from_micro_units(micro), from_micro_units(limit)
            below = kind == below_safety
            raised.append(
                {
                    "kind": kind,
                    "source_id": f"{site_id}/{item}",
                    "site_id": site_id,
                    "item_code": item,
                    "qty": qty,
                    "threshold": threshold,
                    "detail": f"on hand {qty} {'<' if below else '<='} "
                    f"{'safety stock' if below else 'reorder point'} {threshold}",
                    "since_at": last_at[item],
                }
            )
    _clear(connection, cleared, at)
    _raise(connection, raised, at)


def _negative(  # noqa: PLR0917 - the reads project() shares between the checks
    connection: Connection,
    site_id: str,
    touched: Sequence[str],
    negative: dict[str, list[tuple[str, str, str, int]]],
    held: dict[tuple[str, str, str, str], int],
    base: dict[str, str | None],
    keys: dict[tuple[str, str, str], datetime],
    at: datetime,
) -> None:
    """One alert per touched item with any balance below zero at the site; cleared once
    none is. All of a touched item's balances were read, so an untouched key that is still
    negative keeps the alert open. ``since_at`` is the earliest time among this push's
    events on the negative keys (None when none of them moved now: negative from before).
    The detail names the keys (not their quantities: the report has those, now)."""
    kind = AlertKind.NEGATIVE_STOCK.value
    cleared = [
        alert_id
        for item in touched
        if item not in negative and (alert_id := held.get((kind, "", item, NO_LOT))) is not None
    ]
    new = [item for item in touched if item in negative and (kind, "", item, NO_LOT) not in held]
    raised: list[dict[str, Any]] = []
    if new:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for item in new:
            for _location, _lot, uom, micro in negative[item]:
                totals[(item, uom)] += micro
        below = _on_hand(connection, new, totals, base)
        for item in new:
            balances = sorted(negative[item])
            times = [
                moved
                for location, lot, _uom, _micro in balances
                if (moved := keys.get((location, item, lot))) is not None
            ]
            places = ", ".join(
                f"{location}/{lot}" if lot else location for location, lot, *_ in balances[:10]
            )
            more = f" and {len(balances) - 10} more" if len(balances) > 10 else ""
            raised.append(
                {
                    "kind": kind,
                    "source_id": f"{site_id}/{item}",
                    "site_id": site_id,
                    "item_code": item,
                    "qty": from_micro_units(below[item]),
                    "threshold": Decimal(0),
                    "detail": f"{len(balances)} below zero: {places}{more}"[:1000],
                    "since_at": min(times) if times else None,
                }
            )
    _clear(connection, cleared, at)
    _raise(connection, raised, at)


def mirror_exceptions(connection: Connection, at: datetime) -> int:
    """Put every open purchase or transfer exception not yet in the inbox into it."""
    del at  # a mirrored row keeps the exception's own raised_at
    mirrored = 0
    purchase = purchase_exceptions.c
    rows = connection.execute(
        select(purchase_exceptions).where(
            purchase.status == "open",
            ~exists().where(
                alerts.c.source == PURCHASE_EXCEPTION,
                alerts.c.source_id == cast(purchase.exception_id, String),
            ),
        )
    ).all()
    new = [
        {
            "kind": row.kind,
            "source": PURCHASE_EXCEPTION,
            "source_id": str(row.exception_id),
            "site_id": row.site_id,
            "item_code": "",
            "qty": row.qty,
            "detail": (f"{row.po_id or ''} line {row.line_no or ''}: {row.detail}")[:1000],
            "since_at": row.raised_at,
            "raised_at": row.raised_at,
        }
        for row in rows
    ]
    transfer = transfer_exceptions.c
    rows = connection.execute(
        select(transfer_exceptions, transfer_orders.c.to_site)
        .join(transfer_orders, transfer_orders.c.transfer_id == transfer.transfer_id)
        .where(
            transfer.status == "open",
            ~exists().where(
                alerts.c.source == TRANSFER_EXCEPTION,
                alerts.c.source_id == cast(transfer.exception_id, String),
            ),
        )
    ).all()
    new += [
        {
            "kind": f"transfer_{row.kind}",
            "source": TRANSFER_EXCEPTION,
            "source_id": str(row.exception_id),
            "site_id": row.to_site,
            "item_code": row.item_code,
            "lot": row.lot,
            "qty": row.received_qty,
            "threshold": row.shipped_qty,
            "detail": f"transfer {row.transfer_id} line {row.line_no}: shipped "
            f"{row.shipped_qty}, received {row.received_qty}",
            "since_at": row.raised_at,
            "raised_at": row.raised_at,
        }
        for row in rows
    ]
    for row in new:
        _raise(connection, [row], row["raised_at"])
        mirrored += 1
    return mirrored


# --- expiry: judged by a clock ---------------------------------------------------------------


def parse_days(text: str) -> tuple[int, ...]:
    """ "30,60,90" → (30, 60, 90): distinct whole days, 1..3650, ascending."""
    try:
        days = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InvalidError(f"days: {text!r} is not a list of whole days like 30,60,90") from None
    if not days or len(days) > 5 or days[0] < 1 or days[-1] > 3650:
        raise InvalidError("days: one to five bands, each 1..3650 days")
    return tuple(days)


def _bands(connection: Connection, item_codes: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Each item's expiry bands: its category's, else the nearest ancestor's, else default."""
    parents = dict(connection.execute(select(categories.c.code, categories.c.parent_code)).all())
    configured = {
        code: parse_days(days)
        for code, days in connection.execute(
            select(expiry_alert_days.c.category_code, expiry_alert_days.c.days)
        )
    }
    found: dict[str, tuple[int, ...]] = {}
    for chunk in _chunks(item_codes):
        for code, own in connection.execute(
            select(items.c.item_code, items.c.category_code).where(items.c.item_code.in_(chunk))
        ):
            category = own
            seen: set[str] = set()
            bands = DEFAULT_EXPIRY_DAYS
            while category is not None and category not in seen:
                if category in configured:
                    bands = configured[category]
                    break
                seen.add(category)
                category = parents.get(category)
            found[code] = bands
    return found


@dataclass(frozen=True, slots=True)
class ExpiryOutcome:
    today: date
    lots: int
    raised: int
    cleared: int


def evaluate_expiry(
    connection: Connection, *, today: date, at: datetime, site_id: str | None = None
) -> ExpiryOutcome:
    """Raise, move and clear expiry alerts as of ``today``, inside the caller's write
    transaction. A lot on hand (a positive sum over the site's locations) whose expiry is
    within a band of its category gets one alert with that band as ``threshold`` (0 once
    it has expired); a lot that left, or whose band changed, has its alert cleared."""
    query = (
        select(stock_balances.c.site_id, stock_balances.c.item, stock_balances.c.lot)
        .add_columns(func.sum(stock_balances.c.qty).label("qty"))
        .where(stock_balances.c.lot != NO_LOT)
        .group_by(stock_balances.c.site_id, stock_balances.c.item, stock_balances.c.lot)
    )
    if site_id is not None:
        query = query.where(stock_balances.c.site_id == site_id)
    on_hand = {
        (row.site_id, row.item, row.lot): row.qty
        for row in connection.execute(query).all()
        if row.qty > 0
    }
    union = ledger_union("item", "lot", "expiry").subquery()
    expiries: dict[tuple[str, str], date] = {}
    item_codes = sorted({item for _site, item, _lot in on_hand})
    for chunk in _chunks(item_codes):
        for item, lot, expiry in connection.execute(
            select(union.c.item, union.c.lot, func.min(union.c.expiry))
            .where(union.c.item.in_(chunk), union.c.expiry.is_not(None))
            .group_by(union.c.item, union.c.lot)
        ):
            expiries[(item, lot)] = expiry
    bands = _bands(connection, item_codes)
    wanted: dict[tuple[str, str, str], tuple[int, date, Decimal]] = {}
    for key, qty in on_hand.items():
        expiry = expiries.get((key[1], key[2]))
        if expiry is None:
            continue
        left = (expiry - today).days
        if left <= 0:
            wanted[key] = (0, expiry, qty)
            continue
        band = next((days for days in bands.get(key[1], DEFAULT_EXPIRY_DAYS) if left <= days), None)
        if band is not None:
            wanted[key] = (band, expiry, qty)
    held_query = select(
        alerts.c.alert_id, alerts.c.site_id, alerts.c.item_code, alerts.c.lot, alerts.c.threshold
    ).where(
        alerts.c.kind == AlertKind.EXPIRY.value,
        alerts.c.source == STOCK,
        alerts.c.cleared_at.is_(None),
    )
    if site_id is not None:
        held_query = held_query.where(alerts.c.site_id == site_id)
    held = {
        (row.site_id, row.item_code, row.lot): row for row in connection.execute(held_query).all()
    }
    cleared = [
        row.alert_id
        for key, row in held.items()
        if key not in wanted or Decimal(wanted[key][0]) != row.threshold
    ]
    raised = [
        {
            "kind": AlertKind.EXPIRY.value,
            "source_id": f"{key[0]}/{key[1]}/{key[2]}",
            "site_id": key[0],
            "item_code": key[1],
            "lot": key[2],
            "qty": qty,
            "threshold": Decimal(band),
            "detail": f"lot {key[2]} expires {expiry.isoformat()}"
            + (" (expired)" if band == 0 else f" (within {band} days)"),
            "since_at": None,
        }
        for key, (band, expiry, qty) in sorted(wanted.items())
        if key not in held or Decimal(band) != held[key].threshold
    ]
    _clear(connection, cleared, at)
    _raise(connection, raised, at)
    return ExpiryOutcome(today=today, lots=len(on_hand), raised=len(raised), cleared=len(cleared))


def run_expiry_evaluation(
    connection: Connection,
    *,
    today: date,
    site_id: str | None,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> ExpiryOutcome:
    """:func:`evaluate_expiry` as a command: one transaction, idempotent, audited."""
    conditions = site_conditions(stock_balances.c.site_id, site_id, visible)
    del conditions  # only the 403 for a site outside the caller's scope
    if site_id is None and visible is not None:
        raise InvalidError("site_id: give one of your sites (you are limited to some)")
    with document_write(connection, action="alert.evaluate_expiry", audit=audit, claim=claim) as w:
        outcome = evaluate_expiry(connection, today=today, at=w.now, site_id=site_id)
        w.doc_id = f"{today.isoformat()}/{site_id or '*'}"
        w.site_id = site_id
        w.after = {"lots": outcome.lots, "raised": outcome.raised, "cleared": outcome.cleared}
    return outcome


# --- the inbox --------------------------------------------------------------------------------


def list_alerts(
    connection: Connection,
    *,
    status: str | None,
    kind: str | None,
    site_id: str | None,
    owner: str | None,
    visible: frozenset[str] | None,
    after: int | None,
    limit: int,
) -> tuple[list[Alert], int | None]:
    """A page of the inbox, oldest first; mirrored exceptions read through their source."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidError(f"limit: must be within 1..{MAX_PAGE}")
    conditions = site_conditions(alerts.c.site_id, site_id, visible)
    if status is not None:
        conditions.append(alerts.c.status == status)
    if kind is not None:
        conditions.append(alerts.c.kind == kind)
    if owner is not None:
        conditions.append(alerts.c.owner == owner)
    if after is not None:
        conditions.append(alerts.c.alert_id > after)
    with read_snapshot(connection):
        rows = connection.execute(
            select(alerts).where(*conditions).order_by(alerts.c.alert_id).limit(limit + 1)
        ).all()
        found = _read_through(connection, [_alert(row) for row in rows[:limit]])
    more = len(rows) > limit
    return found, (found[-1].alert_id if more and found else None)


def _read_through(connection: Connection, found: list[Alert]) -> list[Alert]:
    """A mirrored exception resolved at its own route shows as resolved here too."""
    wanted = {
        source: [int(a.source_id) for a in found if a.source == source and a.status == "open"]
        for source in (PURCHASE_EXCEPTION, TRANSFER_EXCEPTION)
    }
    resolved: dict[tuple[str, str], Any] = {}
    for source, table in (
        (PURCHASE_EXCEPTION, purchase_exceptions),
        (TRANSFER_EXCEPTION, transfer_exceptions),
    ):
        if wanted[source]:
            for row in connection.execute(
                select(
                    table.c.exception_id,
                    table.c.resolution,
                    table.c.resolved_by,
                    table.c.resolved_at,
                ).where(table.c.exception_id.in_(wanted[source]), table.c.status == "resolved")
            ).all():
                resolved[(source, str(row.exception_id))] = row
    if not resolved:
        return found
    out: list[Alert] = []
    for alert in found:
        origin = resolved.get((alert.source, alert.source_id))
        if origin is None:
            out.append(alert)
            continue
        out.append(
            replace(
                alert,
                status=AlertStatus.RESOLVED.value,
                resolution=origin.resolution,
                resolved_by=origin.resolved_by,
                resolved_at=utc(origin.resolved_at),
            )
        )
    return out


def get_alert(connection: Connection, alert_id: int, *, visible: frozenset[str] | None) -> Alert:
    with read_snapshot(connection):
        row = connection.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one_or_none()
        if row is None or (visible is not None and row.site_id not in visible):
            raise UnknownDocumentError("alert", str(alert_id))
        return _read_through(connection, [_alert(row)])[0]


def _locked(
    connection: Connection, alert_id: int, visible: frozenset[str] | None, if_match: str | None
) -> Any:
    row = connection.execute(
        select(alerts).where(alerts.c.alert_id == alert_id).with_for_update()
    ).one_or_none()
    if row is None or (visible is not None and row.site_id not in visible):
        raise UnknownDocumentError("alert", str(alert_id))
    check_version("alert", str(alert_id), row.version, if_match)
    return row


def assign_alert(
    connection: Connection,
    alert_id: int,
    *,
    owner: str | None,
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Alert:
    """Give the alert an owner (None: nobody). A resolved alert keeps the owner it had."""
    with document_write(connection, action="alert.assign", audit=audit, claim=claim) as written:
        row = _locked(connection, alert_id, visible, if_match)
        if row.status == AlertStatus.RESOLVED.value:
            raise ConflictError(f"alert {alert_id} is resolved already")
        if owner is not None and (
            connection.execute(
                select(users.c.disabled).where(users.c.username == owner)
            ).scalar_one_or_none()
            in (None, True)
        ):
            raise InvalidError(f"owner: no active user {owner!r}")
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert_id)
            .values(owner=owner, version=row.version + 1, updated_at=written.now)
        )
        written.doc_id, written.site_id = str(alert_id), row.site_id
        written.before, written.after = {"owner": row.owner}, {"owner": owner}
    return get_alert(connection, alert_id, visible=visible)


def resolve_alert(
    connection: Connection,
    alert_id: int,
    *,
    resolution: str,
    actor: str,
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> Alert:
    """Close the alert with what the person did. A mirrored exception is resolved at its
    source too, in the same transaction (a transfer short is *not* booked as lost here:
    that decision moves stock and stays on the transfer exception's own route)."""
    with document_write(connection, action="alert.resolve", audit=audit, claim=claim) as written:
        row = _locked(connection, alert_id, visible, if_match)
        if row.status == AlertStatus.RESOLVED.value:
            raise ConflictError(f"alert {alert_id} is resolved already")
        now = written.now
        for source, table in (
            (PURCHASE_EXCEPTION, purchase_exceptions),
            (TRANSFER_EXCEPTION, transfer_exceptions),
        ):
            if row.source == source:
                connection.execute(
                    update(table)
                    .where(
                        and_(table.c.exception_id == int(row.source_id), table.c.status == "open")
                    )
                    .values(
                        status="resolved", resolved_by=actor, resolved_at=now, resolution=resolution
                    )
                )
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert_id)
            .values(
                status=AlertStatus.RESOLVED.value,
                resolution=resolution,
                resolved_by=actor,
                resolved_at=now,
                owner=func.coalesce(alerts.c.owner, actor),
                version=row.version + 1,
                updated_at=now,
            )
        )
        written.doc_id, written.site_id = str(alert_id), row.site_id
        written.before = {"status": row.status}
        written.after = {"status": AlertStatus.RESOLVED.value, "resolution": resolution}
    return get_alert(connection, alert_id, visible=visible)


# --- the negative-stock report ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegativeBalance:
    site_id: str
    location: str
    item_code: str
    lot: str
    qty: Decimal
    uom: str
    since: datetime | None
    alert_id: int | None


def negative_stock(
    connection: Connection, *, site_id: str | None, visible: frozenset[str] | None
) -> list[NegativeBalance]:
    """Every balance below zero now, with the time its item's open alert says the item
    went negative at the site (at the edge) and that alert's id: the alert is per (site,
    item), the balances listed here per key are read now. ``since`` is None for an item
    negative from before alerts existed (or whose negative balances no push has moved
    since)."""
    balance = stock_balances.c
    since = (
        select(alerts.c.alert_id, alerts.c.since_at, alerts.c.site_id, alerts.c.item_code)
        .where(
            alerts.c.kind == AlertKind.NEGATIVE_STOCK.value,
            alerts.c.source == STOCK,
            alerts.c.cleared_at.is_(None),
        )
        .subquery()
    )
    query = (
        select(
            balance.site_id,
            balance.location,
            balance.item,
            balance.lot,
            balance.qty,
            balance.uom,
            since.c.since_at,
            since.c.alert_id,
        )
        .outerjoin(
            since,
            and_(
                since.c.site_id == balance.site_id,
                since.c.item_code == balance.item,
            ),
        )
        .where(balance.qty < 0, *site_conditions(balance.site_id, site_id, visible))
        .order_by(balance.site_id, balance.item, balance.location, balance.lot)
        .limit(5000)
    )
    with read_snapshot(connection):
        return [
            NegativeBalance(
                site_id=row.site_id,
                location=row.location,
                item_code=row.item,
                lot=row.lot,
                qty=row.qty,
                uom=row.uom,
                since=utc(row.since_at),
                alert_id=row.alert_id,
            )
            for row in connection.execute(query).all()
        ]


# --- short picks reported by an edge's picking station ------------------------------------------

EDGE_PICK = "edge_pick"
SHORT_PICK = "short_pick"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShortPicks:
    raised: int
    known: int
    dropped: int


def _short_detail(short: PickShort) -> str:
    return (
        f"{short.so_id} line {short.so_line}: picked {plain(short.picked)} of "
        f"{plain(short.wanted)} {short.uom} at the site; the rest stays reserved (reserve "
        "again, ship later or close the order short)"
    )[:1000]


def raise_short_picks(
    connection: Connection, site_id: str, shorts: Sequence[PickShort], *, at: datetime
) -> ShortPicks:
    """One ``short_pick`` alert per short an edge reports (``source_id`` its ``short_id``,
    so a resend raises nothing), in the inbox with an owner and a resolution like every
    exception, and on the order's page (:func:`short_picks_of`). A short naming an order
    or line central does not have for the site is dropped and logged (device garbage)."""
    with write_transaction(connection):
        known = set(
            connection.execute(
                select(alerts.c.source_id).where(
                    alerts.c.source == EDGE_PICK,
                    alerts.c.source_id.in_([short.short_id for short in shorts]),
                )
            ).scalars()
        )
        lines = {
            (row.so_id, row.line_no)
            for row in connection.execute(
                select(sales_order_lines.c.so_id, sales_order_lines.c.line_no)
                .join(sales_orders, sales_orders.c.so_id == sales_order_lines.c.so_id)
                .where(
                    sales_orders.c.site_id == site_id,
                    sales_orders.c.so_id.in_({short.so_id for short in shorts}),
                )
            ).all()
        }
        new, dropped = [], 0
        for short in shorts:
            if short.short_id in known:
                continue
            if (short.so_id, short.so_line) not in lines:
                dropped += 1
                continue
            known.add(short.short_id)
            new.append(
                {
                    "kind": SHORT_PICK,
                    "source": EDGE_PICK,
                    "source_id": short.short_id,
                    "site_id": site_id,
                    "item_code": short.item,
                    "qty": short.picked,
                    "threshold": short.wanted,
                    "detail": _short_detail(short),
                    "since_at": short.reported_at,
                }
            )
        _raise(connection, new, at)
    if dropped:
        _log.error(
            "short picks naming no order line of the site were dropped",
            extra={"site": site_id, "dropped": dropped},
        )
    return ShortPicks(raised=len(new), known=len(shorts) - len(new) - dropped, dropped=dropped)


def short_picks_of(
    connection: Connection, so_id: str, *, visible: frozenset[str] | None
) -> list[Alert]:
    """The short picks reported for an order, oldest first (the order's page shows them)."""
    conditions = [
        alerts.c.source == EDGE_PICK,
        alerts.c.detail.startswith(f"{so_id} line ", autoescape=True),
        *site_conditions(alerts.c.site_id, None, visible),
    ]
    with read_snapshot(connection):
        rows = connection.execute(
            select(alerts).where(*conditions).order_by(alerts.c.alert_id)
        ).all()
    return [_alert(row) for row in rows]
