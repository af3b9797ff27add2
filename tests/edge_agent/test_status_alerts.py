"""The site's stock alerts at the edge (issue 16, edge side): computed from the real ledger
file and the levels, units and locations the change feed left in it, with central out of
reach; they appear and clear as receipts and issues move the stock, and as the date moves
past a lot's expiry bands.

The feed is a recorded page served by a mock transport (the puller reads it as from
central); after that, no central at all: the agent's own test points at a closed port.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.catalog import Catalog, Puller
from edge_agent.config import load_site_config
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stock_alerts import StockAlerts
from jxc.contract import EventKind
from tests.patience import patience_timeout

TODAY = date(2027, 3, 1)


def _change(version: int, entity: str, key: str, data: dict[str, Any] | None) -> dict[str, Any]:
    op = "upsert" if data is not None else "delete"
    return {"version": version, "entity": entity, "key": key, "op": op, "data": data}


FEED = [
    _change(1, "item", "PILL", {"item_code": "PILL", "uom": "片", "expiry_tracked": True}),
    _change(2, "item_unit", "PILL 盒", {"item_code": "PILL", "uom": "盒", "factor": "10"}),
    _change(
        3,
        "item_site",
        "PILL",
        {"item_code": "PILL", "safety_stock": "20", "reorder_point": "50", "reorder_qty": "50"},
    ),
    _change(4, "location", "A", {"code": "A", "level": "zone", "kind": "storage"}),
    _change(5, "location", "Q", {"code": "Q", "level": "zone", "kind": "quarantine"}),
    _change(6, "item", "TEA", {"item_code": "TEA", "uom": "EA"}),
]


def _pull(ledger: Ledger, changes: list[dict[str, Any]], cursor: int = 0) -> None:
    """Apply ``changes`` as one page of the site's feed, read by the real puller."""
    page = {
        "site_id": "S01",
        "changes": changes,
        "next_cursor": changes[-1]["version"],
        "has_more": False,
    }

    def answer(request: httpx.Request) -> httpx.Response:
        assert int(request.url.params["cursor"]) == cursor
        return httpx.Response(200, json=page)

    client = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://central")
    puller = Puller(Catalog(ledger), client, site_id="S01")
    assert puller.pull_once() is False
    assert puller.last_error is None


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    _pull(opened, FEED)
    yield opened
    opened.close()


def _move(
    ledger: Ledger,
    kind: EventKind,
    qty: str,
    *,
    item: str = "PILL",
    uom: str = "片",
    location: str = "A",
    lot: str | None = "L1",
    expiry: date | None = date(2027, 12, 31),
) -> None:
    ledger.append(
        EventDraft(
            kind=kind,
            item=item,
            location=location,
            qty=Decimal(qty),
            uom=uom,
            lot=lot,
            expiry=expiry,
        )
    )


def _kinds(alerts: StockAlerts, today: date = TODAY) -> set[tuple[str, str | None]]:
    return {(a.kind.value, a.lot or a.location) for a in alerts.evaluate(today)}


def test_level_alerts_appear_and_clear_as_stock_moves(ledger: Ledger) -> None:
    alerts = StockAlerts(ledger)
    # Levels but nothing on hand: below safety stock (0 < 20).
    assert _kinds(alerts) == {("below_safety", None)}
    [below] = alerts.evaluate(TODAY)
    assert (below.item, below.qty, below.threshold, below.uom) == ("PILL", 0, 20, "片")

    _move(ledger, EventKind.RECEIPT, "3", uom="盒")  # 30 片: at or below the reorder point
    [reorder] = alerts.evaluate(TODAY)
    assert (reorder.kind.value, reorder.qty, reorder.threshold) == ("below_reorder", 30, 50)

    _move(ledger, EventKind.RECEIPT, "25")  # 55: above both, nothing
    assert alerts.evaluate(TODAY) == []

    _move(ledger, EventKind.RECEIPT, "40", location="Q")  # quarantine is not available
    assert alerts.evaluate(TODAY) == []
    _move(ledger, EventKind.SALE, "-5")  # 50 <= 50
    assert _kinds(alerts) == {("below_reorder", None)}
    _move(ledger, EventKind.ISSUE, "-31")  # 19 < 20: one band clears, the other appears
    [safety] = alerts.evaluate(TODAY)
    assert (safety.kind.value, safety.qty) == ("below_safety", 19)
    _move(ledger, EventKind.RECEIPT, "1", uom="盒")  # 29 again: back to the reorder band
    assert _kinds(alerts) == {("below_reorder", None)}

    # Central removes the levels (a tombstone in the feed): no level alert any more.
    _pull(ledger, [_change(7, "item_site", "PILL", None)], cursor=6)
    assert alerts.evaluate(TODAY) == []


def test_negative_stock_is_an_alert_per_balance_until_it_is_made_good(ledger: Ledger) -> None:
    alerts = StockAlerts(ledger)
    _move(ledger, EventKind.RECEIPT, "100")
    _move(ledger, EventKind.SALE, "-3", item="TEA", uom="EA", lot=None, expiry=None)
    negative = [a for a in alerts.evaluate(TODAY) if a.kind.value == "negative_stock"]
    assert [(a.item, a.location, a.lot, a.qty, a.uom) for a in negative] == [
        ("TEA", "A", None, Decimal(-3), "EA")
    ]
    _move(ledger, EventKind.SALE, "-2", uom="盒")  # 100 - 20 片: converted, not negative
    assert [a.item for a in alerts.evaluate(TODAY)] == ["TEA"]
    _move(ledger, EventKind.RECEIPT, "3", item="TEA", uom="EA", lot=None, expiry=None)
    assert alerts.evaluate(TODAY) == []


def test_expiry_bands_follow_the_date_and_the_lot_leaving(ledger: Ledger) -> None:
    alerts = StockAlerts(ledger)
    _move(ledger, EventKind.RECEIPT, "80", lot="OLD", expiry=date(2027, 4, 15))
    _move(ledger, EventKind.RECEIPT, "20", lot="NEW", expiry=date(2028, 1, 1))

    def expiry(today: date) -> list[tuple[str | None, Decimal, Decimal]]:
        return [
            (a.lot, a.threshold, a.qty) for a in alerts.evaluate(today) if a.kind.value == "expiry"
        ]

    assert expiry(date(2027, 1, 1)) == []  # 104 days left
    assert expiry(date(2027, 1, 15)) == [("OLD", 90, 80)]
    assert expiry(date(2027, 3, 1)) == [("OLD", 60, 80)]  # 45 days
    assert expiry(date(2027, 3, 16)) == [("OLD", 30, 80)]
    assert expiry(date(2027, 4, 15)) == [("OLD", 0, 80)]  # expires today: expired
    report = alerts.report(date(2027, 4, 15))
    assert report["expired_lots"] == 1
    assert report["alerts"][0]["detail"] == "lot OLD expires 2027-04-15 (expired)"

    _move(ledger, EventKind.SCRAP, "-80", lot="OLD", expiry=None)  # written off: gone
    assert expiry(date(2027, 4, 15)) == []


def test_only_new_events_are_read_and_a_restart_reads_the_file_again(
    ledger: Ledger, tmp_path: Path
) -> None:
    alerts = StockAlerts(ledger)
    for _ in range(5):
        _move(ledger, EventKind.RECEIPT, "1")
    alerts.evaluate(TODAY)
    assert alerts.through == 5
    _move(ledger, EventKind.RECEIPT, "60")
    assert alerts.evaluate(TODAY) == []
    assert alerts.through == 6
    ledger.close()
    reopened = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        again = StockAlerts(reopened)
        assert again.evaluate(TODAY) == []
        assert again.through == 6
        _move(reopened, EventKind.SALE, "-50")  # 65 - 50 = 15 < 20
        assert [a.kind.value for a in again.evaluate(TODAY)] == ["below_safety"]
    finally:
        reopened.close()


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=patience_timeout(30)) as answer:
        return answer.headers["content-type"], answer.read()


def test_the_status_page_shows_them_with_central_unreachable(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        """
[site]
id = "S01"
[central]
url = "http://127.0.0.1:9"
timeout_s = 1
[sync]
push_interval_s = 0.2
max_backoff_s = 0.5
[ledger]
path = "edge.db"
[status]
port = 0
"""
    )
    seeded = Ledger(tmp_path / "edge.db", site_id="S01")
    _pull(seeded, FEED)
    _move(seeded, EventKind.RECEIPT, "30")
    _move(seeded, EventKind.SALE, "-2", item="TEA", uom="EA", lot=None, expiry=None)
    seeded.close()

    agent = EdgeAgent(load_site_config(site))
    agent.start()
    try:
        base = agent.status_server.url.removesuffix("/healthz")
        _, body = _get(f"{base}/healthz")
        stock = json.loads(body)["stock_alerts"]
        assert stock["by_kind"] == {
            "negative_stock": 1,
            "below_safety": 0,
            "below_reorder": 1,
            "expiry": 0,
        }
        assert [(a["kind"], a["item"]) for a in stock["alerts"]] == [
            ("negative_stock", "TEA"),
            ("below_reorder", "PILL"),
        ]
        content_type, page = _get(f"{base}/status")
        assert content_type.startswith("text/html")
        text = page.decode()
        assert "库存预警 Stock alerts" in text
        assert "on hand 30 &lt;= reorder point 50" in text
        _, metrics = _get(f"{base}/metrics")
        assert 'jxc_edge_stock_alerts{kind="below_reorder",site="S01"} 1.0' in metrics.decode()

        # The shop receives more: the alert is gone at the next read, central still away.
        agent.ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT,
                item="PILL",
                location="A",
                qty=Decimal(3),
                uom="盒",
                lot="L2",
            )
        )
        agent.ledger.append(
            EventDraft(kind=EventKind.RECEIPT, item="TEA", location="A", qty=Decimal(2), uom="EA")
        )
        _, body = _get(f"{base}/healthz")
        report = json.loads(body)
        assert report["stock_alerts"]["count"] == 0
        assert report["ledger"]["pending"] == 4  # nothing reached central
        _, page = _get(f"{base}/status")
        assert "无 none" in page.decode()
    finally:
        agent.stop()
