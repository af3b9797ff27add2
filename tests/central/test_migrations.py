"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from central_api.db import upgrade_database
from central_api.models import metadata


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_is_idempotent(database_url: str, engine: Engine) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)

    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            ("0004",)
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
        }
