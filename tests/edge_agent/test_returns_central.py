"""A customer return received at the edge (the real central in-process, on SQLite and
PostgreSQL; a real ledger file; the agent's own puller and pusher).

Central ships 8 PILL of lot L1 and authorises 5 to come back. The return reaches the edge
through the feed; the edge receives it offline into its returns location, one carton
more than authorised (site policy ``warn``), then pushes: central shows the return
received with what arrived per line (6), the goods in quarantine (not sellable), and an
over-receipt exception for a person. Central's own receive is then refused (received
already); restocking the line moves all 6 back to a sellable location, the return closes,
and its tombstone removes it from the edge. A return event naming a return of another
site is stored but counted nowhere, with an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog, Puller
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.returns import ReturnRefusedError, ReturnsStation
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.paths import (
    ALERTS,
    CUSTOMER_RETURNS,
    ITEMS,
    PARTNERS,
    SALES_ORDERS,
    SHIPMENTS,
    STOCK,
)
from simulators.scanner import GS
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import location, ok, site
from tests.central.test_purchasing import refused

GTIN = "09506000134352"
TODAY = datetime.now(UTC).date()
OFFLINE = "http://127.0.0.1:9"


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def gs1(lot: str, expiry: date, count: int) -> Scan:
    data = f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}37{count}"
    return Scan("ret-1", data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))


def plain(data: str) -> Scan:
    return Scan("ret-1", data.encode(), data, None, None, datetime.now(UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def sync(pusher: Pusher, catalog: Catalog) -> None:
    """Push the ledger, then pull the feed, as the agent's jobs do."""
    pusher.run()
    assert pusher.ledger.counts().pending == 0
    puller = Puller(catalog, pusher.client, site_id="S01")
    while puller.pull_once():
        pass
    assert puller.last_error is None


def stock(central: TestClient) -> dict[tuple[str, str | None], Decimal]:
    rows = ok(central.get(STOCK, params={"site_id": "S01", "item": "PILL"}))
    return {
        (row["location"], row["lot"]): Decimal(row["qty"]) for row in rows if Decimal(row["qty"])
    }


def test_a_return_authorised_at_central_is_received_offline_at_the_edge_then_restocked(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,
) -> None:
    site(client)
    ok(location(client, "A-01", level="zone", kind="storage"))
    ok(location(client, "RET", level="zone", kind="quarantine"))
    ok(client.post(PARTNERS, json={"code": "CUS-1", "is_customer": True, "name": "c1"}), 201)
    item = {
        "name": "药片",
        "uom": "EA",
        "lot_tracked": True,
        "expiry_tracked": True,
        "barcodes": [{"barcode": GTIN}],
    }
    ok(client.put(f"{ITEMS}/PILL", json=item))
    catalog, pusher = Catalog(ledger), Pusher(ledger, client)
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", lot="L1", expiry=day(90), location="A-01",
            qty=Decimal(10), uom="EA",
        )
    )  # fmt: skip
    sync(pusher, catalog)

    body = {
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [{"item_code": "PILL", "qty": "8", "unit_price": "3"}],
    }
    so_id = ok(client.post(SALES_ORDERS, json=body), 201)["so_id"]
    ok(client.post(f"{SALES_ORDERS}/{so_id}/confirm"))
    shipment = {"so_id": so_id, "lines": [{"so_line": 1, "qty": "8", "lot": "L1"}]}
    ok(client.post(SHIPMENTS, json=shipment), 201)
    authorised = {
        "so_id": so_id,
        "reason": "包装破损",
        "lines": [{"so_line": 1, "qty": "5", "lot": "L1"}],
    }
    ra = ok(client.post(CUSTOMER_RETURNS, json=authorised), 201)
    return_id = ra["return_id"]
    assert [line["received_qty"] for line in ra["lines"]] == ["0"]

    sync(pusher, catalog)
    cached = catalog.customer_return(return_id)
    assert cached is not None
    assert [(line.item_code, line.lot, line.qty, line.expiry) for line in cached.lines] == [
        ("PILL", "L1", Decimal(5), day(90))
    ]

    # Offline: the edge receives on its own, one carton more than authorised (warned).
    station = ReturnsStation(ledger, catalog, location="RET", over="warn")
    station.on_scan(plain(return_id))
    station.on_scan(gs1("L1", day(90), 3))
    assert station.display == f"OK 3 EA PILL lot L1 into RET ({return_id} line 1: 3/5 EA)"
    station.on_scan(gs1("L1", day(90), 3))
    assert station.display.startswith("WARNING more than authorised (5 EA)")
    pending = ledger.counts().pending
    Pusher(ledger, httpx.Client(base_url=OFFLINE, timeout=0.2)).run()
    assert ledger.counts().pending == pending == 2
    assert ok(client.get(f"{CUSTOMER_RETURNS}/{return_id}"))["status"] == "authorised"

    # Online again: the push advances the return in its own transaction.
    sync(pusher, catalog)
    sync(pusher, catalog)  # a second run sends nothing and changes nothing
    received = ok(client.get(f"{CUSTOMER_RETURNS}/{return_id}"))
    assert received["status"] == "received"
    assert received["version"] == 2
    assert received["received_by"] == "ret-1"
    assert [
        (line["qty"], line["received_qty"], line["location"], line["disposition"])
        for line in received["lines"]
    ] == [("5", "6", "RET", "pending")]
    assert stock(client) == {("A-01", "L1"): Decimal(2), ("RET", "L1"): Decimal(6)}
    inbox = ok(client.get(ALERTS, params={"kind": "return_over"}))["alerts"]
    assert [(a["site_id"], a["item_code"], a["qty"], a["threshold"]) for a in inbox] == [
        ("S01", "PILL", "3", "5")
    ]
    assert inbox[0]["detail"].startswith(f"{return_id} line 1: 6 EA of PILL received")
    # Still on the edge (received, not closed): a late carton could still come.
    assert catalog.customer_return(return_id) is not None

    # Central cannot receive it a second time; restock proceeds as for a central receive.
    where = f"{CUSTOMER_RETURNS}/{return_id}"
    refused(client.post(f"{where}/receive"), 409, "received")
    closed = ok(client.post(f"{where}/restock", json={"line_no": 1, "location": "A-01"}))
    assert closed["status"] == "closed"
    assert (closed["lines"][0]["disposition"], closed["lines"][0]["location"]) == (
        "restocked",
        "A-01",
    )
    assert stock(client) == {("A-01", "L1"): Decimal(8)}
    sync(pusher, catalog)
    assert catalog.customer_return(return_id) is None, "closed: the tombstone reached the edge"

    # An event naming a return the site does not have: stored, counted nowhere, raised.
    ledger.append(
        EventDraft(
            kind=EventKind.RETURN, item="PILL", lot="L1", expiry=day(90), location="RET",
            qty=Decimal(1), uom="EA", doc_type="customer_return", doc_id="RA999999", doc_line=1,
        )
    )  # fmt: skip
    sync(pusher, catalog)
    assert stock(client)[("RET", "L1")] == Decimal(1)
    unknown = ok(client.get(ALERTS, params={"kind": "return_unknown"}))["alerts"]
    assert [a["detail"] for a in unknown] == [
        "RA999999 is no customer return of site S01: stored, not counted"
    ]


def test_a_return_closed_short_at_central_stops_the_edge_and_a_late_carton_is_raised(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,
) -> None:
    """Nothing has arrived of the return at central when it is closed short (the
    customer kept the goods); the edge had booked a carton offline. The push counts it
    with a ``return_over`` exception (after the close), the tombstone removes the return
    from the edge and its station refuses the next carton."""
    site(client)
    ok(location(client, "A-01", level="zone", kind="storage"))
    ok(location(client, "RET", level="zone", kind="quarantine"))
    ok(client.post(PARTNERS, json={"code": "CUS-1", "is_customer": True, "name": "c1"}), 201)
    item = {
        "name": "药片",
        "uom": "EA",
        "lot_tracked": True,
        "expiry_tracked": True,
        "barcodes": [{"barcode": GTIN}],
    }
    ok(client.put(f"{ITEMS}/PILL", json=item))
    catalog, pusher = Catalog(ledger), Pusher(ledger, client)
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", lot="L1", expiry=day(90), location="A-01",
            qty=Decimal(10), uom="EA",
        )
    )  # fmt: skip
    sync(pusher, catalog)
    body = {
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [{"item_code": "PILL", "qty": "8", "unit_price": "3"}],
    }
    so_id = ok(client.post(SALES_ORDERS, json=body), 201)["so_id"]
    ok(client.post(f"{SALES_ORDERS}/{so_id}/confirm"))
    ok(client.post(SHIPMENTS, json={"so_id": so_id, "lines": [{"so_line": 1, "qty": "8"}]}), 201)
    authorised = {"so_id": so_id, "reason": "退货", "lines": [{"so_line": 1, "qty": "5"}]}
    return_id = ok(client.post(CUSTOMER_RETURNS, json=authorised), 201)["return_id"]
    sync(pusher, catalog)
    assert catalog.customer_return(return_id) is not None

    station = ReturnsStation(ledger, catalog, location="RET")
    station.on_scan(plain(return_id))
    station.on_scan(gs1("L1", day(90), 2))  # booked, not pushed yet

    where = f"{CUSTOMER_RETURNS}/{return_id}"
    short = ok(
        client.post(
            f"{where}/close-short",
            json={"reason": "客户保留"},
            headers={"Idempotency-Key": "short-1", "If-Match": '"1"'},
        )
    )
    assert short["status"] == "closed"
    assert [(x["received_qty"], x["disposition"]) for x in short["lines"]] == [("0", "short")]

    sync(pusher, catalog)
    assert catalog.customer_return(return_id) is None, "the tombstone reached the edge"
    got = ok(client.get(where))
    assert (got["status"], got["lines"][0]["received_qty"]) == ("closed", "2")
    assert stock(client) == {("A-01", "L1"): Decimal(2), ("RET", "L1"): Decimal(2)}
    late = ok(client.get(ALERTS, params={"kind": "return_over"}))["alerts"]
    assert [(a["source"], a["qty"], a["location"]) for a in late] == [("edge_return", "2", "RET")]
    assert "after the return was closed short" in late[0]["detail"]

    with pytest.raises(ReturnRefusedError, match="received at the office or closed"):
        station.on_scan(gs1("L1", day(90), 1))
    assert ledger.counts().pending == 0
