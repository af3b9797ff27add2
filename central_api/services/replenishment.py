"""Replenishment (补货): planning parameters per site and item, suggested purchase orders
from a demand forecast, and turning a supplier's suggestion into a draft PO.

* **Parameters.** Safety stock, reorder point and reorder quantity live in
  ``item_site_levels`` (the edge gets them through the change feed, as the item routes
  set them); lead time and preferred supplier in ``item_site_supply`` (central only). One
  write sets any number of items of one site in one transaction, with one audit entry
  holding every row before and after.
* **Effective supplier and lead time.** The supplier set here; else the supplier of the
  item's most recent purchase order (the nearest thing to supplier master data the items
  have); else none (the suggestion is listed under "no supplier" and cannot become a PO).
  The lead time set here; else the supplier's (``partners.lead_time_days``); else
  :data:`DEFAULT_LEAD_TIME_DAYS`.
* **Suggestion** for an item with levels at a site (``docs/replenishment.md``)::

      position = on hand (available) + still expected on open POs (draft included)
      demand   = forecast demand over the lead time (services.forecast)
      target   = max(reorder point, safety stock + demand)
      order when position <= reorder point or position < safety stock + demand:
          qty = max(reorder qty, ceil(target - position))

  so the order, once it arrives, still covers the lead time's demand above safety stock.
* **Draft PO**: :func:`make_draft_po` computes the site's suggestions for one supplier
  and creates a draft through :func:`central_api.services.purchasing.create_purchase_order`
  (same checks, numbering, audit entry and idempotency as a PO made by hand).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.items import items
from central_api.models.ledger import central_events, ledger_events
from central_api.models.master import categories, item_site_levels, item_units, partners
from central_api.models.purchasing import purchase_order_lines, purchase_orders
from central_api.models.replenishment import expiry_alert_days, item_site_supply
from central_api.services import categories as categories_service
from central_api.services import idempotency, purchasing
from central_api.services.alerts import parse_days, site_on_hand
from central_api.services.audit import AuditContext
from central_api.services.documents import check_site, document_write, site_conditions, utc
from central_api.services.feed import feed_writer, read_snapshot
from central_api.services.forecast import Forecast, forecast
from central_api.services.idempotency import IdempotencyClaim
from jxc.contract import EventKind
from jxc.feed import ChangeOp, FeedEntity, ItemSiteData

DEFAULT_LEAD_TIME_DAYS = 7
HISTORY_DAYS = 84
"""Twelve weeks of sales history: enough for the weekly check (four weeks at least)."""
MAX_ROWS = 500
OPEN_PO = ("draft", "approved", "sent", "partly_received")
NO_SUPPLIER = ""


@dataclass(frozen=True, slots=True)
class ParamsInput:
    item_code: str
    safety_stock: Decimal
    reorder_point: Decimal
    reorder_qty: Decimal
    lead_time_days: int | None = None
    supplier_code: str | None = None


@dataclass(frozen=True, slots=True)
class Params:
    site_id: str
    item_code: str
    safety_stock: Decimal
    reorder_point: Decimal
    reorder_qty: Decimal
    lead_time_days: int | None
    supplier_code: str | None
    updated_at: datetime


def _params_query(site_id: str) -> Any:
    return (
        select(
            item_site_levels.c.site_id,
            item_site_levels.c.item_code,
            item_site_levels.c.safety_stock,
            item_site_levels.c.reorder_point,
            item_site_levels.c.reorder_qty,
            item_site_levels.c.updated_at,
            item_site_supply.c.lead_time_days,
            item_site_supply.c.supplier_code,
            item_site_supply.c.updated_at.label("supply_at"),
        )
        .outerjoin(
            item_site_supply,
            (item_site_supply.c.site_id == item_site_levels.c.site_id)
            & (item_site_supply.c.item_code == item_site_levels.c.item_code),
        )
        .where(item_site_levels.c.site_id == site_id)
        .order_by(item_site_levels.c.item_code)
    )


def _params(row: Any) -> Params:
    at = utc(row.updated_at) or row.updated_at
    supply_at = utc(row.supply_at)
    return Params(
        site_id=row.site_id,
        item_code=row.item_code,
        safety_stock=row.safety_stock,
        reorder_point=row.reorder_point,
        reorder_qty=row.reorder_qty,
        lead_time_days=row.lead_time_days,
        supplier_code=row.supplier_code,
        updated_at=max(at, supply_at) if supply_at is not None else at,
    )


def list_params(
    connection: Connection,
    *,
    site_id: str,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[Params], str | None]:
    """The site's planning parameters in item code order, a page after ``after``."""
    site_conditions(item_site_levels.c.site_id, site_id, visible)  # 403 outside the scope
    if not 1 <= limit <= MAX_ROWS:
        raise InvalidError(f"limit: must be within 1..{MAX_ROWS}")
    query = _params_query(site_id).limit(limit + 1)
    if after is not None:
        query = query.where(item_site_levels.c.item_code > after)
    with read_snapshot(connection):
        rows = connection.execute(query).all()
    found = [_params(row) for row in rows[:limit]]
    return found, (found[-1].item_code if len(rows) > limit and found else None)


def _state(found: Params | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "safety_stock": found.safety_stock,
        "reorder_point": found.reorder_point,
        "reorder_qty": found.reorder_qty,
        "lead_time_days": found.lead_time_days,
        "supplier_code": found.supplier_code,
    }


def _check_rows(connection: Connection, rows: Sequence[ParamsInput]) -> None:
    if not 1 <= len(rows) <= MAX_ROWS:
        raise InvalidError(f"rows: between 1 and {MAX_ROWS} items per request")
    seen: set[str] = set()
    for index, row in enumerate(rows):
        where = f"rows[{index}]"
        if row.item_code in seen:
            raise InvalidError(f"{where}.item_code: {row.item_code!r} is given twice")
        seen.add(row.item_code)
        for name in ("safety_stock", "reorder_point", "reorder_qty"):
            if getattr(row, name) < 0:
                raise InvalidError(f"{where}.{name}: must not be negative")
        if row.reorder_point < row.safety_stock:
            raise InvalidError(
                f"{where}.reorder_point: {row.reorder_point} is below safety_stock "
                f"{row.safety_stock}; reordering must start before stock is below safety"
            )
    codes = sorted(seen)
    known = set(
        connection.execute(select(items.c.item_code).where(items.c.item_code.in_(codes))).scalars()
    )
    for index, row in enumerate(rows):
        if row.item_code not in known:
            raise InvalidError(f"rows[{index}].item_code: no item {row.item_code!r}")
    suppliers = sorted({row.supplier_code for row in rows if row.supplier_code})
    found = {
        row.code: row
        for row in connection.execute(
            select(partners.c.code, partners.c.is_supplier, partners.c.active).where(
                partners.c.code.in_(suppliers)
            )
        ).all()
    }
    for index, row in enumerate(rows):
        if row.supplier_code:
            partner = found.get(row.supplier_code)
            if partner is None or not partner.is_supplier or not partner.active:
                raise InvalidError(
                    f"rows[{index}].supplier_code: {row.supplier_code!r} is not an active supplier"
                )


def set_params(
    connection: Connection,
    *,
    site_id: str,
    rows: Sequence[ParamsInput],
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> list[Params]:
    """Set the planning parameters of ``rows`` at ``site_id`` at once (all or none). The
    levels an edge uses go out through the change feed when they changed."""
    with document_write(
        connection, action="replenishment.set_params", audit=audit, claim=claim
    ) as written:
        with feed_writer(connection, changed_at=written.now) as feed:
            check_site(connection, site_id, visible)
            _check_rows(connection, rows)
            codes = sorted(row.item_code for row in rows)
            stored = {
                found.item_code: found
                for found in (
                    _params(row)
                    for row in connection.execute(
                        _params_query(site_id).where(item_site_levels.c.item_code.in_(codes))
                    ).all()
                )
            }
            supply_held = set(
                connection.execute(
                    select(item_site_supply.c.item_code).where(
                        item_site_supply.c.site_id == site_id,
                        item_site_supply.c.item_code.in_(codes),
                    )
                ).scalars()
            )
            for row in rows:
                _write_row(
                    connection,
                    feed,
                    site_id,
                    row=row,
                    stored=stored.get(row.item_code),
                    now=written.now,
                )
                supply = {
                    "lead_time_days": row.lead_time_days,
                    "supplier_code": row.supplier_code or None,
                    "updated_at": written.now,
                }
                if row.item_code in supply_held:
                    connection.execute(
                        update(item_site_supply)
                        .where(
                            item_site_supply.c.site_id == site_id,
                            item_site_supply.c.item_code == row.item_code,
                        )
                        .values(**supply)
                    )
                else:
                    connection.execute(
                        insert(item_site_supply).values(
                            site_id=site_id, item_code=row.item_code, **supply
                        )
                    )
        after = {
            found.item_code: found
            for found in (
                _params(row)
                for row in connection.execute(
                    _params_query(site_id).where(item_site_levels.c.item_code.in_(codes))
                ).all()
            )
        }
        written.doc_id, written.site_id = site_id, site_id
        written.before = {code: _state(stored.get(code)) for code in codes}
        written.after = {code: _state(after.get(code)) for code in codes}
    return [after[code] for code in codes]


def _write_row(
    connection: Connection,
    feed: Any,
    site_id: str,
    *,
    row: ParamsInput,
    stored: Params | None,
    now: datetime,
) -> None:
    wanted = (row.safety_stock, row.reorder_point, row.reorder_qty)
    if stored is not None and (
        (stored.safety_stock, stored.reorder_point, stored.reorder_qty) == wanted
    ):
        return
    data = ItemSiteData(
        item_code=row.item_code,
        safety_stock=row.safety_stock,
        reorder_point=row.reorder_point,
        reorder_qty=row.reorder_qty,
    )
    version = feed.append(
        entity=FeedEntity.ITEM_SITE,
        key=row.item_code,
        op=ChangeOp.UPSERT,
        data=data.model_dump(mode="json"),
        site_id=site_id,
    )
    values = {
        "safety_stock": row.safety_stock,
        "reorder_point": row.reorder_point,
        "reorder_qty": row.reorder_qty,
        "version": version,
        "updated_at": now,
    }
    if stored is None:
        connection.execute(
            insert(item_site_levels).values(site_id=site_id, item_code=row.item_code, **values)
        )
    else:
        connection.execute(
            update(item_site_levels)
            .where(
                item_site_levels.c.site_id == site_id,
                item_site_levels.c.item_code == row.item_code,
            )
            .values(**values)
        )


# --- expiry bands per category -----------------------------------------------------------------


def set_expiry_days(
    connection: Connection,
    *,
    category_code: str,
    days: str,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> tuple[int, ...]:
    """Set a category's expiry alert bands ("15,30,60"); its subcategories inherit them.
    The category goes to every site again with them (the edges' own expiry alerts)."""
    bands = parse_days(days)
    text = ",".join(str(day) for day in bands)
    with (
        document_write(
            connection, action="replenishment.set_expiry_days", audit=audit, claim=claim
        ) as written,
        feed_writer(connection, changed_at=written.now) as writer,
    ):
        if (
            connection.execute(
                select(categories.c.code).where(categories.c.code == category_code)
            ).scalar_one_or_none()
            is None
        ):
            raise InvalidError(f"category_code: no category {category_code!r}")
        held = connection.execute(
            select(expiry_alert_days.c.days).where(
                expiry_alert_days.c.category_code == category_code
            )
        ).scalar_one_or_none()
        if held is None:
            connection.execute(
                insert(expiry_alert_days).values(
                    category_code=category_code, days=text, updated_at=written.now
                )
            )
        else:
            connection.execute(
                update(expiry_alert_days)
                .where(expiry_alert_days.c.category_code == category_code)
                .values(days=text, updated_at=written.now)
            )
        categories_service.publish(writer, connection, category_code)  # the sites' bands
        written.doc_id = category_code
        written.before, written.after = {"days": held}, {"days": text}
    return bands


def list_expiry_days(connection: Connection) -> list[tuple[str, tuple[int, ...]]]:
    """The categories with bands of their own (the rest inherit, or use 30/60/90)."""
    with read_snapshot(connection):
        rows = connection.execute(
            select(expiry_alert_days.c.category_code, expiry_alert_days.c.days).order_by(
                expiry_alert_days.c.category_code
            )
        ).all()
    return [(row.category_code, parse_days(row.days)) for row in rows]


# --- demand history and suggestions ------------------------------------------------------------


def daily_demand(
    connection: Connection, site_id: str, item_codes: Sequence[str], *, today: date, days: int
) -> dict[str, list[Decimal]]:
    """Units sold per day (base unit) for the ``days`` days before ``today``, oldest first:
    ``sale`` events and ``issue`` events that ship a sales order, edge and central."""
    first = today - timedelta(days=days)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(today.year, today.month, today.day, tzinfo=UTC)
    units = _factors(connection, item_codes)
    series = {code: [Decimal(0)] * days for code in item_codes}
    for table in (ledger_events, central_events):
        sold = (table.c.kind == EventKind.SALE.value) | (
            (table.c.kind == EventKind.ISSUE.value) & (table.c.doc_type == "sales_order")
        )
        for chunk_start in range(0, len(item_codes), 500):
            chunk = list(item_codes[chunk_start : chunk_start + 500])
            query = select(table.c.item, table.c.uom, table.c.occurred_at, table.c.qty).where(
                table.c.site_id == site_id,
                table.c.item.in_(chunk),
                table.c.occurred_at >= start,
                table.c.occurred_at < end,
                sold,
            )
            for row in connection.execute(query).all():
                factor = units.get((row.item, row.uom))
                if factor is None:
                    continue
                occurred = utc(row.occurred_at) or row.occurred_at
                offset = (occurred.date() - first).days
                if 0 <= offset < days:
                    series[row.item][offset] += -row.qty * factor
    return series


def _factors(connection: Connection, item_codes: Sequence[str]) -> dict[tuple[str, str], Decimal]:
    found: dict[tuple[str, str], Decimal] = {}
    for start in range(0, len(item_codes), 500):
        chunk = list(item_codes[start : start + 500])
        for code, uom in connection.execute(
            select(items.c.item_code, items.c.uom).where(items.c.item_code.in_(chunk))
        ):
            found[(code, uom)] = Decimal(1)
        for code, uom, factor in connection.execute(
            select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
                item_units.c.item_code.in_(chunk)
            )
        ):
            found[(code, uom)] = factor
    return found


@dataclass(frozen=True, slots=True)
class Suggestion:
    site_id: str
    item_code: str
    item_name: str
    uom: str
    supplier_code: str
    supplier_source: str
    """``set`` (planning parameters), ``last_po`` (the item's latest PO) or ``none``."""
    lead_time_days: int
    on_hand: Decimal
    on_order: Decimal
    position: Decimal
    safety_stock: Decimal
    reorder_point: Decimal
    reorder_qty: Decimal
    lead_time_demand: Decimal
    target: Decimal
    qty: Decimal
    seasonal: bool
    daily_forecast: Decimal
    """Mean forecast per day over the lead time."""


@dataclass(frozen=True, slots=True)
class SupplierGroup:
    site_id: str
    supplier_code: str
    supplier_name: str
    lines: list[Suggestion]


def _on_order(connection: Connection, site_id: str, codes: Sequence[str]) -> dict[str, Decimal]:
    line = purchase_order_lines.c
    found: dict[str, Decimal] = defaultdict(Decimal)
    for start in range(0, len(codes), 500):
        chunk = list(codes[start : start + 500])
        for row in connection.execute(
            select(line.item_code, line.base_qty, line.received_qty)
            .join(purchase_orders, purchase_orders.c.po_id == line.po_id)
            .where(
                purchase_orders.c.site_id == site_id,
                purchase_orders.c.status.in_(OPEN_PO),
                line.item_code.in_(chunk),
            )
        ).all():
            found[row.item_code] += max(row.base_qty - row.received_qty, Decimal(0))
    return found


def _last_suppliers(connection: Connection, codes: Sequence[str]) -> dict[str, str]:
    """The supplier of each item's most recently created purchase order, any site."""
    line = purchase_order_lines.c
    found: dict[str, str] = {}
    for start in range(0, len(codes), 500):
        chunk = list(codes[start : start + 500])
        latest = (
            select(line.item_code, func.max(purchase_orders.c.po_id).label("po_id"))
            .join(purchase_orders, purchase_orders.c.po_id == line.po_id)
            .where(line.item_code.in_(chunk), purchase_orders.c.status != "cancelled")
            .group_by(line.item_code)
            .subquery()
        )
        for code, supplier in connection.execute(
            select(latest.c.item_code, purchase_orders.c.supplier_code).join(
                purchase_orders, purchase_orders.c.po_id == latest.c.po_id
            )
        ):
            found[code] = supplier
    return found


def suggest(connection: Connection, *, site_id: str, today: date) -> list[Suggestion]:
    """Every item of the site with levels whose inventory position is at or below target."""
    with read_snapshot(connection):
        params = [_params(row) for row in connection.execute(_params_query(site_id)).all()]
        if not params:
            return []
        codes = [found.item_code for found in params]
        on_hand = site_on_hand(connection, site_id, codes)
        on_order = _on_order(connection, site_id, codes)
        last = _last_suppliers(connection, [p.item_code for p in params if not p.supplier_code])
        suppliers = {found.supplier_code or last.get(found.item_code) for found in params}
        lead_times = dict(
            connection.execute(
                select(partners.c.code, partners.c.lead_time_days).where(
                    partners.c.code.in_(sorted(code for code in suppliers if code))
                )
            ).all()
        )
        names = {
            code: (name, uom)
            for code, name, uom in connection.execute(
                select(items.c.item_code, items.c.name, items.c.uom).where(
                    items.c.item_code.in_(codes)
                )
            )
        }
        history = daily_demand(connection, site_id, codes, today=today, days=HISTORY_DAYS)
    first_day = today - timedelta(days=HISTORY_DAYS)
    found: list[Suggestion] = []
    for each in params:
        supplier = each.supplier_code or last.get(each.item_code) or NO_SUPPLIER
        source = "set" if each.supplier_code else ("last_po" if supplier else "none")
        lead = each.lead_time_days
        if lead is None:
            lead = lead_times.get(supplier) or DEFAULT_LEAD_TIME_DAYS
        series = history[each.item_code]
        # History starts at the item's first sale in the window: the days before it are
        # not "sold nothing" but "was not sold here yet".
        start = next((day for day, qty in enumerate(series) if qty), len(series))
        made: Forecast = forecast(series[start:], first_day + timedelta(days=start), lead)
        demand = made.total
        position = on_hand.get(each.item_code, Decimal(0)) + on_order.get(each.item_code, 0)
        target = max(each.reorder_point, each.safety_stock + demand)
        if position > each.reorder_point and position >= each.safety_stock + demand:
            continue
        qty = max(each.reorder_qty, (target - position).to_integral_value(ROUND_CEILING))
        if qty <= 0:
            continue
        name, uom = names.get(each.item_code, ("", ""))
        found.append(
            Suggestion(
                site_id=site_id,
                item_code=each.item_code,
                item_name=name,
                uom=uom,
                supplier_code=supplier,
                supplier_source=source,
                lead_time_days=lead,
                on_hand=on_hand.get(each.item_code, Decimal(0)),
                on_order=on_order.get(each.item_code, Decimal(0)),
                position=position,
                safety_stock=each.safety_stock,
                reorder_point=each.reorder_point,
                reorder_qty=each.reorder_qty,
                lead_time_demand=demand.quantize(Decimal("0.01")),
                target=target.quantize(Decimal("0.01")),
                qty=qty,
                seasonal=made.seasonal,
                daily_forecast=(demand / lead if lead else Decimal(0)).quantize(Decimal("0.01")),
            )
        )
    return found


def suggestions_by_supplier(
    connection: Connection,
    *,
    site_id: str,
    visible: frozenset[str] | None,
    today: date,
) -> list[SupplierGroup]:
    """The site's suggestions grouped by supplier (no supplier last)."""
    site_conditions(item_site_levels.c.site_id, site_id, visible)  # 403 outside the scope
    found = suggest(connection, site_id=site_id, today=today)
    groups: dict[str, list[Suggestion]] = defaultdict(list)
    for each in found:
        groups[each.supplier_code].append(each)
    with read_snapshot(connection):
        names = dict(
            connection.execute(
                select(partners.c.code, partners.c.name).where(
                    partners.c.code.in_(sorted(code for code in groups if code))
                )
            ).all()
        )
    return [
        SupplierGroup(
            site_id=site_id,
            supplier_code=code,
            supplier_name=names.get(code, ""),
            lines=groups[code],
        )
        for code in sorted(groups, key=lambda code: (code == NO_SUPPLIER, code))
    ]


def make_draft_po(
    connection: Connection,
    *,
    site_id: str,
    supplier: str,
    today: date,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> purchasing.PurchaseOrder:
    """A draft PO for ``supplier`` with today's suggested lines at ``site_id`` (409 when
    there is nothing to order). Raises ``IdempotentReplay`` for a retried request: the
    replay check runs first in the PO's own transaction, so a retry makes no second PO."""
    if not supplier:
        raise InvalidError("supplier: give the supplier whose suggestion becomes a PO")
    site_conditions(item_site_levels.c.site_id, site_id, visible)
    lines = [
        each
        for each in suggest(connection, site_id=site_id, today=today)
        if each.supplier_code == supplier
    ]
    if not lines:
        # A retry of the request that made the PO finds nothing left to order (the draft
        # is on order now): it is answered with that PO, not a 409.
        with read_snapshot(connection):
            idempotency.check(connection, claim)
        raise ConflictError(f"nothing to order from {supplier} for site {site_id} today")
    return purchasing.create_purchase_order(
        connection,
        supplier=supplier,
        site_id=site_id,
        note=f"suggested {today.isoformat()}: reorder point, lead time and forecast",
        lines=[
            purchasing.PoLineInput(
                item_code=each.item_code,
                qty=each.qty,
                expected_date=today + timedelta(days=each.lead_time_days),
            )
            for each in lines
        ],
        created_by=actor,
        visible=visible,
        audit=audit,
        claim=claim,
    )
