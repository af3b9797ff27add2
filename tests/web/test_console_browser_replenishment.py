"""Suggested orders and the alerts inbox in a real browser (Debian's Chromium, central under
uvicorn), at 1280 and 390 px, in zh-CN and English: a purchaser opens the suggestions of a
site whose stock is below safety, makes the supplier's draft PO with the button, then
resolves the alert in the inbox. Screenshots of both pages are saved."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from central_api.core.db import create_db_engine
from jxc.paths import ITEMS, OTHER_RECEIPTS, PARTNERS, REASON_CODES, REPLENISHMENT_PARAMS, SITES
from tests.central.conftest import user_token
from tests.patience import patience_timeout
from tests.web import test_console_browser as base
from tests.web.conftest import Central
from tests.web.test_console_browser import signed_in_as
from tests.web.test_console_browser_documents import both_languages

page = base.page
problems = base.problems
width = base.width

pytestmark = pytest.mark.integration


def seed(central: Central, width: str) -> dict[str, str]:
    """A store with a bin, a supplier, an item with levels (safety 20, reorder point 50,
    reorder qty 100, that supplier) and 5 received: below safety stock, so an alert."""
    tag = width.upper()
    names = {"site": f"ST-{tag}", "supplier": f"SUP-R{tag}", "item": f"VITC-{tag}"}
    engine = create_db_engine(central.database_url)
    try:
        token = user_token(engine, f"seed-repl-{width}", ["admin"])
    finally:
        engine.dispose()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:

        def call(method: str, path: str, **body: Any) -> Any:
            answer = api.request(
                method,
                path,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code in {200, 201}, answer.text
            return answer.json()

        site = names["site"]
        call("PUT", f"{SITES}/{site}", kind="store", name="二号店", name_en="Store 2")
        call("POST", f"{SITES}/{site}/locations", code="A1", level="zone", kind="storage")
        call("POST", PARTNERS, code=names["supplier"], is_supplier=True, name="康源药业")
        call(
            "POST", ITEMS, item_code=names["item"], name="维生素C片", name_en="Vitamin C", uom="瓶"
        )
        call("PUT", f"{REASON_CODES}/FOUND-R", name="盘盈", applies_to=["other_receipt"])
        call(
            "PUT",
            REPLENISHMENT_PARAMS,
            site_id=site,
            rows=[
                {
                    "item_code": names["item"],
                    "safety_stock": "20",
                    "reorder_point": "50",
                    "reorder_qty": "100",
                    "supplier_code": names["supplier"],
                }
            ],
        )
        call(
            "POST",
            OTHER_RECEIPTS,
            site_id=site,
            reason_code="FOUND-R",
            lines=[{"item_code": names["item"], "qty": "5", "location": "A1"}],
        )
    return names


def test_make_a_draft_po_and_resolve_the_alert_in_the_browser(
    page: Any, central: Central, width: str, screenshots: Path
) -> None:
    known = seed(central, width)
    signed_in_as(page, central, "buyer")
    page.goto(f"{central.url}/console/replenishment?site_id={known['site']}")
    group = page.locator(f"#supplier-{known['supplier']}")
    assert "100" in group.inner_text()
    both_languages(page, screenshots, "replenish-suggestions", width)
    with page.expect_navigation():
        group.get_by_role("button", name="生成采购订单草稿").click()
    assert "/console/purchase-orders/view" in page.url
    assert known["supplier"] in page.content()

    page.goto(f"{central.url}/console/alerts?site_id={known['site']}")
    row = page.locator("tr", has_text=known["item"])
    assert "低于安全库存" in row.inner_text()
    both_languages(page, screenshots, "alerts-inbox", width)
    row.get_by_placeholder("处理结果").fill("已下采购单")
    with page.expect_navigation():
        row.get_by_role("button", name="处理").click()
    page.goto(f"{central.url}/console/alerts?status=resolved&site_id={known['site']}")
    assert "已下采购单" in page.locator("tr", has_text=known["item"]).inner_text()
