"""The dashboard in a real browser (Debian's Chromium, central under uvicorn) at 1280 and
390 px: the administrator's cards with the value and its sparkline, in zh-CN and English;
a clerk's without a financial figure. No sideways scroll on a phone (the cards stack).
Screenshots of each are saved (``conftest.screenshots``)."""

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
    """A site of its own for ``width`` whose edge pushed 10 kg of rice at 8, two days ago."""
    site = f"DB-{width.upper()}"
    engine = create_db_engine(central.database_url)
    try:
        admin = user_token(engine, f"seed-dashboard-{width}", ["admin"])
        with engine.connect() as connection:
            secret = add_site(connection, site)
    finally:
        engine.dispose()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:
        as_admin = {"Authorization": f"Bearer {admin}"}
        for method, path, body in (
            ("PUT", f"{SITES}/{site}", {"kind": "store", "name": "看板店", "name_en": "Board"}),
            ("POST", ITEMS, {"item_code": f"RICE-{width}", "name": "大米", "uom": "kg"}),
        ):
            answer = api.request(
                method, path, json=body, headers={**as_admin, "Idempotency-Key": str(uuid.uuid4())}
            )
            assert answer.status_code in {200, 201}, answer.text
        token = api.post(SYNC_TOKEN, json={"site_id": site, "secret": secret})
        assert token.status_code == 200, token.text
        event = {
            "event_id": str(uuid7()),
            "site_id": site,
            "seq": 1,
            "occurred_at": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
            "kind": "receipt",
            "item": f"RICE-{width}",
            "location": "A-01",
            "qty": "10",
            "uom": "kg",
            "unit_cost": "8",
        }
        pushed = api.post(
            SYNC_EVENTS,
            json={"contract_version": 1, "site_id": site, "events": [event]},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert pushed.status_code == 200, pushed.text
    return site


def test_the_dashboard_in_the_browser(
    page: Any, browser: Any, central: Central, width: str, screenshots: Path
) -> None:
    site = seed(central, width)
    signed_in_as(page, central, "boss")
    page.goto(f"{central.url}/console/")
    assert page.url.endswith("/console/dashboard")
    card = page.locator(f"#site-{site}")
    assert "¥80.00" in card.inner_text()
    assert card.locator("svg.dash-spark polyline").count() == 1
    assert page.locator("#dashboard").get_attribute("hx-trigger") == "every 30s"
    assert page.locator("#dash-alerts a").count() == 6  # with lagging sites, devices down
    both_languages(page, screenshots, "dashboard", width)

    clerk_context = browser.new_context(
        viewport={"width": base.WIDTHS[width], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    try:
        clerk = clerk_context.new_page()
        signed_in_as(clerk, central, "clerk")
        clerk.goto(f"{central.url}/console/dashboard")
        assert "今日" in clerk.locator(f"#site-{site}").inner_text()
        assert "¥" not in clerk.content()
        assert clerk.locator("polyline").count() == 0
        no_sideways_scroll(clerk)
        shoot(clerk, screenshots, "dashboard-clerk", width)
    finally:
        clerk_context.close()
