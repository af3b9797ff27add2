"""The operations alerts in the console, on SQLite and PostgreSQL: the inbox shows and
filters them in both languages, the dashboard's tiles count them and its panels list the
lagging sites and the devices down from the same figures, within the user's sites."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.models.ledger import site_sync_state
from central_api.services.audit import system_context
from central_api.services.monitoring import Thresholds, evaluate, record_status
from jxc.contract import SiteStatusReport
from tests.web.conftest import add_test_user, central_app
from tests.web.test_console_pages import browser

LONG_AGO = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""Long enough before any run of the tests that every lag is past every threshold."""


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        engine = made.state.engine
        add_test_user(engine, "boss", ["admin"])
        add_test_user(engine, "s2clerk", ["warehouse_clerk"], sites=["S02"])
        with engine.connect() as connection:
            with write_transaction(connection):
                for site in ("S01", "S02"):
                    connection.execute(
                        insert(site_sync_state).values(
                            site_id=site, acked_through_seq=3, updated_at=LONG_AGO
                        )
                    )
            record_status(
                connection,
                SiteStatusReport.model_validate(
                    {
                        "site_id": "S01",
                        "reported_at": LONG_AGO.isoformat(),
                        "outbox_depth": 4,
                        "devices": [
                            {
                                "kind": "printer",
                                "device_id": "ZPL-1",
                                "state": "disconnected",
                                "last_error": "paper out",
                            },
                            {"kind": "scanner", "device_id": "SC-1", "state": "connected"},
                        ],
                    }
                ),
                received_at=LONG_AGO,
            )
            evaluate(
                connection,
                now=LONG_AGO + timedelta(hours=2),
                thresholds=Thresholds(),
                disk={"database": Decimal("4.5")},
                audit=system_context("test"),
            )
        yield made


def test_the_inbox_shows_operations_alerts_in_both_languages(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    page = boss.get("/console/alerts").text
    assert "Not heard for 120 minutes (limit 60)" in page
    assert "Disconnected for 120 minutes (limit 5)" in page
    assert "Free space 4.5 percent (limit 10 percent)" in page
    assert "Central · database" in page
    only = boss.get("/console/alerts?kind=device_down").text
    assert "Device down" in only
    assert "ZPL-1" in only
    assert "Not heard" not in only
    chinese = browser(app, "boss", lang="zh-CN").get("/console/alerts").text
    assert "已 120 分钟无同步消息（上限 60）" in chinese
    assert "剩余空间 4.5%（下限 10%）" in chinese
    assert "设备离线" in chinese
    # a user of S02 sees S02's lag, not S01's device nor central's disk
    scoped = browser(app, "s2clerk", lang="en").get("/console/alerts").text
    assert "ZPL-1" not in scoped
    assert "Free space" not in scoped
    assert scoped.count("Not heard for") == 1


def test_the_dashboard_lists_lagging_sites_and_devices_down(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    live = boss.get("/console/dashboard/live").text
    lagging = live.split('id="dash-lagging"', 1)[1].split("</section>", 1)[0]
    assert 'id="lag-S01"' in lagging
    assert 'id="lag-S02"' in lagging
    assert "4 events waiting" in lagging
    devices = live.split('id="dash-devices"', 1)[1].split("</section>", 1)[0]
    assert 'id="down-S01-ZPL-1" class="bad"' in devices
    assert "paper out" in devices
    assert "SC-1" not in devices
    tiles = live.split('id="dash-alerts"', 1)[1].split("</div>", 1)[0]
    assert 'href="/console/alerts?kind=sync_lag" id="tile-sync_lag"><strong>2</strong>' in tiles
    assert 'id="tile-device_down"><strong>1</strong>' in tiles
    scoped = browser(app, "s2clerk", lang="zh-CN").get("/console/dashboard/live").text
    assert 'id="lag-S02"' in scoped
    assert "S01" not in scoped
    assert "没有边缘端报告设备离线。" in scoped
