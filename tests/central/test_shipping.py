"""Pick lists and shipments confirmed at central: partial shipments FEFO from the
reservations, stock out through central's own stream, shipped quantities and the order's
closing by the ``so_progress`` projection, tracking numbers with If-Match, the delivery
note, a clerk's view without prices, Idempotency-Key. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models.audit import audit_log
from central_api.models.ledger import central_events
from jxc.paths import SALES_ORDERS, SHIPMENTS, STOCK_AVAILABLE, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import as_user, ok, refused
from tests.central.test_sales import confirm, new_so, shop

__all__ = ["shop"]

TWO_LINES = [
    {"item_code": "PILL", "qty": "2", "uom": "盒", "unit_price": "20", "tax_rate": "0.13"},
    {"item_code": "TEA", "qty": "5", "unit_price": "1"},
]


def ship(client: TestClient, so_id: str, lines: list[dict[str, Any]], **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    return client.post(SHIPMENTS, json={"so_id": so_id, "lines": lines, **extra}, headers=headers)


def lots(line: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["lot"], r["qty"]) for r in line["reservations"]]


def on_hand(client: TestClient, item: str) -> dict[str, str]:
    answer = ok(client.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": item}))
    return {lot["lot"]: lot["on_hand"] for lot in answer["lots"]}


def test_partial_shipments_consume_reservations_fefo_and_the_last_closes_the_order(
    shop: TestClient,
) -> None:
    so = new_so(shop, lines=TWO_LINES)
    done = ok(confirm(shop, so["so_id"]))
    assert lots(done["lines"][0]) == [("L3", "5"), ("L4", "15")]
    assert lots(done["lines"][1]) == [("", "5")]

    picks = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}/pick-list"))
    assert [
        (p["so_line"], p["lot"], p["qty"], [(w["location"], w["on_hand"]) for w in p["places"]])
        for p in picks["lines"]
    ] == [
        (1, "L3", "5", [("A-02", "5")]),
        (1, "L4", "15", [("A-01", "20")]),
        (2, "", "5", [("A-01", "7")]),
    ]

    # One 盒 (10 片): the earlier lot L3 first, then L4; retried with the same key.
    key = {"Idempotency-Key": "ship-1"}
    first = ship(shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}], headers=key)
    shipment = ok(first, 201)
    assert shipment["shipment_id"].startswith("SH")
    assert first.headers["ETag"] == '"1"'
    assert [(x["so_line"], x["lot"], x["location"], x["qty"]) for x in shipment["lines"]] == [
        (1, "L3", "A-02", "5"),
        (1, "L4", "A-01", "5"),
    ]
    again = ship(shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}], headers=key)
    assert ok(again, 201)["shipment_id"] == shipment["shipment_id"]
    assert again.headers["Idempotent-Replayed"] == "true"

    order = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}"))
    assert order["status"] == "confirmed"
    assert order["version"] == done["version"] + 1
    assert (order["lines"][0]["shipped_qty"], lots(order["lines"][0])) == ("10", [("L4", "10")])
    assert on_hand(shop, "PILL")["L3"] == "0"
    assert on_hand(shop, "PILL")["L4"] == "15"
    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        booked = connection.execute(
            select(central_events.c.kind, central_events.c.doc_id, central_events.c.doc_line)
        ).all()
    assert booked == [("issue", so["so_id"], 1), ("issue", so["so_id"], 1)]

    # More than is reserved is refused, with the way out.
    refused(ship(shop, so["so_id"], [{"so_line": 2, "qty": "6"}]), 409, "reserve first", "5")
    refused(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1", "lot": "L3"}]), 409, "lot L3", "0")
    refused(ship(shop, so["so_id"], [{"so_line": 9, "qty": "1"}]), 422, "no line 9")

    last = ok(
        ship(
            shop,
            so["so_id"],
            [{"so_line": 1, "qty": "10", "lot": "L4"}, {"so_line": 2, "qty": "5"}],
            tracking_no="SF1234567890",
        ),
        201,
    )
    assert last["tracking_no"] == "SF1234567890"
    closed = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}"))
    assert closed["status"] == "closed"
    assert closed["ended_at"] is not None
    assert [line["shipped_qty"] for line in closed["lines"]] == ["20", "5"]
    assert all(line["reservations"] == [] for line in closed["lines"])
    assert on_hand(shop, "TEA") == {"": "2"}
    refused(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1"}]), 409, "closed", "confirmed")

    page = ok(shop.get(SHIPMENTS, params={"so_id": so["so_id"]}))
    assert [s["shipment_id"] for s in page["shipments"]] == [
        shipment["shipment_id"],
        last["shipment_id"],
    ]


def test_tracking_number_needs_the_current_version_and_the_note_prints(
    shop: TestClient,
) -> None:
    so = new_so(shop, lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    shipment = ok(ship(shop, so["so_id"], [{"so_line": 2, "qty": "2"}]), 201)
    where = f"{SHIPMENTS}/{shipment['shipment_id']}"
    set_it = shop.post(
        f"{where}/tracking", json={"tracking_no": "YT-1"}, headers={"If-Match": '"1"'}
    )
    assert ok(set_it)["tracking_no"] == "YT-1"
    assert set_it.headers["ETag"] == '"2"'
    stale = shop.post(
        f"{where}/tracking", json={"tracking_no": "YT-2"}, headers={"If-Match": '"1"'}
    )
    refused(stale, 412, "changed since")
    assert ok(shop.get(where))["tracking_no"] == "YT-1"

    page = shop.get(f"{where}/delivery-note")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for text in (shipment["shipment_id"], so["so_id"], "c1 (CUS-1)", "茶", "YT-1", "签收"):
        assert text in page.text

    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = connection.execute(
            select(audit_log.c.action).where(audit_log.c.resource == "shipment")
        ).scalars()
        assert list(actions) == ["shipment.create", "shipment.tracking"]


def test_a_clerk_picks_and_ships_without_prices_and_other_sites_are_unseen(
    shop: TestClient,
) -> None:
    so = new_so(shop, lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    clerk = as_user(shop, "clerk", ["warehouse_clerk"], sites=["S01"])
    picks = shop.get(f"{SALES_ORDERS}/{so['so_id']}/pick-list", headers=clerk)
    assert "price" not in picks.text
    assert ok(picks)["lines"][0]["lot"] == "L3"
    shipped = ok(ship(shop, so["so_id"], [{"so_line": 1, "qty": "3"}], headers=clerk), 201)
    assert "price" not in str(shipped)
    assert "amount" not in str(shipped)

    other = as_user(shop, "elsewhere", ["warehouse_clerk"], sites=["S02"])
    refused(shop.get(f"{SALES_ORDERS}/{so['so_id']}/pick-list", headers=other), 404)
    refused(shop.get(f"{SHIPMENTS}/{shipped['shipment_id']}", headers=other), 404)
    refused(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1"}], headers=other), 404)
    assert ok(shop.get(SHIPMENTS, headers=other))["shipments"] == []
    finance = as_user(shop, "fin", ["finance"])
    refused(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1"}], headers=finance), 403)


def test_an_edges_shipment_events_move_the_order_too_a_swapped_lot_included(
    shop: TestClient, site: SiteLedger
) -> None:
    so = new_so(shop, lines=[{"item_code": "PILL", "qty": "2", "uom": "盒", "unit_price": "1"}])
    version = ok(confirm(shop, so["so_id"]))["version"]
    named = {"doc_type": "sales_order", "doc_id": so["so_id"], "doc_line": 1}
    events = [
        # 8 of L3 (5 reserved): the other 3 come off L4's reservation.
        site.event("issue", "-8", item="PILL", uom="片", lot="L3", location="A-02", **named),
        # Not counted: another item, a line that does not exist.
        site.event("issue", "-1", item="TEA", uom="kg", **named),
        site.event("issue", "-1", item="PILL", uom="片", lot="L4", **{**named, "doc_line": 9}),
    ]
    ok(shop.post(SYNC_EVENTS, json=site.batch(events)))
    order = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}"))
    assert (order["status"], order["version"]) == ("confirmed", version + 1)
    assert (order["lines"][0]["shipped_qty"], lots(order["lines"][0])) == ("8", [("L4", "12")])

    last = site.event("issue", "-12", item="PILL", uom="片", lot="L4", **named)
    ok(shop.post(SYNC_EVENTS, json=site.batch([last])))
    order = ok(shop.get(f"{SALES_ORDERS}/{so['so_id']}"))
    assert (order["status"], order["lines"][0]["shipped_qty"]) == ("closed", "20")
    assert order["lines"][0]["reservations"] == []
