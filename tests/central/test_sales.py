"""Sales at central: price lists, sales orders with the credit check, FEFO lot
reservation, backorders, cancel releasing, available-to-promise, the clerk's view without
prices, Idempotency-Key and If-Match; two confirms racing for the last units on
PostgreSQL. On SQLite and PostgreSQL, stock pushed through the real sync route."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from central_api.core.db import create_db_engine
from central_api.errors import ConflictError
from central_api.services import central_events, sales
from central_api.services.audit import system_context
from jxc.contract import EventKind
from jxc.paths import (
    ITEMS,
    PARTNERS,
    PRICE_LISTS,
    SALES_ORDERS,
    SITES,
    STOCK_AVAILABLE,
    SYNC_EVENTS,
    VALUATION,
)
from tests.central.conftest import SiteLedger
from tests.central.test_audit_api import add_role
from tests.central.test_purchasing import as_user, ok, refused

TODAY = datetime.now(UTC).date()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.fixture
def shop(client: TestClient, site: SiteLedger) -> TestClient:
    """Site S01 with a quarantine zone Q; customers CUS-1 (no limit) and CUS-2 (credit
    100); PILL counted in 片 (盒 = 10), lot and expiry tracked, 30 days' minimum remaining
    shelf life; its lots at S01:

    L1 expired (10), L2 in 5 days (10, too short), L3 in 60 days (5), L4 in 90 days
    (20), L5 in 40 days but in quarantine (50)."""
    ok(client.put(f"{SITES}/S01", json={"kind": "warehouse", "name": "仓 S01"}))
    ok(client.put(f"{SITES}/S02", json={"kind": "store", "name": "店 S02"}))
    ok(
        client.post(
            f"{SITES}/S01/locations", json={"code": "Q", "level": "zone", "kind": "quarantine"}
        ),
        201,
    )
    ok(client.post(PARTNERS, json={"code": "CUS-1", "is_customer": True, "name": "c1"}), 201)
    ok(
        client.post(
            PARTNERS,
            json={"code": "CUS-2", "is_customer": True, "name": "c2", "credit_limit": "100"},
        ),
        201,
    )
    ok(client.post(PARTNERS, json={"code": "SUP-A", "is_supplier": True, "name": "s"}), 201)
    ok(
        client.post(
            ITEMS,
            json={
                "item_code": "PILL",
                "name": "药片",
                "uom": "片",
                "units": [{"uom": "盒", "factor": "10"}],
                "lot_tracked": True,
                "expiry_tracked": True,
                "shelf_life_days": 365,
                "min_remaining_days": 30,
            },
        ),
        201,
    )
    ok(client.post(ITEMS, json={"item_code": "TEA", "name": "茶", "uom": "kg"}), 201)
    events = [
        site.event(
            "receipt", qty, item="PILL", uom="片", lot=lot, expiry=day(offset), location=where
        )
        for lot, offset, qty, where in (
            ("L1", -1, "10", "A-01"),
            ("L2", 5, "10", "A-01"),
            ("L3", 60, "5", "A-02"),
            ("L4", 90, "20", "A-01"),
            ("L5", 40, "50", "Q"),
        )
    ]
    events.append(site.event("receipt", "7", item="TEA", uom="kg", location="A-01"))
    ok(client.post(SYNC_EVENTS, json=site.batch(events)))
    return client


def so_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [
            {"item_code": "PILL", "qty": "3", "uom": "盒", "unit_price": "20", "tax_rate": "0.13"}
        ],
    }
    body.update(changes)
    return body


def new_so(
    client: TestClient, headers: dict[str, str] | None = None, **changes: Any
) -> dict[str, Any]:
    return ok(client.post(SALES_ORDERS, json=so_body(**changes), headers=headers or {}), 201)


def confirm(client: TestClient, so_id: str, **kwargs: Any) -> Any:
    return client.post(f"{SALES_ORDERS}/{so_id}/confirm", **kwargs)


def available(client: TestClient, item: str = "PILL") -> dict[str, Any]:
    return ok(client.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": item}))


def test_confirm_reserves_fefo_skips_expired_short_and_quarantined_and_backorders(
    shop: TestClient,
) -> None:
    atp = available(shop)
    by_lot = {lot["lot"]: lot for lot in atp["lots"]}
    assert [lot["lot"] for lot in atp["lots"]] == ["L1", "L2", "L5", "L3", "L4"]
    assert by_lot["L5"]["on_hand"] == "0"
    assert by_lot["L5"]["unsellable"] == "50"
    assert (atp["on_hand"], atp["unsellable"], atp["available"]) == ("45", "50", "45")

    so = new_so(shop)
    assert so["status"] == "draft"
    assert so["lines"][0]["base_qty"] == "30"
    done = ok(confirm(shop, so["so_id"]))
    assert done["status"] == "confirmed"
    line = done["lines"][0]
    # L1 expired, L2 too short for 30 days, L5 quarantined: L3 (60 days) then L4.
    assert [(r["lot"], r["qty"]) for r in line["reservations"]] == [("L3", "5"), ("L4", "20")]
    assert (line["reserved_qty"], line["backorder_qty"]) == ("25", "5")
    atp = available(shop)
    assert atp["reserved"] == "25"
    assert {lot["lot"]: lot["available"] for lot in atp["lots"]}["L4"] == "0"

    # A second order finds nothing acceptable left: all backordered.
    other = ok(
        confirm(
            shop,
            new_so(shop, lines=[{"item_code": "PILL", "qty": "4", "unit_price": "2"}])["so_id"],
        )
    )
    assert other["lines"][0]["reservations"] == []
    assert other["lines"][0]["backorder_qty"] == "4"

    # Cancelling the first releases its lots; the second's reserve takes them.
    cancelled = ok(shop.post(f"{SALES_ORDERS}/{so['so_id']}/cancel", json={"reason": "客户取消"}))
    assert cancelled["status"] == "cancelled"
    assert cancelled["lines"][0]["reservations"] == []
    assert cancelled["lines"][0]["backorder_qty"] == "0"
    assert available(shop)["reserved"] == "0"
    topped = ok(shop.post(f"{SALES_ORDERS}/{other['so_id']}/reserve"))
    assert [(r["lot"], r["qty"]) for r in topped["lines"][0]["reservations"]] == [("L3", "4")]
    closed = ok(shop.post(f"{SALES_ORDERS}/{other['so_id']}/close"))
    assert closed["status"] == "closed"
    assert available(shop)["reserved"] == "0"
    refused(shop.post(f"{SALES_ORDERS}/{other['so_id']}/confirm"), 409, "closed", "draft")


def test_an_order_may_ask_for_a_longer_shelf_life_and_untracked_stock_has_no_lot(
    shop: TestClient,
) -> None:
    so = new_so(shop, min_remaining_days=70)
    line = ok(confirm(shop, so["so_id"]))["lines"][0]
    assert [(r["lot"], r["qty"]) for r in line["reservations"]] == [("L4", "20")]
    tea = new_so(shop, lines=[{"item_code": "TEA", "qty": "7.5", "unit_price": "1"}])
    line = ok(confirm(shop, tea["so_id"]))["lines"][0]
    assert [(r["lot"], r["expiry"], r["qty"]) for r in line["reservations"]] == [("", None, "7")]
    assert line["backorder_qty"] == "0.5"


def test_two_lines_of_one_item_never_take_the_same_units(shop: TestClient) -> None:
    # 25 acceptable units (L3 5, L4 20): the first line takes 20, the second what is left;
    # confirm reads the item's lots once, so the second line must see the first's take.
    lines = [
        {"item_code": "PILL", "qty": "20", "unit_price": "1"},
        {"item_code": "PILL", "qty": "1", "uom": "盒", "unit_price": "10"},
    ]
    done = ok(confirm(shop, new_so(shop, lines=lines)["so_id"]))
    first, second = done["lines"]
    assert [(r["lot"], r["qty"]) for r in first["reservations"]] == [("L3", "5"), ("L4", "15")]
    assert [(r["lot"], r["qty"]) for r in second["reservations"]] == [("L4", "5")]
    assert (second["reserved_qty"], second["backorder_qty"]) == ("5", "5")
    atp = available(shop)
    assert (atp["reserved"], atp["available"]) == ("25", "20")
    assert all(Decimal(lot["reserved"]) <= Decimal(lot["on_hand"]) for lot in atp["lots"])


def test_reserve_tops_up_a_lot_the_line_already_holds(shop: TestClient, site: SiteLedger) -> None:
    done = ok(confirm(shop, new_so(shop)["so_id"]))
    assert done["lines"][0]["backorder_qty"] == "5"
    # More of L4 arrives: ``reserve`` adds to the line's L4 row rather than a second row.
    more = site.event("receipt", "8", item="PILL", uom="片", lot="L4", expiry=day(90))
    ok(shop.post(SYNC_EVENTS, json=site.batch([more])))
    topped = ok(shop.post(f"{SALES_ORDERS}/{done['so_id']}/reserve"))["lines"][0]
    assert [(r["lot"], r["qty"]) for r in topped["reservations"]] == [("L3", "5"), ("L4", "25")]
    assert (topped["reserved_qty"], topped["backorder_qty"]) == ("30", "0")
    assert available(shop)["available"] == "23"


def test_a_lot_received_at_central_keeps_its_expiry_for_reservation(shop: TestClient) -> None:
    # Stock booked by central's own stream (a site without an edge): its expiry is on a
    # central event, not an edge's. An expired lot there is never reserved.
    engine = shop.app.state.engine  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    moves = [
        central_events.Movement(
            kind=EventKind.RECEIPT,
            item="PILL",
            location="A-03",
            qty=Decimal(qty),
            uom="片",
            lot=lot,
            expiry=TODAY + timedelta(days=offset),
        )
        for lot, offset, qty in (("C1", -3, "40"), ("C2", 45, "6"))
    ]
    with engine.begin() as connection:
        central_events.lock_site(connection, "S01", now=now)
        central_events.book(
            connection, site_id="S01", movements=moves, actor="t", ref="t", now=now,
            projections=None,
        )  # fmt: skip
    by_lot = {lot["lot"]: lot for lot in available(shop)["lots"]}
    assert by_lot["C1"]["expiry"] == day(-3)
    so = new_so(shop, lines=[{"item_code": "PILL", "qty": "40", "unit_price": "1"}])
    line = ok(confirm(shop, so["so_id"]))["lines"][0]
    assert [(r["lot"], r["qty"]) for r in line["reservations"]] == [
        ("C2", "6"),
        ("L3", "5"),
        ("L4", "20"),
    ]
    assert line["backorder_qty"] == "9"


def test_the_credit_limit_refuses_a_confirm_with_a_clear_409(shop: TestClient) -> None:
    # 2 盒 × 20 × 1.13 = 45.2 each: two fit under 100, a third does not.
    two = [{"item_code": "PILL", "qty": "2", "uom": "盒", "unit_price": "20", "tax_rate": "0.13"}]
    first = new_so(shop, customer="CUS-2", lines=two)
    assert first["gross_amount"] == "45.2"
    ok(confirm(shop, first["so_id"]))
    ok(confirm(shop, new_so(shop, customer="CUS-2", lines=two)["so_id"]))
    third = new_so(shop, customer="CUS-2", lines=two)
    text = refused(confirm(shop, third["so_id"]), 409, "credit limit", "100", "90.4", "45.2")
    assert "CUS-2" in text
    unchanged = ok(shop.get(f"{SALES_ORDERS}/{third['so_id']}"))
    assert unchanged["status"] == "draft"
    assert unchanged["lines"][0]["reservations"] == []
    # Closing an open order frees its exposure.
    ok(shop.post(f"{SALES_ORDERS}/{first['so_id']}/close"))
    ok(confirm(shop, third["so_id"]))


def test_lines_without_a_price_take_the_customers_price_list(shop: TestClient) -> None:
    body = {
        "name": "零售价",
        "lines": [
            {"item_code": "PILL", "uom": "盒", "price": "25"},
            {
                "item_code": "PILL",
                "uom": "盒",
                "price": "22.5",
                "valid_from": day(-1),
                "valid_to": day(1),
            },
            {"item_code": "PILL", "price": "3", "valid_to": day(-1)},
        ],
    }
    made = shop.put(f"{PRICE_LISTS}/RETAIL", json=body)
    assert made.status_code == 201, made.text
    assert made.headers["ETag"] == '"1"'
    refused(shop.put(f"{PRICE_LISTS}/RETAIL", json=body, headers={"If-Match": '"7"'}), 412)
    bad = {"name": "x", "lines": [{"item_code": "PILL", "uom": "瓶", "price": "1"}]}
    refused(shop.put(f"{PRICE_LISTS}/BAD", json=bad), 422, "瓶")
    ok(
        shop.put(
            f"{PARTNERS}/CUS-1", json={"is_customer": True, "name": "c1", "price_list": "RETAIL"}
        )
    )
    so = new_so(shop, lines=[{"item_code": "PILL", "qty": "2", "uom": "盒"}])
    assert so["lines"][0]["unit_price"] == "22.5"  # the dated promotion wins
    assert so["amount"] == "45"
    refused(
        shop.post(SALES_ORDERS, json=so_body(lines=[{"item_code": "PILL", "qty": "2"}])),
        422,
        "RETAIL",
        "片",
    )
    clerk = as_user(shop, "clerk", ["warehouse_clerk"])
    refused(shop.get(f"{PRICE_LISTS}/RETAIL", headers=clerk), 403)
    manager = as_user(shop, "boss", ["store_manager"])
    seen = ok(shop.get(f"{PRICE_LISTS}/RETAIL", headers=manager))
    assert len(seen["lines"]) == 3


def test_a_clerk_reads_orders_without_prices_and_roles_are_checked(shop: TestClient) -> None:
    seller = as_user(shop, "seller", ["sales"])
    so = new_so(shop, headers=seller)
    ok(confirm(shop, so["so_id"], headers=seller))
    # A sales user sees prices, not costs: valuation (cost per site and item) is refused
    # until a role grants it.
    assert "unit_price" in ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}", headers=seller))["lines"][0]
    refused(shop.get(VALUATION, params={"site_id": "S01"}, headers=seller), 403)
    add_role(shop.app.state.engine, "sales_costs", "valuation.read", financial=True)  # type: ignore[attr-defined]
    granted = as_user(shop, "seller2", ["sales", "sales_costs"])
    ok(shop.get(VALUATION, params={"site_id": "S01"}, headers=granted))
    clerk = as_user(shop, "clerk", ["warehouse_clerk"])
    seen = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}", headers=clerk))
    assert seen["lines"][0]["reservations"]
    for absent in ("amount", "gross_amount"):
        assert absent not in seen
    for absent in ("unit_price", "tax_rate", "amount", "gross_amount"):
        assert absent not in seen["lines"][0]
    listed = ok(shop.get(SALES_ORDERS, headers=clerk))
    assert "unit_price" not in listed["sales_orders"][0]["lines"][0]
    refused(shop.post(SALES_ORDERS, json=so_body(), headers=clerk), 403)
    refused(confirm(shop, so["so_id"], headers=clerk), 403)
    finance = as_user(shop, "money", ["finance"])
    assert ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}", headers=finance))["amount"] == "60"
    # Another site's user does not see it at all.
    elsewhere = as_user(shop, "far", ["sales"], sites=["S02"])
    refused(shop.get(f"{SALES_ORDERS}/{so['so_id']}", headers=elsewhere), 404)
    refused(
        shop.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": "PILL"}, headers=elsewhere), 403
    )
    refused(shop.post(SALES_ORDERS, json=so_body(), headers=elsewhere), 403)
    assert ok(shop.get(SALES_ORDERS, headers=elsewhere))["sales_orders"] == []


def test_idempotency_key_and_if_match(shop: TestClient) -> None:
    key = {"Idempotency-Key": "so-create-1"}
    first = shop.post(SALES_ORDERS, json=so_body(), headers=key)
    again = shop.post(SALES_ORDERS, json=so_body(), headers=key)
    assert first.status_code == 201
    assert again.json()["so_id"] == first.json()["so_id"]
    so_id = first.json()["so_id"]
    refused(confirm(shop, so_id, headers={"If-Match": '"9"'}), 412, "changed")
    done = confirm(shop, so_id, headers={"If-Match": '"1"', "Idempotency-Key": "c1"})
    assert done.status_code == 200
    assert done.headers["ETag"] == '"2"'
    replay = confirm(shop, so_id, headers={"If-Match": '"1"', "Idempotency-Key": "c1"})
    assert replay.status_code == 200
    assert replay.json()["version"] == 2
    assert available(shop)["reserved"] == "25"  # not reserved twice
    refused(shop.put(f"{SALES_ORDERS}/{so_id}", json=so_body()), 409, "confirmed")
    refused(shop.post(SALES_ORDERS, json=so_body(customer="SUP-A")), 422, "not a customer")
    refused(shop.post(SALES_ORDERS, json=so_body(site_id="S09")), 422, "S09")
    refused(shop.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": "NOPE"}), 422, "NOPE")
    refused(shop.get(f"{SALES_ORDERS}/SO999999"), 404)


@pytest.mark.postgres
def test_racing_confirms_never_reserve_the_same_units(shop: TestClient, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the race is PostgreSQL's: SQLite's writes take turns")
    # 25 acceptable units (L3 5 + L4 20); 20 clients each confirm an order of 5 (demand
    # 100), each of its own customer (so the customer's row lock of the credit check does
    # not make them take turns), all at once: exactly 25 may be reserved.
    orders = []
    for number in range(20):
        code = f"RACE-{number}"
        ok(shop.post(PARTNERS, json={"code": code, "is_customer": True, "name": code}), 201)
        line = {"item_code": "PILL", "qty": "5", "unit_price": "1"}
        orders.append(new_so(shop, customer=code, lines=[line])["so_id"])
    # Its own engine with a connection per client: the app's pool (5 + 10 overflow) would
    # leave five racers waiting for a connection while the rest wait at the barrier.
    engine = create_db_engine(database_url, pool_size=len(orders), max_overflow=0)
    start = threading.Barrier(len(orders))
    failures: list[BaseException] = []

    def run(so_id: str) -> None:
        try:
            with engine.connect() as connection:
                start.wait()
                sales.confirm_sales_order(
                    connection,
                    sales.SoCommand(
                        so_id=so_id,
                        actor="racer",
                        visible=None,
                        if_match=None,
                        audit=system_context("race"),
                    ),
                )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(so_id,)) for so_id in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert failures == []
    reserved = [
        Decimal(ok(shop.get(f"{SALES_ORDERS}/{so_id}"))["lines"][0]["reserved_qty"])
        for so_id in orders
    ]
    assert sum(reserved) == 25
    atp = available(shop)
    assert atp["reserved"] == "25"
    assert all(Decimal(lot["reserved"]) <= Decimal(lot["on_hand"]) for lot in atp["lots"])


# --- FEFO as a property ------------------------------------------------------------------

_lots = st.lists(
    st.builds(
        sales.LotAvailability,
        lot=st.text(alphabet="ABCDEFGH", min_size=1, max_size=3),
        expiry=st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2027, 12, 31))),
        on_hand=st.decimals(0, 100, places=2),
        unsellable=st.just(Decimal(0)),
        reserved=st.decimals(0, 100, places=2),
    ),
    max_size=8,
    unique_by=lambda lot: lot.lot,
)


@given(
    lots=_lots,
    need=st.decimals(Decimal("0.01"), 300, places=2),
    today=st.dates(date(2026, 1, 1), date(2027, 12, 31)),
    min_days=st.integers(0, 400),
)
def test_fefo_plan_is_within_availability_earliest_first_and_never_short_dated(
    lots: list[sales.LotAvailability], need: Decimal, today: date, min_days: int
) -> None:
    plan = sales.plan_fefo(lots, need, today, min_days)
    assert sum((qty for _lot, qty in plan), Decimal(0)) <= need
    for lot, qty in plan:
        assert 0 < qty <= lot.available
        assert lot.expiry is None or lot.expiry >= today + timedelta(days=max(min_days, 1))
        assert lot.expiry is None or lot.expiry > today
    taken = {lot.lot for lot, _qty in plan}
    # Every acceptable lot with stock that expires before a taken one was used up.
    for lot, _qty in plan:
        for other in lots:
            if (
                other.lot not in taken
                and other.available > 0
                and sales.acceptable(other.expiry, today, min_days)
            ):
                assert sales.fefo_key(other) > sales.fefo_key(lot)
    # Short only when no acceptable stock is left.
    if sum((qty for _lot, qty in plan), Decimal(0)) < need:
        assert all(
            lot.lot in taken
            or lot.available == 0
            or not sales.acceptable(lot.expiry, today, min_days)
            for lot in lots
        )
        assert all(qty == lot.available for lot, qty in plan)


def test_a_conflict_is_a_conflict() -> None:
    assert issubclass(sales.CreditLimitError, ConflictError)
