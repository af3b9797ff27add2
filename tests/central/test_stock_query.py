"""``GET /api/v1/stock``: filters combine, rows come in key order, amounts are strings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jxc.paths import STOCK, SYNC_EVENTS


@pytest.fixture
def stocked(client: TestClient, site: Any, other_site: Any) -> TestClient:
    for ledger, events in (
        (
            site,
            [
                site.event("receipt", "1", item="MILK", lot="L2"),
                site.event("receipt", "2", item="MILK", lot="L1"),
                site.event("receipt", "3", item="BREAD"),
                site.event("receipt", "4", item="MILK", lot="L1", location="B-01"),
            ],
        ),
        (other_site, [other_site.event("receipt", "5", item="MILK", lot="L1")]),
    ):
        response = client.post(SYNC_EVENTS, json=ledger.batch(events))
        assert response.status_code == 200, response.text
    return client


def keys(client: TestClient, **params: str) -> list[tuple[str, str, str, str | None, str]]:
    response = client.get(STOCK, params=params)
    assert response.status_code == 200, response.text
    return [(r["site_id"], r["location"], r["item"], r["lot"], r["qty"]) for r in response.json()]


def test_all_balances_in_key_order(stocked: TestClient) -> None:
    assert keys(stocked) == [
        ("S01", "A-01", "BREAD", None, "3"),
        ("S01", "A-01", "MILK", "L1", "2"),
        ("S01", "A-01", "MILK", "L2", "1"),
        ("S01", "B-01", "MILK", "L1", "4"),
        ("S02", "A-01", "MILK", "L1", "5"),
    ]


def test_filter_by_site(stocked: TestClient) -> None:
    assert [k[0] for k in keys(stocked, site_id="S02")] == ["S02"]


def test_filters_combine(stocked: TestClient) -> None:
    assert keys(stocked, site_id="S01", item="MILK", lot="L1") == [
        ("S01", "A-01", "MILK", "L1", "2"),
        ("S01", "B-01", "MILK", "L1", "4"),
    ]
    assert keys(stocked, site_id="S01", item="MILK", lot="L1", location="B-01") == [
        ("S01", "B-01", "MILK", "L1", "4"),
    ]


def test_empty_lot_filter_selects_stock_without_a_lot(stocked: TestClient) -> None:
    assert keys(stocked, lot="") == [("S01", "A-01", "BREAD", None, "3")]


def test_unknown_site_has_no_stock(stocked: TestClient) -> None:
    assert keys(stocked, site_id="S99") == []


def test_balance_row_shape(stocked: TestClient) -> None:
    row = stocked.get(STOCK, params={"item": "BREAD"}).json()[0]

    assert row == {
        "site_id": "S01",
        "location": "A-01",
        "item": "BREAD",
        "lot": None,
        "uom": "pcs",
        "qty": "3",
    }
