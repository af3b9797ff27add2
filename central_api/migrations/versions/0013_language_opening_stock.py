"""Issue 13's rest: each user's console language; opening stock (期初库存) imports.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

* ``users.language``: the console language a user chose (``zh-CN``, ``en``), NULL for
  "follow the browser". Stored per user so a clerk who switched to English on a shared
  warehouse phone gets English on the office PC too, and the next clerk on that phone
  gets their own.
* ``opening_stock``: one row per (site, location, item, lot) whose opening balance was
  imported, with the file and row it came from and the central event that booked it. The
  key makes a re-import of the same file (or of a row already imported) change nothing.
* ``stock.import`` is *added* to the default roles that still exist, as 0009-0012 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "store_manager": "stock.import",
    "finance": "stock.import",
}
"""A store manager loads their own sites' opening stock (quantities; costs only with the
financial group); finance loads it with costs. ``admin`` holds ``*`` already."""


def upgrade() -> None:
    now = datetime.now(UTC)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
    op.create_table(
        "opening_stock",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("unit_cost", sa.BigInteger(), nullable=True),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "location", "item", "lot", name="pk_opening_stock"),
    )
    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("opening_stock")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
