"""A rebuild of SO progress from the ledger equals what pushes and central bookings built
incrementally, and both equal the plain sum of the events, for any run of shipments
(partial and over, in another unit, naming unknown lines, other items, another site, a
cancelled order, packed into SSCCs with and without a lot swap). The orders are confirmed
with real FEFO reservations first; a line never keeps more reserved than it still needs.
On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from central_api.core.db import write_transaction
from central_api.models.sales import sales_reservations
from central_api.services import central_events, so_progress
from central_api.services.central_events import Movement
from jxc.contract import EventKind
from jxc.paths import SALES_ORDERS, SITES, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import ok
from tests.central.test_sales import confirm, day, new_so, shop

__all__ = ["shop"]  # the fixture, imported to be used here

UNITS = [("PILL", "片"), ("PILL", "盒"), ("PILL", "瓶"), ("TEA", "kg")]
FACTORS = {("PILL", "片"): Decimal(1), ("PILL", "盒"): Decimal(10), ("TEA", "kg"): Decimal(1)}
"""To the base unit; PILL has no 瓶, so an issue in 瓶 is never counted."""
LINE_ITEMS = {1: "PILL", 2: "TEA"}
UNKNOWN_SO = "SO-NOSUCH"
SSCCS = ["000000000000000017", "000000000000000024", "000000000000000031"]
PLENTY = "1000000"


def stock_place(uom: str) -> str:
    """Where the shipments take from: a quarantine zone per unit, so the plentiful stock
    there never counts as available and the confirms reserve the shop's lots FEFO."""
    return f"C-{uom}"


_issue = st.fixed_dictionaries(
    {
        "so": st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]),  # 2: cancelled, 3: no such order
        "line": st.sampled_from([1, 1, 2, 2, 3]),  # 3: no such line
        "unit": st.sampled_from(UNITS),
        "lot": st.sampled_from(["L3", "L4", "L6", None]),
        "qty": st.decimals(min_value="0.001", max_value="30", places=3),
        "pack": st.sampled_from([None, None, "sscc", "swap"]),
    }
)
_booking = st.tuples(
    st.sampled_from(["edge", "edge", "central", "central", "other site"]),
    st.lists(_issue, min_size=1, max_size=5),
)
_orders = st.tuples(st.integers(1, 30), st.integers(1, 3), st.integers(1, 6))


@dataclass
class _Run:
    """What the examples built so far on this database (examples share it)."""

    ledgers: dict[str, SiteLedger]
    confirmed: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    ordered: dict[tuple[str, int], Decimal] = field(default_factory=dict)
    sent: list[tuple[str, str, int, str, str, Decimal]] = field(default_factory=list)
    """(site, so_id, line, item, uom, qty shipped) of every issue sent."""


def _setup(client: TestClient, site: SiteLedger) -> _Run:
    for _item, uom in UNITS:
        ok(
            client.post(
                f"{SITES}/S01/locations",
                json={"code": stock_place(uom), "level": "zone", "kind": "quarantine"},
            ),
            201,
        )
    events = [
        site.event("receipt", PLENTY, item=item, uom=uom, lot=lot, location=stock_place(uom))
        for item, uom in UNITS
        for lot in ("L3", "L4", "L6", None)
    ]
    # A later lot, plenty of it, so every example's orders can be confirmed.
    events.append(site.event("receipt", PLENTY, item="PILL", uom="片", lot="L6", expiry=day(120)))
    events.append(site.event("receipt", PLENTY, item="TEA", uom="kg"))
    ok(client.post(SYNC_EVENTS, json=site.batch(events)))
    return _Run(ledgers={"S01": site, "S02": SiteLedger("S02")})


def _new_orders(client: TestClient, run: _Run, pieces: int, boxes: int, kilos: int) -> list[str]:
    """Two confirmed orders (PILL in 片 / in 盒, and TEA) and a cancelled one."""
    ids = []
    for pill in ({"qty": str(pieces), "uom": "片"}, {"qty": str(boxes), "uom": "盒"}, None):
        lines: list[dict[str, Any]] = [
            {"item_code": "PILL", "unit_price": "2", **(pill or {"qty": "1", "uom": "片"})},
            {"item_code": "TEA", "qty": str(kilos), "unit_price": "1"},
        ]
        so_id = new_so(client, lines=lines)["so_id"]
        confirmed = ok(confirm(client, so_id))
        for line in confirmed["lines"]:
            run.ordered[(so_id, line["line_no"])] = Decimal(line["base_qty"])
        if pill is None:
            ok(client.post(f"{SALES_ORDERS}/{so_id}/cancel", json={"reason": "取消"}))
            run.cancelled.add(so_id)
        else:
            run.confirmed.add(so_id)
        ids.append(so_id)
    return [*ids, UNKNOWN_SO]


def _ref(pack: str | None, index: int) -> str | None:
    if pack is None:
        return None
    sscc = SSCCS[index % len(SSCCS)]
    return f"sscc {sscc}" if pack == "sscc" else f"sscc {sscc} swap L4"


def _send(client: TestClient, run: _Run, ids: list[str], how: str, issues: list[Any]) -> None:
    site_id = "S02" if how == "other site" else "S01"
    wanted = []
    for index, issue in enumerate(issues):
        item, uom = issue["unit"]
        so_id, qty = ids[issue["so"]], issue["qty"]
        run.sent.append((site_id, so_id, issue["line"], item, uom, qty))
        wanted.append((issue, item, uom, so_id, _ref(issue["pack"], index)))
    if how == "central":
        now = datetime.now(UTC)
        with client.app.state.engine.connect() as connection, write_transaction(connection):  # type: ignore[attr-defined]
            central_events.lock_site(connection, site_id, now=now)
            central_events.book(
                connection,
                site_id=site_id,
                movements=[
                    Movement(
                        kind=EventKind.ISSUE,
                        item=item,
                        location=stock_place(uom),
                        qty=-issue["qty"],
                        uom=uom,
                        lot=issue["lot"],
                        doc_type="sales_order",
                        doc_id=so_id,
                        doc_line=issue["line"],
                        ref=ref,
                    )
                    for issue, item, uom, so_id, ref in wanted
                ],
                actor="test",
                ref="property",
                now=now,
                projections=client.app.state.projections,  # type: ignore[attr-defined]
            )
        return
    ledger = run.ledgers[site_id]
    events = [
        ledger.event(
            "issue",
            str(-issue["qty"]),
            item=item,
            uom=uom,
            lot=issue["lot"],
            location=stock_place(uom),
            doc_type="sales_order",
            doc_id=so_id,
            doc_line=issue["line"],
            **({} if ref is None else {"ref": ref}),
        )
        for issue, item, uom, so_id, ref in wanted
    ]
    ok(client.post(SYNC_EVENTS, json=ledger.batch(events)))


def _summed(run: _Run) -> dict[str, Any]:
    """What the events say, by the rules, without the projection."""
    shipped = dict.fromkeys(run.ordered, Decimal(0))
    for site_id, so_id, line, item, uom, qty in run.sent:
        key = (so_id, line)
        if site_id != "S01" or key not in shipped or item != LINE_ITEMS[line]:
            continue
        if (item, uom) in FACTORS:
            shipped[key] += qty * FACTORS[(item, uom)]
    status = dict.fromkeys(run.cancelled, "cancelled")
    for so_id in run.confirmed:
        done = all(shipped[(so_id, n)] >= run.ordered[(so_id, n)] for n in LINE_ITEMS)
        status[so_id] = "closed" if done else "confirmed"
    return {"lines": shipped, "status": status}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    orders=_orders,
    bookings=st.lists(_booking, min_size=1, max_size=4),
    finish=st.sampled_from([None, "edge", "central"]),
)
def test_rebuild_equals_incremental_equals_the_sum(
    shop: TestClient,
    site: SiteLedger,
    orders: tuple[int, int, int],
    bookings: list[tuple[str, list[Any]]],
    finish: str | None,
) -> None:
    state = shop.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "so_run"):
        state.so_run = _setup(shop, site)
    run: _Run = state.so_run
    ids = _new_orders(shop, run, *orders)
    for how, issues in bookings:
        _send(shop, run, ids, how, issues)
    if finish is not None:
        # Ship what is left of the first order, so closing is exercised every time.
        shipped = _summed(run)["lines"]
        rest = [
            {"so": 0, "line": n, "unit": (item, uom), "lot": "L6", "pack": None, "qty": left}
            for n, item, uom in ((1, "PILL", "片"), (2, "TEA", "kg"))
            if (left := run.ordered[(ids[0], n)] - shipped[(ids[0], n)]) > 0
        ]
        if rest:
            _send(shop, run, ids, finish, rest)

    with state.engine.connect() as connection:
        incremental = so_progress.progress(connection)
        held = {
            (row.so_id, row.line_no): row.qty
            for row in connection.execute(
                select(
                    sales_reservations.c.so_id,
                    sales_reservations.c.line_no,
                    func.sum(sales_reservations.c.qty).label("qty"),
                ).group_by(sales_reservations.c.so_id, sales_reservations.c.line_no)
            )
        }
        connection.rollback()
        with connection.begin() as transaction:
            so_progress.rebuild(connection)
            rebuilt = so_progress.progress(connection)
            transaction.rollback()
    assert rebuilt == incremental
    assert incremental == _summed(run)
    for (so_id, line), qty in held.items():
        assert incremental["status"][so_id] == "confirmed", (so_id, line)
        still = max(Decimal(0), run.ordered[(so_id, line)] - incremental["lines"][(so_id, line)])
        assert qty <= still, (so_id, line)


def test_a_rebuild_repairs_lost_progress(shop: TestClient) -> None:
    """Shipped quantities lost or wrong are recomputed; a confirmed order they complete
    closes and lets its reservations go; one still short stays open."""
    full = new_so(shop, lines=[{"item_code": "TEA", "qty": "2", "unit_price": "1"}])["so_id"]
    short = new_so(shop, lines=[{"item_code": "TEA", "qty": "3", "unit_price": "1"}])["so_id"]
    ok(confirm(shop, full))
    ok(confirm(shop, short))
    shipped = {full: "2", short: "1"}
    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        with write_transaction(connection):
            now = datetime.now(UTC)
            central_events.lock_site(connection, "S01", now=now)
            central_events.book(
                connection,
                site_id="S01",
                movements=[
                    Movement(
                        kind=EventKind.ISSUE,
                        item="TEA",
                        location="A-01",
                        qty=-Decimal(qty),
                        uom="kg",
                        doc_type="sales_order",
                        doc_id=so_id,
                        doc_line=1,
                    )
                    for so_id, qty in shipped.items()
                ],
                actor="test",
                ref="lost",
                now=now,
                projections=None,  # as if the projection had missed them
            )
        before = so_progress.progress(connection)
        connection.rollback()
        assert (before["lines"][(full, 1)], before["status"][full]) == (0, "confirmed")
        with write_transaction(connection):
            found = so_progress.rebuild(connection)
        after = so_progress.progress(connection)
        left = connection.execute(
            select(sales_reservations.c.so_id, sales_reservations.c.qty)
        ).all()
        connection.rollback()
    assert found == {(full, 1): Decimal(2), (short, 1): Decimal(1)}
    assert after["status"] == {full: "closed", short: "confirmed"}
    assert [row.so_id for row in left] == [short]
    order = ok(shop.get(f"{SALES_ORDERS}/{full}"))
    assert order["ended_at"] is not None
    assert order["reason"] is None
