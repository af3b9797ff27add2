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

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.returns import ReturnRefusedError, ReturnsStation
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.paths import ALERTS, CUSTOMER_RETURNS, SALES_ORDERS, SHIPMENTS
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import ok
from tests.central.test_purchasing import refused
from tests.edge_agent.site_kit import (  # noqa: F401 (the ledger fixture)
    Scanner,
    day,
    ledger,
    offline_push,
    pill_site,
    receive,
    stock,
    sync,
)

gs1, plain = Scanner("ret-1").gs1, Scanner("ret-1").plain


def shipped_and_pulled(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,  # noqa: F811 (the fixture)
    *,
    lot: str | None,
) -> tuple[Catalog, Pusher, str]:
    """Site S01 (A-01 storage, RET quarantine), 10 PILL of lot L1 received at the edge
    and synced, an order of 8 confirmed and shipped (lot ``lot``, else FEFO): the edge's
    catalog and pusher, and the order's id."""
    pill_site(client, {"A-01": "storage", "RET": "quarantine"})
    catalog, pusher = Catalog(ledger), Pusher(ledger, client)
    receive(ledger, "L1", day(90), "10")
    sync(pusher, catalog)
    body = {
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [{"item_code": "PILL", "qty": "8", "unit_price": "3"}],
    }
    so_id = ok(client.post(SALES_ORDERS, json=body), 201)["so_id"]
    ok(client.post(f"{SALES_ORDERS}/{so_id}/confirm"))
    line: dict[str, Any] = {"so_line": 1, "qty": "8"} | ({"lot": lot} if lot else {})
    ok(client.post(SHIPMENTS, json={"so_id": so_id, "lines": [line]}), 201)
    return catalog, pusher, so_id


def test_a_return_authorised_at_central_is_received_offline_at_the_edge_then_restocked(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    catalog, pusher, so_id = shipped_and_pulled(client, ledger, lot="L1")
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
    assert offline_push(ledger) == 2
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
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    """Nothing has arrived of the return at central when it is closed short (the
    customer kept the goods); the edge had booked a carton offline. The push counts it
    with a ``return_over`` exception (after the close), the tombstone removes the return
    from the edge and its station refuses the next carton."""
    catalog, pusher, so_id = shipped_and_pulled(client, ledger, lot=None)
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
