"""Webhooks and the operations panels in a real browser (Debian's Chromium, central under
uvicorn) at a phone's width, 390 px: an admin makes a webhook and sees its secret once,
edits it, finds an alert's delivery in the log and replays it, switches it off; then the
dashboard's sync and device panels and the inbox with an operations alert. Screenshots in
zh-CN and English (``docs/screenshots`` with ``JXC_SCREENSHOTS=docs/screenshots``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from central_api.core.db import create_db_engine, write_transaction
from central_api.models.ledger import site_sync_state
from central_api.models.webhooks import webhook_deliveries
from central_api.services import webhooks
from central_api.services.audit import record, system_context
from central_api.services.monitoring import Thresholds, evaluate, record_status
from jxc.contract import SiteStatusReport
from tests.web import test_console_browser as base
from tests.web.conftest import Central
from tests.web.test_console_browser import signed_in_as
from tests.web.test_console_browser_documents import both_languages

page = base.page
problems = base.problems
width = base.width

pytestmark = pytest.mark.integration

LONG_AGO = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def raise_alert_entry(central: Central) -> None:
    """An alert's audit entry, as the operations check writes one, and its fan-out."""
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            with write_transaction(connection):
                record(
                    connection,
                    system_context("test"),
                    action="alert.raise",
                    resource="alert",
                    resource_id="1",
                    site_id="ST-W",
                    after={"kind": "device_down", "subject": "ZPL-1"},
                )
            webhooks.fan_out(connection)  # the server's worker may have been first: harmless
    finally:
        engine.dispose()


def seed_operations(central: Central) -> None:
    """A site silent since long ago whose printer went down, and the check run once."""
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            with write_transaction(connection):
                connection.execute(
                    insert(site_sync_state).values(
                        site_id="ST-W", acked_through_seq=9, updated_at=LONG_AGO
                    )
                )
            report = {
                "site_id": "ST-W",
                "reported_at": LONG_AGO.isoformat(),
                "outbox_depth": 42,
                "devices": [
                    {
                        "kind": "printer",
                        "device_id": "ZPL-1",
                        "state": "disconnected",
                        "last_error": "paper out",
                    }
                ],
            }
            record_status(connection, SiteStatusReport.model_validate(report), received_at=LONG_AGO)
            evaluate(
                connection,
                now=LONG_AGO + timedelta(minutes=90),
                thresholds=Thresholds(),
                disk={"database": Decimal("50")},
                audit=system_context("test"),
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("width", ["phone"], indirect=True)
def test_manage_a_webhook_and_see_the_operations_panels_on_a_phone(
    page: Any, central: Central, width: str, screenshots: Path
) -> None:
    signed_in_as(page, central, "boss")
    page.goto(f"{central.url}/console/webhooks/new")
    page.get_by_label("收件地址").fill("https://erp.example.com/jxc")
    page.get_by_label("事件").fill("alert.*")
    page.get_by_label("说明").fill("ERP 预警")
    page.get_by_role("button", name="保存").click()
    secret = page.locator("#webhook-secret")
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{20,}", secret.inner_text())
    base.no_sideways_scroll(page)
    base.shoot(page, screenshots, "webhook-secret", width)
    with page.expect_navigation():
        page.get_by_role("link", name="打开此 Webhook").click()
    assert secret.count() == 0

    page.get_by_label("说明").fill("ERP 预警（总部）")
    with page.expect_navigation():
        page.locator("#webhook-form").get_by_role("button", name="保存").click()
    assert page.get_by_label("说明").input_value() == "ERP 预警（总部）"

    raise_alert_entry(central)
    page.reload()
    row = page.locator("#deliveries tbody tr", has_text="alert.raise")
    assert row.count() == 1
    with page.expect_navigation():
        row.get_by_role("button", name=re.compile("^重发")).click()
    assert "alert.raise" in page.locator("#deliveries").inner_text()
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(select(webhook_deliveries.c.event_type)).scalars().all() == [
                "alert.raise"
            ]
    finally:
        engine.dispose()
    both_languages(page, screenshots, "webhook-log", width)
    with page.expect_navigation():
        page.locator("#switch-off").click()
    assert page.locator("#webhook-state").inner_text() == "已关闭"
    page.goto(f"{central.url}/console/webhooks")
    both_languages(page, screenshots, "webhooks", width)

    seed_operations(central)
    page.goto(f"{central.url}/console/dashboard")
    devices = page.locator("#dash-devices")
    assert "ZPL-1" in devices.inner_text()
    assert "ST-W" in page.locator("#dash-lagging").inner_text()
    assert page.locator("#tile-device_down strong").inner_text() == "1"
    devices.scroll_into_view_if_needed()
    both_languages(page, screenshots, "dashboard-operations", width)
    page.goto(f"{central.url}/console/alerts?kind=device_down")
    assert "已断开 90 分钟（上限 5）" in page.locator("#main").inner_text()
    both_languages(page, screenshots, "alerts-operations", width)
