"""The site's stock alerts, computed at the edge from its own ledger, offline.

Central raises the same kinds into its inbox (``central_api/services/alerts.py``), but a
shop with its line down still needs to see that the shelf is below safety stock or that a
lot has expired. The edge has what it takes: the site's levels (safety stock, reorder
point) and its units and locations through the change feed (``cache_item_levels``,
``cache_item_units``, ``cache_locations``), and every movement of the site in its ledger.
So the status page computes them on read, with central's rules:

* ``below_safety``: available on hand < safety stock; ``below_reorder``: safety stock <=
  on hand <= reorder point (> 0). One of the two per item. "Available" leaves out the
  quarantine, damaged and in-transit locations (their kind as the feed says) and balances
  in a unit the cache cannot convert to the base unit.
* ``negative_stock``: a balance (item, location, lot) below zero, in the base unit (in its
  own unit when that cannot be converted).
* ``expiry``: a lot on hand at the site whose expiry (the earliest any of its events
  states) is within a band; ``threshold`` is the band, 0 = expired (expiry today or
  before). The bands are the item's category's, else its nearest ancestor's, else
  central's default :data:`DEFAULT_EXPIRY_DAYS`, the rule central's alerts follow; the
  feed brings each item's category and the category tree with each one's own bands
  (``cache_items.category``, ``cache_categories``; ledger migration 16).

**Cost.** Balances are kept in memory per (item, location, lot, unit) with the last seq
read: each evaluation reads only the events appended since, in one grouped query (by the
events' primary key), so a site with years of history pays for its new events, not its
history. The feed caches are read whole each time, but they are the site's own master data
(one row per item with levels, per unit, per location). Events are never deleted or
changed, so the running sums stay right; quantities are summed as Decimals, never as
SQLite floats.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from edge_agent.ledger import Ledger

DEFAULT_EXPIRY_DAYS: tuple[int, ...] = (30, 60, 90)
"""Central's default bands: an item with no category, or none in its tree with bands."""
HELD_BACK_KINDS = ("quarantine", "damaged", "in_transit")
"""Location kinds whose stock is not available, as central counts them."""
SHOWN = 200
"""At most this many alerts go into the status answer (the counts cover all)."""
_ZERO = Decimal(0)

BalanceKey = tuple[str, str, str, str]
"""(item, location, lot or '', unit): how the ledger's events add up."""


class StockAlertKind(StrEnum):
    NEGATIVE_STOCK = "negative_stock"
    BELOW_SAFETY = "below_safety"
    BELOW_REORDER = "below_reorder"
    EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class StockAlert:
    """One condition that holds now; it disappears when the stock or the date moves on."""

    kind: StockAlertKind
    item: str
    qty: Decimal
    threshold: Decimal
    uom: str
    detail: str
    location: str | None = None
    lot: str | None = None
    expiry: date | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "item": self.item,
            "location": self.location,
            "lot": self.lot,
            "qty": format(self.qty, "f"),
            "threshold": format(self.threshold, "f"),
            "uom": self.uom,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "detail": self.detail,
        }


def _plain(value: Decimal) -> Decimal:
    """12.50 → 12.5, 1E+2 → 100: the way the contract writes quantities."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal


class StockAlerts:
    """Running balances of one ledger, and the alerts they give with the cached levels."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        bands: tuple[int, ...] = DEFAULT_EXPIRY_DAYS,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.ledger = ledger
        self.bands = tuple(sorted(bands))
        self.today = today
        self.through = 0
        """The last seq added into the balances."""
        self._balances: dict[BalanceKey, Decimal] = {}
        self._expiry: dict[tuple[str, str], date] = {}
        self._lock = threading.Lock()

    def _catch_up(
        self,
    ) -> tuple[
        dict[str, tuple[Decimal, Decimal]],
        dict[str, str],
        dict[tuple[str, str], Decimal],
        set[str],
        dict[str, tuple[int, ...]],
    ]:
        """Add the events since the last read; read the feed caches. One ledger read."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT item, location, COALESCE(lot, ''), json_extract(body, '$.uom'),"
                " group_concat(qty, ' '), MIN(json_extract(body, '$.expiry')), MAX(seq)"
                " FROM events WHERE seq > ? GROUP BY 1, 2, 3, 4",
                (self.through,),
            ).fetchall()
            levels = {
                item: (Decimal(safety), Decimal(reorder))
                for item, safety, reorder in conn.execute(
                    "SELECT item_code, safety_stock, reorder_point FROM cache_item_levels"
                )
            }
            base = dict(conn.execute("SELECT item_code, uom FROM cache_items").fetchall())
            factors = {
                (item, uom): Decimal(factor)
                for item, uom, factor in conn.execute(
                    "SELECT item_code, uom, factor FROM cache_item_units"
                )
            }
            held = {
                code
                for (code,) in conn.execute(
                    "SELECT code FROM cache_locations WHERE kind IN (?, ?, ?)", HELD_BACK_KINDS
                )
            }
            bands = _item_bands(conn)
        for item, location, lot, uom, quantities, expiry, last in rows:
            key = (item, location, lot, uom)
            total = self._balances.get(key, _ZERO) + sum(map(Decimal, quantities.split(" ")), _ZERO)
            if total:
                self._balances[key] = total
            else:
                self._balances.pop(key, None)  # a key comes back at zero when it moves again
            if expiry and lot:
                stated = date.fromisoformat(expiry)
                known = self._expiry.get((item, lot))
                self._expiry[(item, lot)] = stated if known is None else min(known, stated)
            self.through = max(self.through, int(last))
        return levels, base, factors, held, bands

    def evaluate(self, today: date | None = None) -> list[StockAlert]:
        """Every alert that holds now: negative first, then expired, below safety, below
        the reorder point, and the expiry bands nearest first."""
        with self._lock:
            levels, base, factors, held, bands = self._catch_up()
            balances = dict(self._balances)
            expiries = dict(self._expiry)
        day = today or self.today()

        by_key = _in_base(balances, base, factors)
        found: list[StockAlert] = []
        available: dict[str, Decimal] = defaultdict(lambda: _ZERO)
        lots: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: _ZERO)
        for (item, location, lot, uom), qty in by_key.items():
            if qty < 0:
                found.append(
                    StockAlert(
                        StockAlertKind.NEGATIVE_STOCK,
                        item,
                        _plain(qty),
                        _ZERO,
                        uom,
                        f"balance {_plain(qty)} {uom} at {location}",
                        location=location,
                        lot=lot or None,
                    )
                )
            if uom == base.get(item) and location not in held:
                available[item] += qty
            if lot:
                lots[(item, lot, uom)] += qty

        for item, (safety, reorder) in levels.items():
            level = _level_alert(item, available.get(item, _ZERO), safety, reorder, base)
            if level is not None:
                found.append(level)

        for (item, lot, uom), qty in lots.items():
            expiry = expiries.get((item, lot))
            if expiry is not None and qty > 0:
                band = _band(expiry, day, bands.get(item, self.bands))
                if band is not None:
                    found.append(_expiry_alert(item, lot, uom, qty, expiry=expiry, band=band))
        return sorted(found, key=_urgency)

    def report(self, today: date | None = None) -> dict[str, Any]:
        """The status page's ``stock_alerts``: counts by kind, the most urgent first."""
        day = today or self.today()
        found = self.evaluate(day)
        counts = {kind.value: 0 for kind in StockAlertKind}
        for alert in found:
            counts[alert.kind.value] += 1
        return {
            "on": day.isoformat(),
            "through_seq": self.through,
            "count": len(found),
            "by_kind": counts,
            "expired_lots": sum(
                1 for a in found if a.kind is StockAlertKind.EXPIRY and a.threshold == 0
            ),
            "alerts": [alert.as_dict() for alert in found[:SHOWN]],
            "truncated": len(found) > SHOWN,
        }


def _band(expiry: date, day: date, bands: tuple[int, ...]) -> int | None:
    """0 when expired (today or before), else the nearest band it is within, if any."""
    left = (expiry - day).days
    return 0 if left <= 0 else next((days for days in bands if left <= days), None)


def _item_bands(conn: sqlite3.Connection) -> dict[str, tuple[int, ...]]:
    """The expiry bands of each item whose category (or an ancestor of it) has its own,
    ascending; the others use the default. Read from the feed's caches, a row per
    category and per categorised item."""
    tree: dict[str, tuple[str | None, str | None]] = {
        code: (parent, days)
        for code, parent, days in conn.execute(
            "SELECT code, parent, expiry_days FROM cache_categories"
        )
    }
    resolved: dict[str, tuple[int, ...] | None] = {}

    def of(category: str) -> tuple[int, ...] | None:
        if category in resolved:
            return resolved[category]
        trail: list[str] = []
        found: tuple[int, ...] | None = None
        current: str | None = category
        while current is not None and current not in trail and current in tree:
            if current in resolved:
                found = resolved[current]
                break
            trail.append(current)
            parent, days = tree[current]
            if days:
                found = tuple(sorted({int(day) for day in days.split(",")}))
                break
            current = parent
        for code in trail:
            resolved[code] = found
        return found

    return {
        item: bands
        for item, category in conn.execute(
            "SELECT item_code, category FROM cache_items WHERE category IS NOT NULL"
        )
        if (bands := of(category)) is not None
    }


def _in_base(
    balances: dict[BalanceKey, Decimal],
    base: dict[str, str],
    factors: dict[tuple[str, str], Decimal],
) -> dict[BalanceKey, Decimal]:
    """The balances in each item's base unit where the cache can convert them; a unit it
    does not know (an edge's mistake, or the feed not pulled yet) stays in its own."""
    by_key: dict[BalanceKey, Decimal] = defaultdict(lambda: _ZERO)
    for (item, location, lot, uom), qty in balances.items():
        unit = base.get(item)
        if unit is not None and uom != unit and (item, uom) in factors:
            by_key[(item, location, lot, unit)] += qty * factors[(item, uom)]
        else:
            by_key[(item, location, lot, uom)] += qty
    return by_key


def _level_alert(
    item: str, on_hand: Decimal, safety: Decimal, reorder: Decimal, base: dict[str, str]
) -> StockAlert | None:
    """Below safety stock, else at or below a reorder point above zero, else nothing."""
    qty = _plain(on_hand)
    if qty < safety:
        kind, threshold, says = StockAlertKind.BELOW_SAFETY, safety, "< safety stock"
    elif qty <= reorder and reorder > 0:
        kind, threshold, says = StockAlertKind.BELOW_REORDER, reorder, "<= reorder point"
    else:
        return None
    threshold = _plain(threshold)
    return StockAlert(
        kind, item, qty, threshold, base.get(item, ""), f"on hand {qty} {says} {threshold}"
    )


def _expiry_alert(
    item: str, lot: str, uom: str, qty: Decimal, *, expiry: date, band: int
) -> StockAlert:
    return StockAlert(
        StockAlertKind.EXPIRY,
        item,
        _plain(qty),
        Decimal(band),
        uom,
        f"lot {lot} expires {expiry.isoformat()}"
        + (" (expired)" if band == 0 else f" (within {band} days)"),
        lot=lot,
        expiry=expiry,
    )


_ORDER = {
    StockAlertKind.NEGATIVE_STOCK: 0,
    StockAlertKind.EXPIRY: 1,
    StockAlertKind.BELOW_SAFETY: 2,
    StockAlertKind.BELOW_REORDER: 3,
}


def _urgency(alert: StockAlert) -> tuple[int, Decimal, str, str, str]:
    """Negative, expired, below safety, below reorder, then the expiry bands nearest first."""
    rank = _ORDER[alert.kind]
    if alert.kind is StockAlertKind.EXPIRY and alert.threshold > 0:
        rank = 4
    band = alert.threshold if alert.kind is StockAlertKind.EXPIRY else _ZERO
    return (rank, band, alert.item, alert.location or "", alert.lot or "")
