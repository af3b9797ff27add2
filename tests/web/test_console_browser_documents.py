"""Receiving, invoices and sales in a real browser (Debian's Chromium, central under
uvicorn), at 1280 and 390 px, in zh-CN and English: a clerk receives a PO with a lot and
a quarantined line and releases it; finance enters the supplier's invoice, sees the match
hold it for a price difference and approves it; a salesperson makes a price list, drafts
an order, confirms it (lots reserved, the rest backordered) and looks up what is still
available. Screenshots of each page are saved (``conftest.screenshots``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central_api.core.db import create_db_engine
from jxc.paths import ITEMS, PARTNERS, PURCHASE_ORDERS, SITES
from tests.central.conftest import user_token
from tests.patience import patience_timeout
from tests.web import test_console_browser as base
from tests.web.conftest import Central
from tests.web.test_console_browser import (
    WIDTHS,
    no_sideways_scroll,
    shoot,
    signed_in_as,
    switch_language,
)

# the browser module's fixtures: a page at each width, its script errors and failed requests
page = base.page
problems = base.problems
width = base.width

pytestmark = pytest.mark.integration


def seed(central: Central, width: str) -> dict[str, str]:
    """Through the API: a warehouse with a storage bin and a quarantine area, a supplier,
    a customer, two items, and an approved PO of both (made and approved by two people)."""
    tag = width.upper()
    names = {
        "site": f"WHD-{tag}",  # WH-{width} is test_console_browser's
        "supplier": f"SUP-{tag}",
        "customer": f"CUS-{tag}",
        "pill": f"AMOX-{tag}",
        "mask": f"MASK-{tag}",
    }
    engine = create_db_engine(central.database_url)
    try:
        maker = user_token(engine, f"seed-maker-{width}", ["admin"])
        approver = user_token(engine, f"seed-approver-{width}", ["purchaser"])
    finally:
        engine.dispose()
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
        call("POST", PARTNERS, code=names["supplier"], is_supplier=True, name="华康医药")
        call("POST", PARTNERS, code=names["customer"], is_customer=True, name="仁和药房")
        call(
            "POST",
            ITEMS,
            item_code=names["pill"],
            name="阿莫西林胶囊",
            name_en="Amoxicillin capsules",
            uom="盒",
            lot_tracked=True,
            expiry_tracked=True,
        )
        call("POST", ITEMS, item_code=names["mask"], name="医用口罩", name_en="Masks", uom="包")
        po = call(
            "POST",
            PURCHASE_ORDERS,
            supplier=names["supplier"],
            site_id=site,
            lines=[
                {"item_code": names["pill"], "qty": "30", "unit_price": "12.5", "tax_rate": "0.13"},
                {"item_code": names["mask"], "qty": "50", "unit_price": "3", "tax_rate": "0.13"},
            ],
        )
        call("POST", f"{PURCHASE_ORDERS}/{po['po_id']}/approve", token=approver)
    return {**names, "po": po["po_id"]}


@contextmanager
def signed_in(browser: Any, central: Central, width: str, username: str) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": WIDTHS[width], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    context.set_default_timeout(patience_timeout(5) * 1000)
    try:
        opened = context.new_page()
        opened.on("dialog", lambda dialog: dialog.accept())
        signed_in_as(opened, central, username)
        yield opened
    finally:
        context.close()


def both_languages(page: Any, folder: Path, name: str, width: str) -> None:
    """A screenshot in zh-CN and one in English of the page, back in zh-CN after."""
    no_sideways_scroll(page)
    shoot(page, folder, name, width)
    switch_language(page, "English")
    no_sideways_scroll(page)
    shoot(page, folder, name, width)
    switch_language(page, "简体中文")


def test_receive_with_qc_invoice_and_sell_in_the_browser(
    page: Any, browser: Any, central: Central, width: str, screenshots: Path
) -> None:
    known = seed(central, width)
    expiry = (datetime.now(UTC).date() + timedelta(days=400)).isoformat()

    # a clerk receives: the pills accepted into A1 with their lot, the masks quarantined
    signed_in_as(page, central, "clerk")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{central.url}/console/receipts/new")
    page.locator("#po").fill(known["po"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/receipts/new\?po="))
    page.locator("#line-0-qty").fill("30")
    page.locator("#line-0-location").select_option("A1")
    page.locator("#line-0-lot").fill("L2026A")
    page.locator("#line-0-expiry").fill(expiry)
    page.locator("#line-1-qty").fill("50")
    page.locator("#line-1-qc").select_option("quarantine")
    both_languages(page, screenshots, "receipt-form", width)
    page.locator("#line-0-qty").fill("30")
    page.locator("#line-0-location").select_option("A1")
    page.locator("#line-0-lot").fill("L2026A")
    page.locator("#line-0-expiry").fill(expiry)
    page.locator("#line-1-qty").fill("50")
    page.locator("#line-1-qc").select_option("quarantine")
    page.get_by_role("button", name="确认入库").click()
    page.wait_for_url(re.compile(r"/console/receipts/view\?id=GR\d+$"))
    assert page.locator("#qc-2").inner_text() == "待检"
    both_languages(page, screenshots, "receipt", width)
    page.locator("#release-to-2").select_option("A1")
    page.get_by_role("button", name="放行").click()
    page.wait_for_function("document.getElementById('qc-2').textContent.trim() === '已放行'")
    assert "¥" not in page.content()

    # finance: the supplier's invoice says 13 a box where the PO said 12.5: held
    with signed_in(browser, central, width, "boss") as boss:
        boss.goto(f"{central.url}/console/supplier-invoices/new?po={known['po']}")
        boss.locator("#invoice_no").fill(f"FP-{width}")
        boss.locator("#line-0-qty").fill("30")
        boss.locator("#line-0-unit_price").fill("13")
        boss.get_by_role("button", name="录入并匹配").click()
        boss.wait_for_url(re.compile(r"/console/supplier-invoices/view\?id=\w+$"))
        assert boss.locator("#invoice-status").inner_text() == "挂起待审"
        assert "单价与订单不符" in boss.content()
        both_languages(boss, screenshots, "supplier-invoice", width)
        # who entered it may not accept its difference: finance does (segregation of duties)
        with signed_in(browser, central, width, "finance") as checker:
            checker.goto(boss.url)
            checker.locator("#reason-approve").fill("供应商涨价已确认")
            checker.get_by_role("button", name="审核").click()
            checker.wait_for_function(
                "document.getElementById('invoice-status').textContent.trim() === '已审核'"
            )

        # sales: a price list, an order of 40 boxes (30 in stock: 10 backordered)
        boss.goto(f"{central.url}/console/price-lists/edit")
        boss.locator("#code").fill(f"RETAIL-{width.upper()}")
        boss.locator("#name").fill("零售价")
        boss.locator("#line-0-item_code").fill(known["pill"])
        boss.locator("#line-0-price").fill("19.8")
        boss.locator("#line-1-item_code").fill(known["mask"])
        boss.locator("#line-1-price").fill("4.5")
        boss.get_by_role("button", name="保存", exact=True).click()
        boss.wait_for_url(re.compile(r"/console/price-lists/view\?code="))
        both_languages(boss, screenshots, "price-list", width)

        boss.goto(f"{central.url}/console/sales-orders/new")
        boss.locator("#customer").select_option(known["customer"])
        boss.locator("#site_id").select_option(known["site"])
        boss.locator("#line-0-item_code").fill(known["pill"])
        boss.locator("#line-0-qty").fill("40")
        boss.locator("#line-0-unit_price").fill("19.8")
        boss.locator("#line-0-tax_rate").fill("0.13")
        boss.locator("#line-1-item_code").fill(known["mask"])
        boss.locator("#line-1-qty").fill("20")
        boss.locator("#line-1-unit_price").fill("4.5")
        boss.locator("#line-1-tax_rate").fill("0.13")
        both_languages(boss, screenshots, "sales-order-form", width)
        boss.locator("#customer").select_option(known["customer"])
        boss.locator("#site_id").select_option(known["site"])
        for row, (item, qty, price) in enumerate(
            ((known["pill"], "40", "19.8"), (known["mask"], "20", "4.5"))
        ):
            boss.locator(f"#line-{row}-item_code").fill(item)
            boss.locator(f"#line-{row}-qty").fill(qty)
            boss.locator(f"#line-{row}-unit_price").fill(price)
            boss.locator(f"#line-{row}-tax_rate").fill("0.13")
        boss.get_by_role("button", name="保存草稿").click()
        boss.wait_for_url(re.compile(r"/console/sales-orders/view\?id=SO\d+$"))
        boss.get_by_role("button", name="确认").click()
        boss.wait_for_function(
            "document.getElementById('so-status').textContent.trim() === '已确认'"
        )
        lines = boss.locator("table.lines").inner_text()
        assert "L2026A" in lines
        assert "10 盒" in lines  # backordered
        assert "13%" in lines
        both_languages(boss, screenshots, "sales-order", width)
        boss.goto(f"{central.url}/console/sales-orders")
        both_languages(boss, screenshots, "sales-orders", width)
        boss.goto(f"{central.url}/console/availability?site={known['site']}&item={known['mask']}")
        assert boss.locator("#atp-available").inner_text() == "30 包"
        both_languages(boss, screenshots, "availability", width)
        boss.goto(f"{central.url}/console/supplier-invoices")
        both_languages(boss, screenshots, "supplier-invoices", width)
        boss.goto(f"{central.url}/console/purchase-orders/view?id={known['po']}")
        assert "13%" in boss.locator("#po-lines").inner_text()
        both_languages(boss, screenshots, "po-received", width)
