"""The console's replenishment pages over HTTP, on SQLite and PostgreSQL: the suggestions
page and its make-draft-PO button (one PO for a double click), the alerts inbox with
assign and resolve through the page's version and key, each page's rule, both languages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from jxc.paths import PURCHASE_ORDERS, REPLENISHMENT_PARAMS
from tests.central.conftest import SiteLedger, add_test_user
from tests.central.test_purchasing import master, ok, push  # noqa: F401 (the fixture)
from tests.web.test_console_pages import browser, htmx


def hidden(html: str, marker: str) -> dict[str, str]:
    """The hidden fields of the form whose action contains ``marker``."""
    block = html.split(marker, 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', block))


def test_suggestions_page_makes_one_draft_po(master: TestClient) -> None:  # noqa: F811
    engine = master.app.state.engine  # type: ignore[attr-defined]
    add_test_user(engine, "buyer1", ["purchaser"])
    add_test_user(engine, "seller", ["sales"])
    body = {
        "site_id": "S01",
        "rows": [
            {
                "item_code": "PILL",
                "safety_stock": "20",
                "reorder_point": "50",
                "reorder_qty": "100",
                "supplier_code": "SUP-A",
                "lead_time_days": 3,
            }
        ],
    }
    ok(master.put(REPLENISHMENT_PARAMS, json=body))
    ledger = SiteLedger("S01")
    start = datetime.now(UTC) - timedelta(days=10)
    push(
        master,
        ledger,
        ledger.event("receipt", "60", item="PILL", uom="片", occurred_at=start.isoformat()),
        *[
            ledger.event(
                "sale",
                "-5",
                item="PILL",
                uom="片",
                occurred_at=(start + timedelta(days=day + 1)).isoformat(),
            )
            for day in range(8)
        ],
    )
    buyer = browser(master.app, "buyer1")  # type: ignore[arg-type]
    page = buyer.get("/console/replenishment?site_id=S01")
    assert page.status_code == 200, page.text
    assert "建议采购" in page.text
    assert "SUP-A" in page.text
    fields = hidden(page.text, "/replenishment/draft-po")
    assert fields["supplier"] == "SUP-A"
    made = buyer.post("/console/replenishment/draft-po", data=fields, headers=htmx(buyer))
    again = buyer.post("/console/replenishment/draft-po", data=fields, headers=htmx(buyer))
    target = made.headers["HX-Redirect"]
    assert target == again.headers["HX-Redirect"]
    po_id = target.rsplit("=", 1)[1]
    # On hand 20, nothing on order, 5 a day × 3 days: position 20 ≤ 50, qty max(100, 15).
    po = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))
    assert (po["status"], po["lines"][0]["base_qty"]) == ("draft", "100")
    assert len(ok(master.get(PURCHASE_ORDERS))["purchase_orders"]) == 1
    english = browser(master.app, "buyer1", lang="en")  # type: ignore[arg-type]
    assert "Nothing needs ordering." in english.get("/console/replenishment?site_id=S01").text
    seller = browser(master.app, "seller")  # type: ignore[arg-type]
    assert seller.get("/console/replenishment").status_code == 403
    assert seller.get("/console/alerts").status_code == 403


def test_inbox_page_assigns_and_resolves(master: TestClient) -> None:  # noqa: F811
    engine = master.app.state.engine  # type: ignore[attr-defined]
    add_test_user(engine, "mgr", ["store_manager"])
    add_test_user(engine, "clerk1", ["warehouse_clerk"])
    ledger = SiteLedger("S01")
    push(master, ledger, ledger.event("sale", "-3", item="PILL", uom="片", location="A-01"))
    manager = browser(master.app, "mgr")  # type: ignore[arg-type]
    page = manager.get("/console/alerts")
    assert page.status_code == 200
    assert "负库存" in page.text
    alert_id = re.search(r"/alerts/assign\?id=(\d+)", page.text).group(1)  # type: ignore[union-attr]
    assign = hidden(page.text, "/alerts/assign?")
    answer = manager.post(
        f"/console/alerts/assign?id={alert_id}",
        data={**assign, "owner": "mgr"},
        headers=htmx(manager),
    )
    assert answer.headers["HX-Redirect"] == "/console/alerts"
    # The resolve form still carries version 1: the page is stale now, so it is refused.
    resolve = hidden(page.text, "/alerts/resolve?")
    stale = manager.post(
        f"/console/alerts/resolve?id={alert_id}",
        data={**resolve, "resolution": "x"},
        headers=htmx(manager),
    )
    assert stale.status_code == 412
    fresh = hidden(manager.get("/console/alerts").text, "/alerts/resolve?")
    done = manager.post(
        f"/console/alerts/resolve?id={alert_id}",
        data={**fresh, "resolution": "补录入库"},
        headers=htmx(manager),
    )
    assert done.headers["HX-Redirect"] == "/console/alerts"
    resolved = manager.get("/console/alerts?status=resolved").text
    assert "补录入库" in resolved
    assert "mgr" in resolved
    clerk = browser(master.app, "clerk1", lang="en")  # type: ignore[arg-type]
    assert "Negative stock" in clerk.get("/console/alerts?status=resolved").text
    refused = clerk.post(f"/console/alerts/resolve?id={alert_id}", data=fresh, headers=htmx(clerk))
    assert refused.status_code == 403
