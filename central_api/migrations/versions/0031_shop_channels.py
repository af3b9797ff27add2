"""Online shops' signing secrets, rotatable at central; the ``shop_channel.manage`` grant.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-05

Until now a shop's order-signing secret lived only in the setting ``shop_secrets``, so a
new one meant a restart of every central process and a refused order for every one the
shop signed with the old one in between. A channel rotated through the API gets a row
here; the setting still serves the channels without one, so nothing is migrated.

``admin`` holds ``*`` in the default roles; an admin role narrowed by hand is given the
new action here. No other role gets it: the secret lets whoever holds it (with the shop
user's token) place orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {"admin": "shop_channel.manage"}


def upgrade() -> None:
    op.create_table(
        "shop_channels",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128), nullable=True),
        sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", name="pk_shop_channels"),
    )
    grant(op.get_bind(), NEW_GRANTS, datetime.now(UTC))


def downgrade() -> None:
    revoke(op.get_bind(), NEW_GRANTS)
    op.drop_table("shop_channels")
