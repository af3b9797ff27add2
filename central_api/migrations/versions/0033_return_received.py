"""What each customer return line has received.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-05

A return received at central takes every line whole; one received at a site's edge takes
what the customer really sent, carton by carton, possibly less or more than authorised.
``customer_return_lines.received_qty`` (micro-units, like ``qty``) is what arrived, so
restocking or scrapping a line moves what is really in quarantine. Lines of returns
already received or closed (always received whole, at central) get their ``qty``; lines
of returns still authorised get 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "customer_return_lines",
        sa.Column("received_qty", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE customer_return_lines SET received_qty = qty WHERE return_id IN"
        " (SELECT return_id FROM customer_returns WHERE status <> 'authorised')"
    )
    with op.batch_alter_table("customer_return_lines") as table:
        table.alter_column("received_qty", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("customer_return_lines") as table:
        table.drop_column("received_qty")
