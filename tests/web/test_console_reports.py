"""The console's report pages over HTTP, on SQLite and PostgreSQL, on the three-site chain
of ``tests/central/test_reports.py``: figures, charts and export links for a financial
reader in English; a clerk's pages in Chinese without a financial figure and without the
gross margin; a filter that is not valid shown on the page."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.central.conftest import add_test_user
from tests.central.test_purchasing import master  # noqa: F401 (a fixture)
from tests.central.test_receiving import invoice, received, shop  # noqa: F401 (fixtures)
from tests.central.test_reports import chain, counter  # noqa: F401 (fixtures)
from tests.central.test_reports_issue17 import counted  # noqa: F401 (a fixture)
from tests.web.test_console_pages import browser

ROOT = "/console/reports"


def test_report_pages_for_finance_in_english_and_a_clerk_in_chinese(
    chain: TestClient,  # noqa: F811 (the fixture imported above)
) -> None:
    """One chain for both readers: building it is most of the test's cost."""
    finance_in_english(chain)
    clerk_in_chinese(chain)


def finance_in_english(chain: TestClient) -> None:  # noqa: F811
    add_test_user(chain.app.state.engine, "fin", ["finance"])  # type: ignore[attr-defined]
    fin = browser(chain.app, "fin", lang="en")  # type: ignore[arg-type]
    index = fin.get(ROOT).text
    assert "Gross margin" in index
    assert "Stock on hand" in index

    stock = fin.get(f"{ROOT}/stock-on-hand", params={"site": "S01"})
    assert stock.status_code == 200
    assert '<th scope="col" class="num">Value</th>' in stock.text
    assert "¥104.50" in stock.text
    assert "¥32.00" not in stock.text
    then = fin.get(f"{ROOT}/stock-on-hand", params={"site": "S01", "on": "2026-11-02"}).text
    assert "¥190.00" in then  # end of 11-02: both TEA receipts, nothing sold yet
    csv_link = re.search(r'href="([^"]+)" download id="export-csv"', then)
    assert csv_link is not None
    exported = fin.get(csv_link.group(1).replace("&amp;", "&"))
    assert exported.status_code == 200, exported.text
    assert "190" in exported.text
    assert "S02" not in exported.text

    margin = fin.get(f"{ROOT}/gross-margin").text
    assert "<svg" in margin
    assert "Top ten by gross margin" in margin
    assert re.search(r"<text[^>]*>TEA</text>", margin)
    assert "¥52.50" in margin
    assert "52.5%" in margin

    expiry = fin.get(f"{ROOT}/expiry").text
    assert "Value by days to expiry" in expiry
    assert "Expired" in expiry

    first = fin.get(f"{ROOT}/movements", params={"site": "S01"}).text
    assert "Cost of goods" in first
    assert "Sale" in first
    assert 'id="next-page"' not in first  # seven movements: one page

    november = {"since": "2026-11-01", "until": "2026-11-30"}
    turnover = fin.get(f"{ROOT}/turnover", params=november).text
    assert "Turns" in turnover
    assert "7.5" in turnover  # S03's tea: 4 turns in 30 days

    bad = fin.get(f"{ROOT}/stock-on-hand", params={"on": "yesterday"})
    assert bad.status_code == 422
    assert 'id="report-problem"' in bad.text
    assert "2026-12-01" in bad.text


def clerk_in_chinese(chain: TestClient) -> None:  # noqa: F811
    add_test_user(chain.app.state.engine, "clerk", ["warehouse_clerk"])  # type: ignore[attr-defined]
    clerk = browser(chain.app, "clerk")  # type: ignore[arg-type]
    index = clerk.get(ROOT).text
    assert "库存明细" in index
    assert "毛利" not in index
    stock = clerk.get(f"{ROOT}/stock-on-hand").text
    assert "商品名称" in stock
    assert "金额" not in stock
    assert "¥" not in stock
    expiry = clerk.get(f"{ROOT}/expiry").text
    assert "按距到期天数的批次数" in expiry
    assert "¥" not in expiry
    slow = clerk.get(f"{ROOT}/slow-moving", params={"days": "30"}).text
    assert "未出库天数" in slow
    assert "¥" not in slow
    assert clerk.get(f"{ROOT}/gross-margin").status_code == 403
    assert clerk.get(f"{ROOT}/turnover").status_code == 403
    assert clerk.get(f"{ROOT}/movements", params={"site": "S09"}).status_code == 200


def test_the_counter_takings_page_in_chinese_and_refused_to_a_clerk(
    counter: TestClient,  # noqa: F811 (the fixture imported above)
) -> None:
    add_test_user(counter.app.state.engine, "fin", ["finance"])  # type: ignore[attr-defined]
    fin = browser(counter.app, "fin", lang="zh-CN")  # type: ignore[arg-type]
    assert "零售收款" in fin.get(ROOT).text
    page = fin.get(f"{ROOT}/retail-takings", params={"since": "2026-12-01", "until": "2026-12-03"})
    assert page.status_code == 200
    assert "净收款" in page.text
    assert "银行卡" in page.text
    assert "¥32.55" in page.text
    add_test_user(counter.app.state.engine, "clerk", ["warehouse_clerk"])  # type: ignore[attr-defined]
    clerk = browser(counter.app, "clerk", lang="zh-CN")  # type: ignore[arg-type]
    assert "零售收款" not in clerk.get(ROOT).text
    assert clerk.get(f"{ROOT}/retail-takings").status_code == 403


def test_count_accuracy_and_receivables_ageing_pages(
    counted: TestClient,  # noqa: F811 (the fixture imported above)
) -> None:
    """Finance in English: both pages with their chart, figures and working exports; a
    store manager in Chinese: the accuracy; a clerk (no financial group, neither action):
    neither page, neither in the index, no money on the refusal; the stock-out rate,
    with its chart and without a figure of money."""
    add_test_user(counted.app.state.engine, "fin", ["finance"])  # type: ignore[attr-defined]
    fin = browser(counted.app, "fin", lang="en")  # type: ignore[arg-type]
    index = fin.get(ROOT).text
    assert "Count accuracy" in index
    assert "Receivables ageing" in index

    accuracy = fin.get(f"{ROOT}/count-accuracy")
    assert accuracy.status_code == 200, accuracy.text
    assert "<svg" in accuracy.text
    assert "Count accuracy by site" in accuracy.text
    assert "66.67%" in accuracy.text
    # The value-weighted figure (tests/central/test_reports_issue17.py: 32 of 146).
    assert "Value-weighted accuracy" in accuracy.text
    assert "21.92%" in accuracy.text
    assert "¥146.00" in accuracy.text
    link = re.search(r'href="([^"]+)" download id="export-csv"', accuracy.text)
    assert link is not None
    assert "0.6667" in fin.get(link.group(1).replace("&amp;", "&")).text

    ageing = fin.get(f"{ROOT}/receivables-ageing", params={"on": "2027-06-01", "site": "S01"})
    assert ageing.status_code == 200, ageing.text
    assert "Outstanding by days past due" in ageing.text
    assert "Over 90 days past due" in ageing.text
    assert re.search(r"<text[^>]*>[A-Z]*¥115.00</text>", ageing.text)  # 100 + 15, over 90 days
    assert "CUS-1" in ageing.text
    link = re.search(r'href="([^"]+)" download id="export-xlsx"', ageing.text)
    assert link is not None
    assert "on=2027-06-01" in link.group(1)
    assert fin.get(link.group(1).replace("&amp;", "&")).status_code == 200
    bad = fin.get(f"{ROOT}/receivables-ageing", params={"on": "someday"})
    assert bad.status_code == 422
    assert 'id="report-problem"' in bad.text

    add_test_user(counted.app.state.engine, "mgr9", ["store_manager"])  # type: ignore[attr-defined]
    manager = browser(counted.app, "mgr9")  # type: ignore[arg-type]
    shown = manager.get(f"{ROOT}/count-accuracy").text
    assert "盘点准确率" in shown
    assert "66.67%" in shown
    assert "金额加权准确率" in shown

    add_test_user(counted.app.state.engine, "clerk9", ["warehouse_clerk"])  # type: ignore[attr-defined]
    clerk = browser(counted.app, "clerk9")  # type: ignore[arg-type]
    index = clerk.get(ROOT).text
    assert "应收账龄" not in index
    assert "盘点准确率" not in index
    outs = clerk.get(f"{ROOT}/stock-outs", params={"since": "2026-11-01", "until": "2026-11-30"})
    assert outs.status_code == 200, outs.text
    assert "缺货率" in outs.text
    assert "23.81%" in outs.text  # S03's tea, in the table and the chart
    assert "<svg" in outs.text
    assert "¥" not in outs.text
    assert "缺货率" in index
    for name in ("count-accuracy", "receivables-ageing"):
        refused = clerk.get(f"{ROOT}/{name}")
        assert refused.status_code == 403, name
        assert "¥" not in refused.text


def test_the_price_variance_page_for_finance_and_refused_to_a_clerk(
    shop: TestClient,  # noqa: F811 (the fixture imported above)
    received: dict[str, Any],  # noqa: F811
) -> None:
    """INV-P bills the PO's 2 箱 at 155 instead of 150: +10 over 300 (3.33 %)."""
    line = {"po_line": 1, "qty": "2", "unit_price": "155", "tax_rate": "0.13"}
    assert invoice(shop, received["po_id"], "INV-P", line).status_code == 201
    add_test_user(shop.app.state.engine, "fin", ["finance"])  # type: ignore[attr-defined]
    fin = browser(shop.app, "fin", lang="en")  # type: ignore[arg-type]
    assert "Purchase price variance" in fin.get(ROOT).text
    page = fin.get(f"{ROOT}/purchase-price-variance", params={"supplier": "SUP-A"})
    assert page.status_code == 200, page.text
    assert "Largest price variances" in page.text
    assert re.search(r"<text[^>]*>[A-Z]*¥10.00</text>", page.text)
    assert "3.33%" in page.text
    link = re.search(r'href="([^"]+)" download id="export-csv"', page.text)
    assert link is not None
    assert "supplier=SUP-A" in link.group(1)
    add_test_user(shop.app.state.engine, "clerk", ["warehouse_clerk"])  # type: ignore[attr-defined]
    clerk = browser(shop.app, "clerk")  # type: ignore[arg-type]
    assert "采购价格差异" not in clerk.get(ROOT).text
    refused = clerk.get(f"{ROOT}/purchase-price-variance")
    assert refused.status_code == 403
    assert "¥" not in refused.text
