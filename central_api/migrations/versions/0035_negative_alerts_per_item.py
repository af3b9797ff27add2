"""Negative-stock alerts per (site, item) instead of per balance key.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-05

The alerts projection now keeps one uncleared ``negative_stock`` alert per item at a site
(``location`` and ``lot`` empty, ``source_id`` ``site/item``); which balances are negative
is the negative-stock report's, read when asked (``docs/replenishment.md``). The uncleared
per-key alerts already raised are merged here, per (site, item): the first open one (else
the first) stays, with the earliest ``since_at`` of the group, the sum of their
quantities and their details; the others are cleared with a note naming it, so nothing
is lost from the history and the projection finds the alert it expects. Cleared alerts
are history and keep their per-key shape.

Downgrade clears the per-item alerts still uncleared, so an older central raises per key
again at the next push that touches the item.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_alerts = sa.table(
    "alerts",
    sa.column("alert_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("source", sa.String),
    sa.column("source_id", sa.String),
    sa.column("site_id", sa.String),
    sa.column("item_code", sa.String),
    sa.column("location", sa.String),
    sa.column("lot", sa.String),
    sa.column("qty", sa.BigInteger),  # micro-units, as MicroUnits stores them
    sa.column("detail", sa.String),
    sa.column("since_at", sa.DateTime(timezone=True)),
    sa.column("cleared_at", sa.DateTime(timezone=True)),
    sa.column("status", sa.String),
    sa.column("version", sa.Integer),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_UNCLEARED_NEGATIVE = (
    _alerts.c.kind == "negative_stock",
    _alerts.c.source == "stock",
    _alerts.c.cleared_at.is_(None),
)


def _clear(connection: sa.Connection, row: Any, now: datetime, note: str) -> None:
    connection.execute(
        sa.update(_alerts)
        .where(_alerts.c.alert_id == row.alert_id)
        .values(
            cleared_at=now,
            status="cleared" if row.status == "open" else row.status,
            detail=(f"{row.detail}; {note}" if note else row.detail)[:1000],
            version=row.version + 1,
            updated_at=now,
        )
    )


def upgrade() -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in connection.execute(
        sa.select(_alerts).where(*_UNCLEARED_NEGATIVE).order_by(_alerts.c.alert_id)
    ).all():
        groups[(row.site_id, row.item_code)].append(row)
    for (site_id, item), rows in groups.items():
        if len(rows) == 1 and rows[0].location == "" and rows[0].lot == "":
            continue  # already per item
        kept = next((row for row in rows if row.status == "open"), rows[0])
        for row in rows:
            if row is not kept:
                _clear(connection, row, now, f"merged into alert {kept.alert_id}")
        times = [row.since_at for row in rows if row.since_at is not None]
        places = ", ".join(
            f"{row.location}{'/' + row.lot if row.lot else ''} ({row.detail})" for row in rows
        )
        connection.execute(
            sa.update(_alerts)
            .where(_alerts.c.alert_id == kept.alert_id)
            .values(
                location="",
                lot="",
                source_id=f"{site_id}/{item}",
                qty=sum(row.qty or 0 for row in rows),
                since_at=min(times) if times else None,
                detail=f"{len(rows)} below zero: {places}"[:1000],
                version=kept.version + 1,
                updated_at=now,
            )
        )


def downgrade() -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    for row in connection.execute(
        sa.select(_alerts).where(*_UNCLEARED_NEGATIVE, _alerts.c.location == "")
    ).all():
        _clear(connection, row, now, "")
