"""Operations thresholds on SQLite and PostgreSQL: sync lag, outbox depth, devices down and
disk free raise one alert each while they hold and clear it when they end, judged at a
fixed ``now`` (no sleeping); each change is an audit entry a webhook hears; the edge's
status report through the sync contract."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.models.audit import audit_log
from central_api.models.ledger import site_sync_state
from central_api.models.monitoring import site_devices, site_status
from central_api.models.replenishment import alerts
from central_api.models.webhooks import webhook_deliveries
from central_api.services import webhooks
from central_api.services.audit import system_context
from central_api.services.monitoring import (
    OPS,
    MonitorWorker,
    Thresholds,
    evaluate,
    record_status,
    run_daily_expiry,
    site_health,
)
from edge_agent.reporting import StatusReporter, build_report
from jxc.contract import SiteStatusReport
from jxc.paths import SYNC_EVENTS, SYNC_STATUS
from tests.central.conftest import SiteLedger, central_app
from tests.central.test_metrics import samples
from tests.central.test_metrics import value as value_of
from tests.patience import wait_for

T = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LIMITS = Thresholds(
    sync_lag_min=60, outbox_depth=1000, device_down_min=5, disk_free_percent=Decimal(10)
)
ROOMY = {"database": Decimal("50.0")}


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def report(engine: Engine, site: str, minute: int, depth: int, *devices: Any) -> bool:
    made = SiteStatusReport.model_validate(
        {
            "site_id": site,
            "reported_at": at(minute).isoformat(),
            "outbox_depth": depth,
            "devices": [
                {"kind": kind, "device_id": name, "state": state, "last_error": error}
                for kind, name, state, error in devices
            ],
        }
    )
    with engine.connect() as connection:
        return record_status(connection, made, received_at=at(minute))


def pushed(engine: Engine, site: str, minute: int) -> None:
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            insert(site_sync_state).values(site_id=site, acked_through_seq=1, updated_at=at(minute))
        )


def check(engine: Engine, minute: int, disk: dict[str, Decimal] = ROOMY) -> tuple[int, int]:
    with engine.connect() as connection:
        outcome = evaluate(
            connection, now=at(minute), thresholds=LIMITS, disk=disk, audit=system_context("t")
        )
    return len(outcome.raised), len(outcome.cleared)


def open_alerts(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(alerts.c.kind, alerts.c.site_id, alerts.c.location)
            .where(alerts.c.source == OPS, alerts.c.cleared_at.is_(None))
            .order_by(alerts.c.kind, alerts.c.site_id, alerts.c.location)
        ).all()
    return [tuple(row) for row in rows]


def audit_actions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(audit_log.c.action)
                .where(audit_log.c.resource == "alert")
                .order_by(audit_log.c.seq)
            ).scalars()
        )


def test_each_threshold_raises_once_while_it_holds_and_clears_when_it_ends(
    engine: Engine,
) -> None:
    pushed(engine, "S01", 0)
    pushed(engine, "S02", 0)
    printer = ("printer", "P1", "disconnected", "paper out")
    assert report(engine, "S01", 0, 5, ("scanner", "SC1", "connected", None), printer)
    assert report(engine, "S02", 0, 2000)

    assert check(engine, 3) == (1, 0)  # the backlog; the printer is down for 3 minutes only
    assert open_alerts(engine) == [("outbox_depth", "S02", "")]
    assert check(engine, 10, {"database": Decimal("5.0")}) == (2, 0)
    assert open_alerts(engine) == [
        ("device_down", "S01", "P1"),
        ("disk_low", "", "database"),
        ("outbox_depth", "S02", ""),
    ]
    # the same figures again: nothing raised twice, nothing written
    before = audit_actions(engine)
    assert check(engine, 11, {"database": Decimal("5.0")}) == (0, 0)
    assert audit_actions(engine) == before

    # an hour without news: both sites lag (neither said its outbox is empty)
    assert check(engine, 61, {"database": Decimal("5.0")}) == (2, 0)
    assert ("sync_lag", "S01", "") in open_alerts(engine)
    # S01 comes back with an empty outbox and its printer fixed; the disk was cleaned up
    assert report(engine, "S01", 62, 0, ("printer", "P1", "connected", None))
    assert check(engine, 63) == (0, 3)
    assert open_alerts(engine) == [("outbox_depth", "S02", ""), ("sync_lag", "S02", "")]
    with engine.connect() as connection:
        cleared = connection.execute(
            select(alerts.c.kind, alerts.c.status, alerts.c.cleared_at, alerts.c.qty)
            .where(alerts.c.cleared_at.is_not(None))
            .order_by(alerts.c.kind)
        ).all()
        lag = connection.execute(
            select(alerts.c.qty, alerts.c.threshold, alerts.c.since_at).where(
                alerts.c.kind == "sync_lag", alerts.c.site_id == "S02"
            )
        ).one()
    assert [(row.kind, row.status) for row in cleared] == [
        ("device_down", "cleared"),
        ("disk_low", "cleared"),
        ("sync_lag", "cleared"),
    ]
    assert {row.cleared_at.replace(tzinfo=UTC) for row in cleared} == {at(63)}
    assert (lag.qty, lag.threshold) == (Decimal(61), Decimal(60))
    assert lag.since_at.replace(tzinfo=UTC) == at(0)
    assert [row.qty for row in cleared if row.kind == "disk_low"] == [Decimal("5")]

    # the condition comes back: a new alert, the old one stays as history
    assert report(engine, "S01", 70, 0, ("printer", "P1", "disconnected", None))
    assert check(engine, 74) == (0, 0)
    assert check(engine, 75) == (1, 0)
    with engine.connect() as connection:
        downs = connection.execute(
            select(alerts.c.status)
            .where(alerts.c.kind == "device_down")
            .order_by(alerts.c.alert_id)
        ).scalars()
        assert list(downs) == ["cleared", "open"]
    assert audit_actions(engine) == [
        "alert.raise",  # outbox S02
        "alert.raise",  # device, disk
        "alert.raise",
        "alert.raise",  # lag S01, S02
        "alert.raise",
        "alert.clear",  # device, disk, lag S01
        "alert.clear",
        "alert.clear",
        "alert.raise",  # device again
    ]


def test_a_late_report_is_ignored_and_a_device_keeps_its_since(engine: Engine) -> None:
    assert report(engine, "S01", 10, 0, ("scale", "W1", "disconnected", "timeout"))
    assert not report(engine, "S01", 5, 0, ("scale", "W1", "connected", None))
    assert report(engine, "S01", 20, 3, ("scale", "W1", "disconnected", "timeout again"))
    with engine.connect() as connection:
        device = connection.execute(select(site_devices)).one()
        status = connection.execute(select(site_status)).one()
        health = site_health(connection, now=at(30))
    assert device.since_at.replace(tzinfo=UTC) == at(10)
    assert device.last_error == "timeout again"
    assert status.outbox_depth == 3
    # never pushed and the outbox not empty: measured from the last report
    assert [(h.site_id, h.lag_minutes, h.outbox_depth) for h in health] == [("S01", 10, 3)]
    assert [(d.device_id, d.minutes) for d in health[0].devices_down] == [("W1", 20)]
    # a device left out of the next report is forgotten
    assert report(engine, "S01", 40, 0)
    with engine.connect() as connection:
        assert connection.execute(select(site_devices)).all() == []
        health = site_health(connection, now=at(41))
    assert health[0].lag_minutes == 1  # an empty outbox reported is being in step


def test_raised_alerts_reach_a_webhook_subscribed_to_alerts(engine: Engine) -> None:
    with engine.connect() as connection:
        made = webhooks.create_subscription(
            connection,
            url="https://erp.example.com/alerts",
            events=["alert.*"],
            description=None,
            financial=False,
            actor="admin",
            audit=system_context("t"),
            claim=None,
            allow_private=False,
        )
    pushed(engine, "S03", 0)
    assert check(engine, 90) == (1, 0)
    pushed_again = at(91)
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            site_sync_state.update()
            .where(site_sync_state.c.site_id == "S03")
            .values(updated_at=pushed_again)
        )
    assert check(engine, 92) == (0, 1)
    with engine.connect() as connection:
        assert webhooks.fan_out(connection) == 2
        sent = connection.execute(
            select(webhook_deliveries.c.event_type, webhook_deliveries.c.payload)
            .where(webhook_deliveries.c.subscription_id == made.subscription_id)
            .order_by(webhook_deliveries.c.event_seq)
        ).all()
    assert [row.event_type for row in sent] == ["alert.raise", "alert.clear"]
    assert '"kind":"sync_lag"' in sent[0].payload
    assert '"measured":"90"' in sent[0].payload
    assert '"site_id":"S03"' in sent[0].payload


def test_an_edge_reports_through_the_sync_contract(client: TestClient) -> None:
    body = {
        "site_id": "S01",
        "reported_at": "2026-12-01T08:00:00Z",
        "outbox_depth": 7,
        "devices": [{"kind": "printer", "device_id": "P1", "state": "disconnected"}],
    }
    assert client.post(SYNC_STATUS, json=body).status_code == 204
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        assert connection.execute(select(site_status.c.outbox_depth)).scalar_one() == 7
        assert connection.execute(select(site_devices.c.state)).scalar_one() == "disconnected"
    bad = {**body, "devices": [{"kind": "toaster", "device_id": "T", "state": "on"}]}
    refused = client.post(SYNC_STATUS, json=bad)
    assert refused.status_code == 422
    assert "devices" in refused.text
    twice = {**body, "devices": body["devices"] * 2}
    assert client.post(SYNC_STATUS, json=twice).status_code == 422
    # no token, and another site's token: refused, nothing kept
    token = client.post(
        SYNC_STATUS, json={**body, "site_id": "S02"}, headers={"Authorization": "Bearer x"}
    )
    assert token.status_code == 401
    s02 = client.auth.token_for("S02")  # type: ignore[union-attr]
    other = client.post(
        SYNC_STATUS,
        json={**body, "outbox_depth": 99},
        headers={"Authorization": f"Bearer {s02}"},
    )
    assert other.status_code == 403
    with engine.connect() as connection:
        assert connection.execute(select(site_status.c.outbox_depth)).scalars().all() == [7]
    scraped = samples(client)
    assert value_of(scraped, "jxc_site_outbox_depth", site="S01") == 7
    down = {"site": "S01", "kind": "printer", "device": "P1", "state": "disconnected"}
    assert value_of(scraped, "jxc_site_device_state", **down) == 1


def test_the_lifespan_worker_runs_the_check(database_url: str) -> None:
    """The app's own worker raises the alert (a site silent since long before any run of
    the tests, so whatever the clock says it lags), polled for, not slept on."""
    settings = Settings(database_url=database_url, monitor_interval_s=0.05, webhook_poll_s=0)
    with central_app(settings) as app, TestClient(app):
        engine = app.state.engine
        pushed(engine, "S09", -60 * 24 * 300)

        def raised() -> bool:
            return ("sync_lag", "S09", "") in open_alerts(engine)

        assert wait_for(raised, 10)


def test_the_edge_reporter_reports_to_central_and_stops_on_an_older_central(
    client: TestClient,
) -> None:
    scanner = {"device_id": "SC1", "state": "connected", "last_error": None}
    printer = {"device_id": "P1", "state": "disconnected", "last_error": "head\nopen"}

    def make(now: datetime) -> SiteStatusReport:
        devices = [("scanner", scanner), ("printer", printer), ("printer", printer)]
        return build_report("S07", outbox_depth=12, dead_letters=1, devices=devices, now=now)

    reporter = StatusReporter(client, make)
    reporter.run()
    assert reporter.last_error is None
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        status = connection.execute(select(site_status)).one()
        devices = connection.execute(
            select(
                site_devices.c.device_id, site_devices.c.state, site_devices.c.last_error
            ).order_by(site_devices.c.device_id)
        ).all()
    assert (status.site_id, status.outbox_depth, status.dead_letters) == ("S07", 12, 1)
    assert [tuple(row) for row in devices] == [
        ("P1", "disconnected", "head open"),
        ("SC1", "connected", None),
    ]

    calls: list[str] = []

    def older_central(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(404, json={"detail": "Not Found"})

    with httpx.Client(
        base_url="http://central", transport=httpx.MockTransport(older_central)
    ) as old:
        quiet = StatusReporter(old, make)
        quiet.run()
        quiet.run()
    assert calls == [SYNC_STATUS]
    assert quiet.unsupported


def test_the_daily_expiry_evaluation_runs_once_a_day_as_the_system(client: TestClient) -> None:
    """Expiry bands move with the calendar, so central evaluates them itself each day: the
    worker's day gate lets one run a day through, and the run raises the lot's alert with
    an audit entry of the system (no person asked for it)."""
    ledger = SiteLedger("S01")
    ok = client.post(
        SYNC_EVENTS,
        json=ledger.batch(
            [ledger.event("receipt", "5", item="PILL", lot="L-EXP", expiry="2027-01-20")]
        ),
    )
    assert ok.status_code == 200, ok.text
    engine = client.app.state.engine  # type: ignore[attr-defined]
    worker = MonitorWorker(engine, lambda: Settings(database_url="sqlite://"))
    day = date(2027, 1, 1)
    assert worker.expiry_due(day)
    assert not worker.expiry_due(day)
    assert worker.expiry_due(day + timedelta(days=1))
    outcome = run_daily_expiry(engine, today=day)
    assert (outcome.lots, outcome.raised) == (1, 1)
    assert run_daily_expiry(engine, today=day).raised == 0
    with engine.connect() as connection:
        raised = connection.execute(
            select(alerts.c.kind, alerts.c.lot, alerts.c.threshold).where(
                alerts.c.kind == "expiry", alerts.c.cleared_at.is_(None)
            )
        ).all()
        actors = connection.execute(
            select(audit_log.c.actor_kind, audit_log.c.actor_id).where(
                audit_log.c.action == "alert.evaluate_expiry"
            )
        ).all()
    assert [(kind, lot, int(threshold)) for kind, lot, threshold in raised] == [
        ("expiry", "L-EXP", 30)
    ]
    assert set(actors) == {("system", "daily-expiry-evaluation")}


def test_a_daily_job_runs_once_a_day_and_again_after_a_failure() -> None:
    """The worker's daily jobs (stock snapshots, expiry): one run a day each; a run that
    fails is tried again at the next check, and one job's day is not another's."""
    worker = MonitorWorker(None, lambda: Settings(database_url="sqlite://"))  # type: ignore[arg-type]
    runs: list[str] = []

    def works() -> int:
        runs.append("works")
        return 3

    def fails() -> int:
        runs.append("fails")
        raise RuntimeError("database away")

    async def checks() -> list[int | None]:
        day = date(2027, 1, 1)
        return [
            await worker._daily("snapshots", day, works),
            await worker._daily("snapshots", day, works),
            await worker._daily("expiry", day, fails),
            await worker._daily("expiry", day, works),
            await worker._daily("expiry", day, works),
            await worker._daily("snapshots", day + timedelta(days=1), works),
        ]

    assert asyncio.run(checks()) == [3, None, None, 3, None, 3]
    assert runs == ["works", "fails", "works", "works"]
