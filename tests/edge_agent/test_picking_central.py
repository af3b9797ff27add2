"""Central books a shipment picked and packed at an edge (the real central in-process, on
SQLite and PostgreSQL; a real ledger file; the agent's own puller and pusher).

The edge receives three lots; central confirms an order FEFO over the two earliest; a
fourth, earlier lot arrives after the confirm. The pick list reaches the edge through the
feed; the station takes the reserved lot, refuses a later one, swaps in the earlier one
and packs two SSCC units; the push books two shipments (found by SSCC in the API and the
console), moves the reservation from the
swapped lot to the picked one, and the rest of the line stays reserved (a short pick,
reported to central as an alert shown on the order).
Cancelling an order withdraws its pick list from the edge.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.picking import PickingStation, PickRefusedError
from edge_agent.stations.sscc import SsccConfig
from edge_agent.sync import Pusher
from jxc.paths import ALERTS, SALES_ORDERS, SHIPMENTS, STOCK_AVAILABLE
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    add_test_user,
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import ok
from tests.edge_agent.site_kit import (  # noqa: F401 (the ledger fixture)
    TODAY,
    Scanner,
    day,
    ledger,
    pill_site,
    receive,
    sync,
)
from tests.web.test_console_pages import browser

gs1, plain = Scanner("pick-1").gs1, Scanner("pick-1").plain


def reserved(order: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["lot"], r["qty"]) for r in order["lines"][0]["reservations"]]


def test_central_books_an_edge_picked_shipment_with_a_swapped_lot(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    pill_site(client, {"A-01": "storage"})
    catalog = Catalog(ledger)
    pusher = Pusher(ledger, client)
    for lot, offset in (("L1", 30), ("L2", 60), ("L9", 90)):
        receive(ledger, lot, day(offset), "10")
    sync(pusher, catalog)

    body = {
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [{"item_code": "PILL", "qty": "20", "unit_price": "3"}],
    }
    so = ok(client.post(SALES_ORDERS, json=body), 201)
    so_id = so["so_id"]
    confirmed = ok(client.post(f"{SALES_ORDERS}/{so_id}/confirm"))
    assert reserved(confirmed) == [("L1", "10"), ("L2", "10")]
    receive(ledger, "L5", day(45), "10")  # earlier than L2, arrived after the confirm
    sync(pusher, catalog)
    listed = catalog.pick_list(so_id)
    assert listed is not None
    assert [(lot.lot, lot.qty) for lot in listed.lines[0].lots] == [
        ("L1", Decimal(10)),
        ("L2", Decimal(10)),
    ]

    station = PickingStation(ledger, catalog, SsccConfig(0, "0614141"))
    for scan in (plain(so_id), plain("A-01"), gs1("L1", day(30), 10)):
        station.on_scan(scan, today=TODAY)
    with pytest.raises(PickRefusedError, match="first expiry first"):
        station.on_scan(gs1("L9", day(90), 4), today=TODAY)
    station.on_scan(gs1("L5", day(45), 6), today=TODAY)
    units = station.on_scan(plain("PACK"), today=TODAY)
    assert isinstance(units, list)
    shorts = station.on_scan(plain("DONE"), today=TODAY)
    assert [(s.so_line, s.picked, s.wanted) for s in shorts] == [(1, Decimal(16), Decimal(20))]
    sync(pusher, catalog)

    # The short reached central with the push: one short_pick alert in the inbox and on
    # the order's page; sent again (an answer lost), it raises nothing more.
    with ledger.reading() as conn:
        assert conn.execute(
            "SELECT so_line, picked, wanted, sent_at IS NOT NULL FROM pick_shorts"
        ).fetchall() == [(1, "16", "20", 1)]
    inbox = ok(client.get(ALERTS, params={"kind": "short_pick"}))["alerts"]
    assert [
        (a["site_id"], a["item_code"], a["qty"], a["threshold"], a["status"]) for a in inbox
    ] == [("S01", "PILL", "16", "20", "open")]
    assert inbox[0]["detail"].startswith(f"{so_id} line 1: picked 16 of 20 EA")
    with ledger.transaction() as conn:
        conn.execute("UPDATE pick_shorts SET sent_at = NULL")
    assert pusher.report_shorts() == 1
    assert len(ok(client.get(ALERTS, params={"kind": "short_pick"}))["alerts"]) == 1

    order = ok(client.get(f"{SALES_ORDERS}/{so_id}"))
    assert (order["status"], order["lines"][0]["shipped_qty"]) == ("confirmed", "16")
    # 6 of L5 replaced 6 of L2 (not of L1, the earliest): the rest stays reserved.
    assert reserved(order) == [("L2", "4")]
    shipments = ok(client.get(SHIPMENTS, params={"so_id": so_id}))["shipments"]
    assert sorted(
        (s["sscc"], [(x["so_line"], x["lot"], x["qty"], x["location"]) for x in s["lines"]])
        for s in shipments
    ) == sorted(
        [
            (units[0].sscc, [(1, "L1", "10", "A-01")]),
            (units[1].sscc, [(1, "L5", "6", "A-01")]),
        ]
    )
    # Each unit is found by its SSCC-18: in the API, and in the console typed or scanned
    # off its label with the (00); the shipment page shows it.
    sscc = units[1].sscc
    shipment_id = next(s["shipment_id"] for s in shipments if s["sscc"] == sscc)
    by_sscc = ok(client.get(SHIPMENTS, params={"sscc": sscc}))["shipments"]
    assert [s["shipment_id"] for s in by_sscc] == [shipment_id]
    assert client.get(SHIPMENTS, params={"sscc": "123"}).status_code == 422
    add_test_user(client.app.state.engine, "clerk-sscc", ["warehouse_clerk"])  # type: ignore[attr-defined]
    console = browser(client.app, "clerk-sscc", "en")  # type: ignore[arg-type]
    listed = console.get("/console/shipments").text
    assert units[0].sscc in listed
    assert sscc in listed
    found = console.get("/console/shipments", params={"sscc": f"(00) {sscc}"}).text
    assert found.count("/console/shipments/view?id=") == 1
    assert f"/console/shipments/view?id={shipment_id}" in found
    assert console.get("/console/shipments", params={"sscc": "12x"}).status_code == 422
    page = console.get("/console/shipments/view", params={"id": shipment_id}).text
    assert f'id="sscc">(00) {sscc} <' in page
    so_page = console.get("/console/sales-orders/view", params={"id": so_id}).text
    assert 'id="so-short-picks"' in so_page
    assert "picked 16 of 20 EA at the site" in so_page

    stock = ok(client.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": "PILL"}))
    assert {lot["lot"]: lot["on_hand"] for lot in stock["lots"]} == {
        "L1": "0",
        "L2": "10",
        "L5": "4",
        "L9": "10",
    }

    # A command on the order publishes the list again, with what central has shipped: the
    # edge does not count its own synced picks twice.
    version = ok(client.get(f"{SALES_ORDERS}/{so_id}"))["version"]
    ok(client.post(f"{SALES_ORDERS}/{so_id}/reserve", headers={"If-Match": f'"{version}"'}))
    sync(pusher, catalog)
    again = catalog.pick_list(so_id)
    assert again is not None
    assert (again.lines[0].shipped, again.lines[0].lots[0].lot) == (Decimal(16), "L2")
    station.on_scan(plain(so_id), today=TODAY)
    station.on_scan(plain("A-01"), today=TODAY)
    with pytest.raises(PickRefusedError, match=r"still needs \(4 EA\)"):
        station.on_scan(gs1("L2", day(60), 5), today=TODAY)
    station.on_scan(gs1("L2", day(60), 4), today=TODAY)

    # Cancelled at central: the pick list leaves the edge, and nothing more is picked for it.
    other = ok(client.post(SALES_ORDERS, json=body), 201)["so_id"]
    ok(client.post(f"{SALES_ORDERS}/{other}/confirm"))
    sync(pusher, catalog)
    assert catalog.pick_list(other) is not None
    version = ok(client.get(f"{SALES_ORDERS}/{other}"))["version"]
    cancel = client.post(
        f"{SALES_ORDERS}/{other}/cancel",
        json={"reason": "customer withdrew"},
        headers={"If-Match": f'"{version}"'},
    )
    ok(cancel)
    sync(pusher, catalog)
    assert catalog.pick_list(other) is None
