"""Site credentials and the key site tokens are signed with.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The signing key is made here, once per database, from the operating system's random
source; every central process on this database then signs and checks with the same key.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_credentials",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_site_credentials"),
    )
    key_table = op.create_table(
        "auth_signing_key",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_hex", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_auth_signing_key_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_auth_signing_key"),
    )
    op.bulk_insert(
        key_table,
        [{"id": 1, "key_hex": secrets.token_hex(32), "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("auth_signing_key")
    op.drop_table("site_credentials")
