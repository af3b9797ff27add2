"""Items whose name or unit holds control characters are repaired, and sites told.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Until the contract gave every text field one rule (``jxc.contract.Text``), an item's name
and unit took any text: a NUL on SQLite, a tab or a line break on both databases. Such a
unit reached the edge through the feed, and the edge then refused every scan of the item,
because the event contract refuses a control character in a unit.

Each such item is repaired (every control character a space, trimmed; a unit left empty
becomes ``EA``), its repaired state is appended to the change feed under a new version so
that sites that already hold the broken one take the repair, and the feed's older
entries of the item are repaired in place, so a site reading the feed from the start
never meets a state its contract refuses. The text rule is written out here rather than
imported, so this migration keeps doing what it did when the code moves on.

The downgrade changes nothing: the broken values are not worth restoring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PAGE = 5000

_items = sa.table(
    "items",
    sa.column("item_code", sa.String),
    sa.column("name", sa.String),
    sa.column("uom", sa.String),
    sa.column("active", sa.Boolean),
    sa.column("version", sa.BigInteger),
    sa.column("updated_at", sa.DateTime(timezone=True)),
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


def _clean(text: str, max_length: int) -> str:
    return _CONTROL.sub(" ", text).strip()[:max_length]


def _repaired(name: str, uom: str) -> tuple[str, str]:
    return _clean(name, 200), _clean(uom, 16) or "EA"


def _json(data: dict[str, Any]) -> str:
    # As central_api.services.feed writes a change's data.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    connection = op.get_bind()
    _repair_feed_history(connection)
    _repair_items(connection)


def _repair_feed_history(connection: sa.Connection) -> None:
    after = 0
    while True:
        page = connection.execute(
            sa.select(_feed.c.version, _feed.c.data)
            .where(_feed.c.entity == "item", _feed.c.data.is_not(None), _feed.c.version > after)
            .order_by(_feed.c.version)
            .limit(_PAGE)
        ).all()
        if not page:
            return
        fixes = []
        for version, text in page:
            data = json.loads(text)
            name, uom = data.get("name", ""), data.get("uom", "EA")
            if isinstance(name, str) and isinstance(uom, str) and _CONTROL.search(name + uom):
                data["name"], data["uom"] = _repaired(name, uom)
                fixes.append({"at": version, "fixed": _json(data)})
        if fixes:
            connection.execute(
                _feed.update()
                .where(_feed.c.version == sa.bindparam("at"))
                .values(data=sa.bindparam("fixed")),
                fixes,
            )
        after = page[-1].version


def _repair_items(connection: sa.Connection) -> None:
    broken = [
        row
        for row in connection.execute(
            sa.select(_items.c.item_code, _items.c.name, _items.c.uom, _items.c.active)
        )
        if _CONTROL.search(row.name + row.uom)
    ]
    if not broken:
        return
    counter = sa.select(_counter.c.version).where(_counter.c.id == 1)
    if connection.dialect.name == "postgresql":
        counter = counter.with_for_update()
    version = connection.execute(counter).scalar_one()
    now = datetime.now(UTC)
    for row in broken:
        version += 1
        name, uom = _repaired(row.name, row.uom)
        data = {"item_code": row.item_code, "name": name, "uom": uom, "active": bool(row.active)}
        connection.execute(
            _feed.insert().values(
                version=version,
                site_id=None,
                entity="item",
                entity_key=row.item_code,
                op="upsert",
                data=_json(data),
                changed_at=now,
            )
        )
        connection.execute(
            _items.update()
            .where(_items.c.item_code == row.item_code)
            .values(name=name, uom=uom, version=version, updated_at=now)
        )
    connection.execute(_counter.update().where(_counter.c.id == 1).values(version=version))


def downgrade() -> None:
    """Nothing to undo: see the module docstring."""
