"""After the sales order, in a real browser (Debian's Chromium, central under uvicorn) at
390 px, in zh-CN with the main pages in English too: the order's pick list, a partial
shipment from the form with a tracking number, its delivery note, the invoice of the
shipment and a partial payment, the receivables ageing with its bar chart, and a return
authorised and received into quarantine. No page scrolls sideways; screenshots of each
are saved (``conftest.screenshots``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central_api.core.db import create_db_engine
from jxc.paths import (
    ITEMS,
    PARTNERS,
    PAYMENT_TERMS,
    PURCHASE_ORDERS,
    PURCHASE_RECEIPTS,
    SALES_ORDERS,
    SITES,
)
from tests.central.conftest import user_token
from tests.patience import patience_timeout
from tests.web.conftest import Central
from tests.web.test_console_browser import no_sideways_scroll, shoot
from tests.web.test_console_browser_documents import both_languages, signed_in

pytestmark = pytest.mark.integration

WIDTH = "phone"
"""390 px: the handheld's width, where the tables become cards."""


def seed(central: Central) -> dict[str, str]:
    """Through the API: a warehouse with a storage bin and a quarantine area, a customer
    with 30 days' terms, an item received into stock (a PO approved by a second person,
    then received), and a confirmed order of 12 of its 20 boxes."""
    names = {"site": "WH-SD", "customer": "CUS-SD", "item": "AMOX-SD", "supplier": "SUP-SD"}
    engine = create_db_engine(central.database_url)
    try:
        maker = user_token(engine, "seed-sd-maker", ["admin"])
        approver = user_token(engine, "seed-sd-approver", ["purchaser"])
    finally:
        engine.dispose()
    expiry = (datetime.now(UTC).date() + timedelta(days=400)).isoformat()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:

        def call(method: str, path: str, token: str = maker, **body: Any) -> Any:
            answer = api.request(
                method,
                path,
                json=body or None,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code in {200, 201}, answer.text
            return answer.json()

        site = names["site"]
        call("PUT", f"{SITES}/{site}", kind="warehouse", name="一号仓", name_en="Warehouse 1")
        for code, kind in (("A1", "storage"), ("QC", "quarantine")):
            call("POST", f"{SITES}/{site}/locations", code=code, level="zone", kind=kind)
        call("PUT", f"{PAYMENT_TERMS}/N30", name="月结 30 天", days=30)
        call("POST", PARTNERS, code=names["supplier"], is_supplier=True, name="华康医药")
        call(
            "POST",
            PARTNERS,
            code=names["customer"],
            is_customer=True,
            name="仁和药房",
            payment_terms="N30",
        )
        call(
            "POST",
            ITEMS,
            item_code=names["item"],
            name="阿莫西林胶囊",
            name_en="Amoxicillin capsules",
            uom="盒",
            lot_tracked=True,
            expiry_tracked=True,
        )
        po = call(
            "POST",
            PURCHASE_ORDERS,
            supplier=names["supplier"],
            site_id=site,
            lines=[{"item_code": names["item"], "qty": "20", "unit_price": "10"}],
        )
        call("POST", f"{PURCHASE_ORDERS}/{po['po_id']}/approve", token=approver)
        call(
            "POST",
            PURCHASE_RECEIPTS,
            po_id=po["po_id"],
            lines=[{"po_line": 1, "qty": "20", "location": "A1", "lot": "L-SD1", "expiry": expiry}],
        )
        so = call(
            "POST",
            SALES_ORDERS,
            customer=names["customer"],
            site_id=site,
            lines=[
                {"item_code": names["item"], "qty": "12", "unit_price": "19.8", "tax_rate": "0.13"}
            ],
        )
        call("POST", f"{SALES_ORDERS}/{so['so_id']}/confirm")
    return {**names, "so": so["so_id"]}


def look(page: Any, folder: Path, name: str) -> None:
    no_sideways_scroll(page)
    shoot(page, folder, name, WIDTH)


def test_ship_invoice_pay_and_return_on_a_phone(
    browser: Any, central: Central, screenshots: Path
) -> None:
    known = seed(central)
    so_id = known["so"]
    with signed_in(browser, central, WIDTH, "boss") as page:
        page.goto(f"{central.url}/console/pick-lists/view?id={so_id}")
        assert "L-SD1" in page.locator("table.lines").inner_text()
        look(page, screenshots, "pick-list")

        # 5 of the 12 boxes leave now, with the carrier's number
        page.get_by_role("link", name="发货", exact=True).click()
        page.wait_for_url(re.compile(r"/console/shipments/new\?so="))
        page.locator("#tracking_no").fill("SF1001")
        page.locator("#line-0-qty").fill("5")
        look(page, screenshots, "shipment-form")
        page.get_by_role("button", name="发货并记账").click()
        page.wait_for_url(re.compile(r"/console/shipments/view\?id=SH\d+$"))
        assert page.locator("#tracking-no").inner_text() == "SF1001"
        both_languages(page, screenshots, "shipment", WIDTH)

        page.locator("#delivery-note").click()
        page.wait_for_url(re.compile(r"/console/shipments/note\?id="))
        assert "阿莫西林胶囊" in page.content()
        look(page, screenshots, "delivery-note")
        page.go_back()

        # finance invoices the shipment: 5 × 19.80 + 13 %, due in 30 days
        page.get_by_role("link", name="为此发货开票").click()
        page.wait_for_url(re.compile(r"/console/sales-invoices/new\?shipment="))
        page.get_by_role("button", name="开具发票").click()
        page.wait_for_url(re.compile(r"/console/sales-invoices/view\?id=SI\d+$"))
        assert page.locator("#gross").inner_text() == "¥111.87"
        due = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
        assert due in page.locator("#due-date").inner_text()
        page.locator("#amount").fill("100")
        page.locator("#method").fill("银行转账")
        page.get_by_role("button", name="登记收款").click()
        page.wait_for_function(
            "document.getElementById('outstanding').textContent.trim() === '¥11.87'"
        )
        both_languages(page, screenshots, "sales-invoice", WIDTH)

        page.goto(f"{central.url}/console/receivables-ageing")
        assert page.locator("svg.bars rect[data-bucket='current']").count() == 1
        assert page.locator("#ageing-total").inner_text() == "¥11.87"
        both_languages(page, screenshots, "receivables-ageing", WIDTH)

        # the order's page links what was made from it
        page.goto(f"{central.url}/console/sales-orders/view?id={so_id}")
        assert "SH0" in page.locator("#so-shipments").inner_text()
        assert "未付清" in page.locator("#so-invoices").inner_text()
        look(page, screenshots, "sales-order-documents")

        # two boxes come back, authorised then received into quarantine
        page.get_by_role("link", name="新建退货授权").click()
        page.wait_for_url(re.compile(r"/console/customer-returns/new\?so="))
        page.locator("#reason").fill("外包装破损")
        page.locator("#line-0-qty").fill("2")
        look(page, screenshots, "customer-return-form")
        page.get_by_role("button", name="批准退货").click()
        page.wait_for_url(re.compile(r"/console/customer-returns/view\?id=RA\d+$"))
        page.get_by_role("button", name="收货入待检区").click()
        page.wait_for_function(
            "document.getElementById('return-status').textContent.trim() === '已收'"
        )
        both_languages(page, screenshots, "customer-return", WIDTH)
