"""Two reports in a real browser (Debian's Chromium, central under uvicorn) at 1280 and
390 px: stock on hand with its value and the expiry chart for the administrator, in
zh-CN and English, then the recall view of the expired lot and the period close page;
the same stock for a clerk without a financial figure. Screenshots of
each page are saved (``conftest.screenshots``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central_api.core.db import create_db_engine
from central_api.services.auth import add_site
from jxc import uuid7
from jxc.paths import ITEMS, SITES, SYNC_EVENTS, SYNC_TOKEN
from tests.central.conftest import user_token
from tests.patience import patience_timeout
from tests.web import test_console_browser as base
from tests.web.conftest import Central
from tests.web.test_console_browser import no_sideways_scroll, shoot, signed_in_as
from tests.web.test_console_browser_documents import both_languages

page = base.page
problems = base.problems
width = base.width

pytestmark = pytest.mark.integration


def seed(central: Central, width: str) -> str:
    """A site of its own for ``width`` with tea (10 kg at 8) and two lots of pills, one
    expired and one expiring in ten days, pushed by the site's edge as it would."""
    site = f"RP-{width.upper()}"
    engine = create_db_engine(central.database_url)
    try:
        admin = user_token(engine, f"seed-reports-{width}", ["admin"])
        with engine.connect() as connection:
            secret = add_site(connection, site)
    finally:
        engine.dispose()
    today = datetime.now(UTC).date()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:
        as_admin = {"Authorization": f"Bearer {admin}"}
        for path, body in (
            (f"{SITES}/{site}", {"kind": "store", "name": "报表店", "name_en": "Report store"}),
            (ITEMS, {"item_code": f"TEA-{width}", "name": "龙井茶", "uom": "kg"}),
            (
                ITEMS,
                {
                    "item_code": f"PILL-{width}",
                    "name": "阿莫西林",
                    "uom": "盒",
                    "lot_tracked": True,
                    "expiry_tracked": True,
                },
            ),
        ):
            method = "PUT" if path.startswith(SITES) else "POST"
            answer = api.request(
                method, path, json=body, headers={**as_admin, "Idempotency-Key": str(uuid.uuid4())}
            )
            assert answer.status_code in {200, 201}, answer.text
        token = api.post(SYNC_TOKEN, json={"site_id": site, "secret": secret})
        assert token.status_code == 200, token.text
        moved = [
            (f"TEA-{width}", "kg", None, None, "10", "8"),
            (f"PILL-{width}", "盒", "L-OLD", today - timedelta(days=3), "4", "12.5"),
            (f"PILL-{width}", "盒", "L-NEW", today + timedelta(days=10), "6", "12.5"),
        ]
        events = [
            {
                "event_id": str(uuid7()),
                "site_id": site,
                "seq": seq,
                "occurred_at": (datetime.now(UTC) - timedelta(days=40)).isoformat(),
                "kind": "receipt",
                "item": item,
                "lot": lot,
                "expiry": None if expiry is None else expiry.isoformat(),
                "location": "A-01",
                "qty": qty,
                "uom": uom,
                "unit_cost": cost,
            }
            for seq, (item, uom, lot, expiry, qty, cost) in enumerate(moved, start=1)
        ]
        pushed = api.post(
            SYNC_EVENTS,
            json={"contract_version": 1, "site_id": site, "events": events},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert pushed.status_code == 200, pushed.text
    return site


def test_stock_and_expiry_reports_in_the_browser(
    page: Any, browser: Any, central: Central, width: str, screenshots: Path
) -> None:
    site = seed(central, width)
    signed_in_as(page, central, "boss")
    page.goto(f"{central.url}/console/reports/stock-on-hand?site={site}")
    table = page.locator("#report-table")
    assert "¥80.00" in table.inner_text()  # 10 kg at 8
    assert "¥205.00" in page.locator("#report-totals").inner_text()  # 80 + 50 + 75
    both_languages(page, screenshots, "report-stock", width)

    page.goto(f"{central.url}/console/reports/expiry?site={site}")
    chart = page.locator("figure.chart svg")
    assert chart.is_visible()
    assert chart.locator("rect").count() == 4
    assert "L-OLD" in page.locator("#report-table").inner_text()
    both_languages(page, screenshots, "report-expiry", width)

    # The recall view of the expired lot: where it is (this site, A-01) and what moved it.
    page.goto(f"{central.url}/console/recall?item=PILL-{width}&lot=L-OLD")
    traced = page.locator("main").inner_text()
    assert site in traced
    assert "A-01" in traced
    both_languages(page, screenshots, "recall", width)

    # Period close: the months and the close form, for the administrator.
    page.goto(f"{central.url}/console/periods")
    assert page.locator("form").count() >= 1
    both_languages(page, screenshots, "periods", width)

    clerk_context = browser.new_context(
        viewport={"width": base.WIDTHS[width], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    try:
        clerk = clerk_context.new_page()
        signed_in_as(clerk, central, "clerk")
        clerk.goto(f"{central.url}/console/reports/stock-on-hand?site={site}")
        assert "¥" not in clerk.content()
        assert "金额" not in clerk.locator("#report-table").inner_text()
        no_sideways_scroll(clerk)
        shoot(clerk, screenshots, "report-stock-clerk", width)
    finally:
        clerk_context.close()
