"""Every category goes to the sites once, with its own expiry alert bands.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-05

From now on a category write (and setting a category's expiry bands) appends a
``category`` change to the feed (its parent and its own bands; ``jxc.feed.CategoryData``),
so an edge judges expiry by its item's category bands offline. The categories that exist
already were never in the feed: this appends one change for each, in tree order (parents
first), under new versions taken from the feed's counter as every writer does, so an
edge that pulls from its cursor receives them. Agents that do not know the ``category``
kind skip it (they have done so with unknown kinds since their ledger migration 9).

The payload is written out here rather than made by the contract model, so this migration
keeps doing what it did when the code moves on. The downgrade changes nothing: the
changes are harmless to an older central, which never reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_categories = sa.table(
    "categories", sa.column("code", sa.String), sa.column("parent_code", sa.String)
)
_bands = sa.table(
    "expiry_alert_days", sa.column("category_code", sa.String), sa.column("days", sa.String)
)
_feed = sa.table(
    "change_feed",
    sa.column("version", sa.BigInteger),
    sa.column("site_id", sa.String),
    sa.column("entity", sa.String),
    sa.column("entity_key", sa.String),
    sa.column("op", sa.String),
    sa.column("data", sa.Text),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)
_counter = sa.table(
    "feed_counter", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger)
)


def _json(data: dict[str, Any]) -> str:
    # As central_api.services.feed writes a change's data.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tree_order(parents: dict[str, str | None]) -> list[str]:
    """Parents before their children (a cycle, which the service never lets in, last)."""
    placed: list[str] = []
    seen: set[str] = set()
    pending = sorted(parents)
    while pending:
        ready = [code for code in pending if parents[code] is None or parents[code] in seen]
        if not ready:
            ready = pending
        for code in ready:
            placed.append(code)
            seen.add(code)
        pending = [code for code in pending if code not in seen]
    return placed


def upgrade() -> None:
    connection = op.get_bind()
    parents: dict[str, str | None] = {
        row.code: row.parent_code
        for row in connection.execute(sa.select(_categories.c.code, _categories.c.parent_code))
    }
    if not parents:
        return
    own = {
        row.category_code: row.days
        for row in connection.execute(sa.select(_bands.c.category_code, _bands.c.days))
    }
    counter = sa.select(_counter.c.version).where(_counter.c.id == 1)
    if connection.dialect.name == "postgresql":
        counter = counter.with_for_update()
    version = connection.execute(counter).scalar_one()
    now = datetime.now(UTC)
    rows = []
    for code in _tree_order(parents):
        version += 1
        days = own.get(code)
        data = {
            "code": code,
            "parent": parents[code],
            "expiry_days": None if days is None else [int(day) for day in str(days).split(",")],
        }
        rows.append(
            {
                "version": version,
                "site_id": None,
                "entity": "category",
                "entity_key": code,
                "op": "upsert",
                "data": _json(data),
                "changed_at": now,
            }
        )
    connection.execute(_feed.insert(), rows)
    connection.execute(_counter.update().where(_counter.c.id == 1).values(version=version))


def downgrade() -> None:
    """Nothing to undo: see the module docstring."""
