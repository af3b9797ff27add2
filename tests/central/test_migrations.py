"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, select

from central_api.core.db import (
    alembic_config,
    create_db_engine,
    upgrade_database,
    write_transaction,
)
from central_api.models import alerts, ledger_events, metadata
from central_api.services.ingest import ingest_batch, stored_event
from central_api.services.projections import Projections
from jxc import uuid7
from jxc.contract import LedgerEvent, PushBatch
from tests.central.conftest import CENTRAL_TABLES, fresh_postgres_database


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_is_idempotent(database_url: str, engine: Engine) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)

    # One head (a merge that left two would fail here), and the database is at it.
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            (head,)
        ]
        assert set(inspect(connection).get_table_names()) >= {
            "ledger_events",
            "stock_balances",
            "site_sync_state",
            "items",
            "item_barcodes",
            "change_feed",
            "feed_counter",
            "refused_events",
            "site_credentials",
            "auth_signing_key",
            "audit_log",
            "audit_head",
            "users",
            "roles",
            "user_roles",
            "user_sites",
            "sessions",
            "login_failures",
        }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, so migrating it down cannot disturb the other tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    request.getfixturevalue("postgres_session")  # skips or fails loudly without PostgreSQL
    with fresh_postgres_database("jxc_migrate") as url:
        yield url.render_as_string(hide_password=False)


def test_dropping_the_content_digest_goes_back_and_forth(scratch_url: str) -> None:
    """0005 drops ``content_digest``; its downgrade refills it as an older central wrote it."""
    upgrade_database(scratch_url)
    engine = create_db_engine(scratch_url)
    try:
        site = "S01"
        events = [
            LedgerEvent.model_validate(
                {
                    "event_id": str(uuid7()),
                    "site_id": site,
                    "seq": seq,
                    "occurred_at": f"2026-12-02T08:00:0{seq}.25+08:00",
                    "kind": kind,
                    "item": "ITEM-1",
                    "location": "A-01",
                    "qty": qty,
                    "uom": "kg",
                    **extra,
                }
            )
            for seq, kind, qty, extra in [
                (1, "receipt", "12.5", {"unit_cost": "3.10", "lot": "L1", "expiry": "2027-03-31"}),
                (2, "sale", "-0.000001", {"actor": "王五", "ref": "SO-1"}),
                (3, "adjustment", "-7", {}),
            ]
        ]
        with engine.connect() as connection:
            ingest_batch(
                connection=connection,
                batch=PushBatch(site_id=site, events=events),
                received_at=datetime.now(UTC),
                projections=Projections(),
            )

        migrate(scratch_url, "downgrade", "0004")
        with engine.connect() as connection:
            digests = dict(
                connection.exec_driver_sql(
                    "SELECT event_id, content_digest FROM ledger_events"
                ).all()
            )
        assert digests == {str(event.event_id): event.content_digest() for event in events}

        migrate(scratch_url, "upgrade", "head")
        with engine.connect() as connection:
            columns = {
                column["name"] for column in inspect(connection).get_columns("ledger_events")
            }
            held = [stored_event(row._mapping) for row in connection.execute(select(ledger_events))]
        assert "content_digest" not in columns
        assert sorted(held, key=lambda event: event.seq) == events
    finally:
        engine.dispose()


def migrate(url: str, direction: str, revision: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection, write_transaction(connection):
            config = alembic_config()
            config.attributes["connection"] = connection
            getattr(command, direction)(config, revision)
    finally:
        engine.dispose()


def test_every_table_is_emptied_between_postgresql_tests() -> None:
    """A table the migrations make that ``CENTRAL_TABLES`` forgets keeps one test's rows
    for the next on PostgreSQL (the SQLite half copies a fresh file, so it never shows)."""
    kept = {"alembic_version", "feed_counter", "audit_head", "auth_signing_key"}
    made = set(metadata.tables) | {"alembic_version"}
    assert made - kept == set(CENTRAL_TABLES), (
        f"add to CENTRAL_TABLES: {sorted(made - kept - set(CENTRAL_TABLES))}; "
        f"not tables: {sorted(set(CENTRAL_TABLES) - made)}"
    )


def test_negative_stock_alerts_are_merged_per_item(scratch_url: str) -> None:
    """0035: the uncleared per-key negative-stock alerts of an item at a site become one
    per-item alert (an open one kept, the earliest ``since``), the rest cleared with a
    note; cleared history and other items' alerts are left as they were."""
    migrated = ScriptDirectory.from_config(alembic_config()).get_revision("0035")
    before = str(migrated.down_revision)
    upgrade_database(scratch_url)
    migrate(scratch_url, "downgrade", before)
    engine = create_db_engine(scratch_url)
    t1 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    t2 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    common = {
        "kind": "negative_stock",
        "source": "stock",
        "site_id": "S01",
        "threshold": Decimal(0),
        "raised_at": t2,
        "version": 1,
        "updated_at": t2,
    }
    rows = [
        # (location, item, lot, qty, since, cleared, status)
        ("A-01", "PILL", "", "-3", t2, None, "resolved"),
        ("B-01", "PILL", "L1", "-2", t1, None, "open"),
        ("A-01", "PILL", "", "-9", t1, t1, "cleared"),  # history
        ("A-01", "TEA", "", "-4", None, None, "open"),
    ]
    try:
        with engine.connect() as connection, write_transaction(connection):
            connection.execute(
                insert(alerts),
                [
                    common
                    | {
                        "source_id": f"S01/{location}/{item}/{lot}",
                        "location": location,
                        "item_code": item,
                        "lot": lot,
                        "qty": Decimal(qty),
                        "detail": f"balance {qty}",
                        "since_at": since,
                        "cleared_at": cleared,
                        "status": status,
                    }
                    for location, item, lot, qty, since, cleared, status in rows
                ],
            )
        migrate(scratch_url, "upgrade", "head")
        with engine.connect() as connection:
            found = connection.execute(select(alerts).order_by(alerts.c.alert_id)).all()
    finally:
        engine.dispose()
    shapes = [
        (a.location, a.item_code, a.lot, a.qty, a.status, a.cleared_at is None) for a in found
    ]
    assert shapes == [
        ("A-01", "PILL", "", Decimal(-3), "resolved", False),  # merged into the open one
        ("", "PILL", "", Decimal(-5), "open", True),
        ("A-01", "PILL", "", Decimal(-9), "cleared", False),
        ("", "TEA", "", Decimal(-4), "open", True),
    ]
    assert found[0].detail.endswith(f"merged into alert {found[1].alert_id}")
    assert (found[1].source_id, found[1].since_at.replace(tzinfo=UTC)) == ("S01/PILL", t1)
    assert found[1].detail.startswith("2 below zero: A-01 (balance -3), B-01/L1 (balance -2)")
