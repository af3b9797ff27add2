"""A transfer between two edges, each offline part of the time (the real central
in-process, on SQLite and PostgreSQL; two real ledger files; the agent's own puller and
pusher per site).

Central approves a transfer S01 → S02; both ends get it through the feed. S01 ships FEFO
and syncs: S01's stock is down, the goods are in transit at central, valued at S01's cost.
S02 receives while offline, short by two of one lot: central still shows all of it in
transit and raises nothing (a partial arrival is not yet a difference). S02 comes online:
the transfer closes as received, the short is an exception with both quantities, what is
missing stays in transit, and S02's stock carries S01's cost, not the item's standard one.
A second transfer arrives at central in the other order (the receiver syncs before the
sender): nothing is raised until the sender's side is in, then it closes whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central_api.core.db import write_transaction
from central_api.models import valuation_entries
from central_api.services import transfers
from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.transfers import TransferStation
from edge_agent.sync import Pusher
from jxc.paths import STOCK_IN_TRANSIT, TRANSFER_EXCEPTIONS, TRANSFERS
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import location, ok, site
from tests.central.test_purchasing import as_user
from tests.edge_agent.site_kit import Scanner, day, offline_push, pill_site, receive, stock, sync

gs1, plain = Scanner("tr-1").gs1, Scanner("tr-1").plain


class Edge:
    """One site's edge: its ledger file, catalog, pusher and transfer station."""

    def __init__(self, central: TestClient, path: Path, site_id: str) -> None:
        self.ledger = Ledger(path / f"{site_id}.db", site_id=site_id)
        self.catalog = Catalog(self.ledger)
        self.pusher = Pusher(self.ledger, central)
        self.station = TransferStation(self.ledger, self.catalog)
        self.site_id = site_id

    def sync(self) -> None:
        """Push the ledger, then pull the feed, as the agent's jobs do."""
        sync(self.pusher, self.catalog, self.site_id)

    def offline_push(self) -> None:
        """The pusher's run while central is unreachable: nothing leaves the ledger."""
        offline_push(self.ledger)

    def scan(self, *scans: Scan) -> Any:
        answer = None
        for each in scans:
            answer = self.station.on_scan(each)
        return answer


@pytest.fixture
def edges(client: TestClient, tmp_path: Path) -> Iterator[tuple[Edge, Edge]]:  # noqa: F811
    a, b = Edge(client, tmp_path, "S01"), Edge(client, tmp_path, "S02")
    yield a, b
    a.ledger.close()
    b.ledger.close()


def in_transit(central: TestClient, transfer_id: str) -> dict[str | None, Decimal]:
    rows = ok(central.get(STOCK_IN_TRANSIT, params={"item": "PILL"}))
    return {row["lot"]: Decimal(row["qty"]) for row in rows if row["transfer_id"] == transfer_id}


def approved_transfer(central: TestClient, qty: str) -> str:
    maker = as_user(central, "maker", ["store_manager"])
    boss = as_user(central, "boss", ["store_manager"])
    made = ok(
        central.post(
            TRANSFERS,
            json={
                "from_site": "S01",
                "to_site": "S02",
                "lines": [{"item_code": "PILL", "qty": qty}],
            },
            headers=maker,
        ),
        201,
    )
    tid: str = made["transfer_id"]
    ok(central.post(f"{TRANSFERS}/{tid}/approve", json={}, headers=boss))
    return tid


def transfer_value(central: TestClient, site_id: str, kind: str) -> tuple[Decimal, Decimal]:
    """(value in, cost of goods out) of the site's transfer events, as valuation booked it."""
    engine = central.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        value_in, cogs = connection.execute(
            select(
                func.sum(valuation_entries.c.in_value), func.sum(valuation_entries.c.cogs)
            ).where(valuation_entries.c.site_id == site_id, valuation_entries.c.kind == kind)
        ).one()
    return Decimal(value_in or 0), Decimal(cogs or 0)


def test_a_transfer_between_two_edges_each_offline_part_of_the_time(
    client: TestClient,  # noqa: F811 (the fixture)
    edges: tuple[Edge, Edge],
) -> None:
    a, b = edges
    site(client, "S02")
    ok(location(client, "B-01", site_id="S02", level="zone", kind="storage"))
    # the standard cost: what a transfer_in must NOT be valued at
    pill_site(client, {"A-01": "storage"}, customer=False, cost="9")
    for lot, offset, qty in (("L2", 60, "10"), ("L1", 30, "10"), ("L3", 90, "10")):
        receive(a.ledger, lot, day(offset), qty, unit_cost=Decimal(4))
    tid = approved_transfer(client, "20")
    a.sync()
    b.sync()
    assert [t.transfer_id for t in a.catalog.transfers()] == [tid]
    assert [t.transfer_id for t in b.catalog.transfers()] == [tid]

    # --- S01 ships FEFO (L1, then L2; L3 expires later and is refused) and syncs.
    a.scan(plain(tid), plain("A-01"), gs1("L1", day(30), 10))
    with pytest.raises(Exception, match="after lot L2"):
        a.scan(gs1("L3", day(90), 10))
    a.scan(gs1("L2", day(60), 10), plain("DONE"))
    assert a.station.display == f"DONE {tid} SHIPPED: every line as ordered"
    a.sync()
    got = ok(client.get(f"{TRANSFERS}/{tid}"))
    assert got["status"] == "shipped"
    assert in_transit(client, tid) == {"L1": Decimal(10), "L2": Decimal(10)}
    assert stock(client, "S01") == {("A-01", "L3"): Decimal(10)}
    assert transfer_value(client, "S01", "transfer_out") == (Decimal(0), Decimal(80))

    # --- S02 receives offline, two short of L2: central still has it all in transit.
    b.scan(plain(tid), plain("B-01"), gs1("L1", day(30), 10), gs1("L2", day(60), 8))
    b.scan(plain("DONE"))
    assert b.station.display == f"DONE {tid} RECEIVED: line 1 PILL 18/20 EA"
    b.offline_push()
    assert ok(client.get(f"{TRANSFERS}/{tid}"))["status"] == "shipped"
    assert in_transit(client, tid) == {"L1": Decimal(10), "L2": Decimal(10)}
    assert ok(client.get(TRANSFER_EXCEPTIONS, params={"transfer_id": tid})) == []
    assert stock(client, "S02") == {}

    # --- S02 is back: the transfer closes, the short is an exception with both quantities.
    b.sync()
    got = ok(client.get(f"{TRANSFERS}/{tid}"))
    assert got["status"] == "received"
    raised = ok(client.get(TRANSFER_EXCEPTIONS, params={"transfer_id": tid}))
    assert [(e["kind"], e["lot"], e["shipped_qty"], e["received_qty"]) for e in raised] == [
        ("short", "L2", "10", "8")
    ]
    assert in_transit(client, tid) == {"L2": Decimal(2)}
    assert stock(client, "S02") == {("B-01", "L1"): Decimal(10), ("B-01", "L2"): Decimal(8)}
    # Cost travels: S02's goods are worth what they cost S01 (4 a unit), not the item's 9.
    assert transfer_value(client, "S02", "transfer_in") == (Decimal(72), Decimal(0))
    # Neither station offers the transfer again.
    assert a.station.open_transfers() == []
    assert b.station.open_transfers() == []

    # --- The other order: S01 is offline while S02 receives and syncs first.
    tid2 = approved_transfer(client, "5")
    a.sync()
    b.sync()
    a.scan(plain(tid2), plain("A-01"), gs1("L3", day(90), 5), plain("DONE"))
    a.offline_push()
    b.scan(plain(tid2), plain("B-01"), gs1("L3", day(90), 5), plain("DONE"))
    b.sync()
    # The arrival is in; the departure is not: nothing is raised, nothing closed.
    assert ok(client.get(f"{TRANSFERS}/{tid2}"))["status"] == "approved"
    assert ok(client.get(TRANSFER_EXCEPTIONS, params={"transfer_id": tid2})) == []
    a.sync()
    assert ok(client.get(f"{TRANSFERS}/{tid2}"))["status"] == "received"
    assert ok(client.get(TRANSFER_EXCEPTIONS, params={"transfer_id": tid2})) == []
    assert in_transit(client, tid2) == {}
    assert stock(client, "S01") == {("A-01", "L3"): Decimal(5)}
    assert stock(client, "S02")[("B-01", "L3")] == Decimal(5)
    assert transfer_value(client, "S02", "transfer_in") == (Decimal(92), Decimal(0))

    # The projection equals a rebuild from both streams.
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        incremental = transfers.progress(connection)
        connection.rollback()
        with write_transaction(connection):
            transfers.rebuild(connection)
        assert transfers.progress(connection) == incremental
