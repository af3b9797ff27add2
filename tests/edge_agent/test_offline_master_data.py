"""Item units, the site's stock levels and its locations reach the edge through the change
feed and stay in the ledger file (migration 9), so a station has them offline; changes of
entity kinds the agent does not know are skipped and counted, never a reason to stall.

The first test runs the real central (SQLite and PostgreSQL) and a real ledger file: the
puller reads ``/api/v1/sync/changes`` as the agent does, and the file is read again after
it is closed, as after a restart without central.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from edge_agent.catalog import CachedLocation, Catalog, ItemLevels, Puller, read_page
from edge_agent.ledger import Ledger
from edge_agent.migrations import LATEST, migrate
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import location, ok, site

SITES = "/api/v1/sites"


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    opened = Ledger(ledger_path, site_id="S01")
    yield opened
    opened.close()


def _pull(puller: Puller) -> None:
    while puller.pull_once():
        pass
    assert puller.last_error is None


def test_units_levels_and_locations_reach_the_edge_and_stay_offline(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,
    ledger_path: Path,
) -> None:
    for site_id in ("S01", "S02"):
        site(client, site_id)
        ok(location(client, "A", site_id=site_id, level="zone"))
    ok(location(client, "A-01", level="aisle", parent="A", kind="quarantine", name="待检"))
    ok(
        client.put(
            "/api/v1/items/TEA",
            json={
                "name": "茶",
                "uom": "片",
                "units": [{"uom": "盒", "factor": "10"}, {"uom": "箱", "factor": "12", "of": "盒"}],
            },
        )
    )
    levels = {"safety_stock": "5", "reorder_point": "8", "reorder_qty": "24"}
    ok(client.put(f"{SITES}/S01/item-levels/TEA", json=levels))
    ok(client.put(f"{SITES}/S02/item-levels/TEA", json={**levels, "safety_stock": "1"}))
    catalog = Catalog(ledger)
    puller = Puller(catalog, client, site_id="S01", page_size=2)  # several pages
    _pull(puller)
    assert catalog.units("TEA") == {"盒": Decimal(10), "箱": Decimal(120)}
    assert catalog.levels("TEA") == ItemLevels("TEA", Decimal(5), Decimal(8), Decimal(24))
    assert catalog.location("A-01") == CachedLocation(
        "A-01", "A", "aisle", "quarantine", "待检", True
    )
    counts = catalog.counts()
    assert (counts["item_units"], counts["item_levels"], counts["locations"]) == (2, 1, 2)
    assert puller.skipped_unknown == 0

    # central withdraws a unit, the levels and a location: tombstones remove them
    ok(
        client.put(
            "/api/v1/items/TEA",
            json={"name": "茶", "uom": "片", "units": [{"uom": "盒", "factor": "10"}]},
        )
    )
    assert client.delete(f"{SITES}/S01/item-levels/TEA").status_code in (200, 204)
    assert client.delete(f"{SITES}/S01/locations/A-01").status_code in (200, 204)
    _pull(puller)
    assert catalog.units("TEA") == {"盒": Decimal(10)}
    assert catalog.levels("TEA") is None
    assert catalog.location("A-01") is None
    assert catalog.location("A") is not None

    # offline: the file alone answers, after the agent stopped and started again
    ledger.close()
    reopened = Ledger(ledger_path, site_id="S01")
    try:
        again = Catalog(reopened)
        assert again.units("TEA") == {"盒": Decimal(10)}
        assert again.location("A") == CachedLocation("A", None, "zone", "storage", "", True)
    finally:
        reopened.close()


def _feed(pages: list[dict[str, Any]]) -> httpx.Client:
    """A central answering the feed with ``pages`` in turn (by cursor)."""
    by_cursor = {}
    cursor = 0
    for body in pages:
        by_cursor[cursor] = body
        cursor = body["next_cursor"]

    def answer(request: httpx.Request) -> httpx.Response:
        wanted = int(request.url.params["cursor"])
        return httpx.Response(200, json=by_cursor[wanted])

    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://central")


def test_changes_of_unknown_kinds_are_skipped_and_counted(ledger: Ledger) -> None:
    changes = [
        {"version": 1, "entity": "item", "key": "T", "op": "upsert", "data": {"item_code": "T"}},
        {"version": 2, "entity": "return_order", "key": "R1", "op": "upsert", "data": {"x": 1}},
        {
            "version": 3,
            "entity": "location",
            "key": "B",
            "op": "upsert",
            "data": {"code": "B", "level": "zone", "kind": "storage"},
        },
        {"version": 4, "entity": "transfer_order", "key": "TO1", "op": "delete"},
    ]
    catalog = Catalog(ledger)
    puller = Puller(
        catalog,
        _feed([{"site_id": "S01", "changes": changes, "next_cursor": 4, "has_more": False}]),
        site_id="S01",
    )
    _pull(puller)
    assert catalog.cursor() == 4  # past the skipped ones too
    assert catalog.item("T") is not None
    assert catalog.location("B") is not None
    assert puller.skipped_unknown == 2
    assert puller.as_dict()["skipped_unknown"] == 2


def test_a_known_kind_that_does_not_validate_still_stops_the_page(ledger: Ledger) -> None:
    bad = {"version": 1, "entity": "location", "key": "B", "op": "upsert", "data": {"code": "B"}}
    catalog = Catalog(ledger)
    puller = Puller(
        catalog,
        _feed([{"site_id": "S01", "changes": [bad], "next_cursor": 1, "has_more": False}]),
        site_id="S01",
        max_backoff_s=0.01,
    )
    puller.pull_once()
    assert puller.last_error is not None
    assert "level" in puller.last_error
    assert catalog.cursor() == 0
    page, skipped = read_page(
        json.dumps({"site_id": "S01", "changes": [], "next_cursor": 0, "has_more": False}).encode()
    )
    assert (page.changes, skipped) == ([], 0)
    with pytest.raises(ValueError, match=r"Expecting|JSON"):
        read_page(b"not json")


def test_migration_9_adds_the_tables_and_pulls_the_feed_again(ledger_path: Path) -> None:
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    try:
        assert migrate(conn, target=8) == 8
        conn.execute("INSERT INTO sync_cursor VALUES ('master-data', 42, '2026-12-04')")
        assert migrate(conn, target=9) == 9 <= LATEST
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"cache_item_units", "cache_item_levels", "cache_locations"} <= tables
        assert conn.execute("SELECT COUNT(*) FROM sync_cursor").fetchone() == (0,)
    finally:
        conn.close()
