"""The edge's expiry alerts use the item's category bands (issue 16), end to end: the real
central in-process (SQLite and PostgreSQL), its real feed, a real ledger file read by the
agent's own puller, and the status page's alerts computed from it.

FOOD has bands 7/14; MILK below it has none of its own, so it inherits them; PILL has no
category (the default 30/60/90). A lot of each expiring in 10 days: MILK-1's alert is in
band 14, PILL's in band 30, as central's own alerts judge them. Central then sets FOOD's
bands to 5/12: the edge follows at its next pull. A category deleted at central leaves
the edge as a tombstone; an agent that does not know the ``category`` kind (an older one)
skips those changes and still reads the page, items with their category included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge_agent import catalog as catalog_module
from edge_agent.catalog import Catalog, Puller, read_page
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stock_alerts import StockAlerts
from jxc.contract import EventKind
from jxc.paths import CATEGORIES, EXPIRY_ALERT_DAYS, ITEMS, SYNC_CHANGES
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import feed, ok, site

TODAY = datetime.now(UTC).date()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "S01.db", site_id="S01")
    yield opened
    opened.close()


def pull(central: TestClient, ledger: Ledger) -> None:
    puller = Puller(Catalog(ledger), central, site_id="S01")
    while puller.pull_once():
        pass
    assert puller.last_error is None


def expiry_bands(ledger: Ledger) -> dict[str, Decimal]:
    found = StockAlerts(ledger).evaluate(TODAY)
    return {alert.item: alert.threshold for alert in found if alert.kind.value == "expiry"}


def test_the_edges_expiry_alerts_follow_the_items_category_bands(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,
) -> None:
    site(client, "S01")
    ok(client.put(f"{CATEGORIES}/FOOD", json={"name": "食品"}))
    ok(client.put(f"{CATEGORIES}/MILK", json={"name": "乳品", "parent": "FOOD"}))
    ok(client.put(f"{EXPIRY_ALERT_DAYS}/FOOD", json={"days": "14,7"}))
    ok(client.put(f"{ITEMS}/MILK-1", json={"name": "牛奶", "uom": "EA", "category": "MILK"}))
    ok(client.put(f"{ITEMS}/PILL", json={"name": "药片", "uom": "EA"}))
    sent = [(c["key"], c["data"]) for c in feed(client) if c["entity"] == "category"]
    assert sent[-1] == ("FOOD", {"code": "FOOD", "parent": None, "expiry_days": [7, 14]})
    assert ("MILK", {"code": "MILK", "parent": "FOOD", "expiry_days": None}) in sent
    in_ten = TODAY + timedelta(days=10)
    for item in ("MILK-1", "PILL"):
        ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item=item, lot="L1", expiry=in_ten, location="A1",
                qty=Decimal(5), uom="EA",
            )
        )  # fmt: skip
    pull(client, ledger)
    assert expiry_bands(ledger) == {"MILK-1": Decimal(14), "PILL": Decimal(30)}

    # --- Central changes FOOD's bands: MILK inherits them at the edge too.
    ok(client.put(f"{EXPIRY_ALERT_DAYS}/FOOD", json={"days": "5,12"}))
    pull(client, ledger)
    assert expiry_bands(ledger) == {"MILK-1": Decimal(12), "PILL": Decimal(30)}

    # --- MILK gets bands of its own, narrower than 10 days: no alert for MILK-1 now.
    ok(client.put(f"{EXPIRY_ALERT_DAYS}/MILK", json={"days": "3"}))
    pull(client, ledger)
    assert expiry_bands(ledger) == {"PILL": Decimal(30)}

    # --- A deleted category leaves the edge (its tombstone).
    ok(client.put(f"{CATEGORIES}/SPARE", json={"name": "备用"}))
    pull(client, ledger)
    with ledger.reading() as conn:
        assert conn.execute("SELECT code FROM cache_categories WHERE code = 'SPARE'").fetchone()
    assert client.delete(f"{CATEGORIES}/SPARE").status_code in (200, 204)
    pull(client, ledger)
    with ledger.reading() as conn:
        codes = {code for (code,) in conn.execute("SELECT code FROM cache_categories")}
    assert codes == {"FOOD", "MILK"}


def test_an_agent_that_does_not_know_categories_still_reads_the_page(
    client: TestClient,  # noqa: F811 (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backward compatible: the new kind is skipped by an older agent (ledger migration 9
    on), and an item's category is a field items already carried."""
    site(client, "S01")
    ok(client.put(f"{CATEGORIES}/FOOD", json={"name": "食品"}))
    ok(client.put(f"{EXPIRY_ALERT_DAYS}/FOOD", json={"days": "7"}))
    ok(client.put(f"{ITEMS}/MILK-1", json={"name": "牛奶", "uom": "EA", "category": "FOOD"}))
    older = catalog_module.KNOWN_ENTITIES - {"category"}
    monkeypatch.setattr(catalog_module, "KNOWN_ENTITIES", older)
    page = client.get(SYNC_CHANGES, params={"site_id": "S01", "cursor": 0})
    read, skipped = read_page(page.content)
    assert skipped == 2
    (item,) = [change.item() for change in read.changes if change.entity.value == "item"]
    assert item.category == "FOOD"
