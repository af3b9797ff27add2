"""Migration 0034 sends the categories that existed before it to the sites once: one
``category`` change each, parents first, under versions taken from the feed's counter, so
an edge reading from its cursor gets them. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import insert, select

from central_api.core.db import create_db_engine, write_transaction
from central_api.models import change_feed, feed_counter
from central_api.models.master import categories
from central_api.models.replenishment import expiry_alert_days
from tests.central.test_migrations import migrate, scratch_url  # noqa: F401 (a fixture)


def test_existing_categories_enter_the_feed_once_parents_first(
    scratch_url: str,  # noqa: F811 (the fixture)
) -> None:
    migrate(scratch_url, "upgrade", "0033")
    engine = create_db_engine(scratch_url)
    now = datetime.now(UTC)
    try:
        with engine.connect() as connection, write_transaction(connection):
            connection.execute(
                insert(categories).values(
                    code="Z-ROOT", parent_code=None, name="root", name_en="", code_digits=6,
                    updated_at=now,
                )
            )  # fmt: skip
            connection.execute(
                insert(categories).values(
                    code="A-CHILD", parent_code="Z-ROOT", name="child", name_en="",
                    code_digits=6, updated_at=now,
                )
            )  # fmt: skip
            connection.execute(
                insert(expiry_alert_days).values(
                    category_code="Z-ROOT", days="15,45", updated_at=now
                )
            )
            before = connection.execute(select(feed_counter.c.version)).scalar_one()
        migrate(scratch_url, "upgrade", "head")
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    change_feed.c.version,
                    change_feed.c.site_id,
                    change_feed.c.entity_key,
                    change_feed.c.data,
                )
                .where(change_feed.c.entity == "category")
                .order_by(change_feed.c.version)
            ).all()
            after = connection.execute(select(feed_counter.c.version)).scalar_one()
    finally:
        engine.dispose()
    assert [(row.version, row.site_id, row.entity_key) for row in rows] == [
        (before + 1, None, "Z-ROOT"),
        (before + 2, None, "A-CHILD"),
    ]
    assert [json.loads(row.data) for row in rows] == [
        {"code": "Z-ROOT", "parent": None, "expiry_days": [15, 45]},
        {"code": "A-CHILD", "parent": "Z-ROOT", "expiry_days": None},
    ]
    assert after == before + 2
