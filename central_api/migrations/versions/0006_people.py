"""People: users, roles (the seven defaults), their sites and sessions; item prices.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

The default roles are rows, so an admin may change their grants; no user is created here
(there is never a default password): the first admin comes from ``jxc central user add``
or from ``jxc central serve`` on first start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ROLES: list[tuple[str, str, str, bool]] = [
    ("admin", "everything, including people and roles", "*", True),
    (
        "purchaser",
        "buys: edits the item master, sees prices",
        "items.read items.write stock.read",
        True,
    ),
    ("sales", "sells: reads items and stock, sees prices", "items.read stock.read", True),
    (
        "warehouse_clerk",
        "moves goods: reads items and stock, no money",
        "items.read stock.read",
        False,
    ),
    (
        "store_manager",
        "runs stores: reads items and stock of their sites",
        "items.read stock.read",
        True,
    ),
    (
        "finance",
        "keeps the books: reads items and stock with their values",
        "items.read stock.read",
        True,
    ),
    (
        "auditor",
        "checks: reads everything and the audit log",
        "items.read stock.read audit.read",
        True,
    ),
]


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_table(
        "users",
        sa.Column("user_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    role_table = op.create_table(
        "roles",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("financial", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_roles"),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_user_roles_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["role"], ["roles.name"], name="fk_user_roles_role_roles"),
        sa.PrimaryKeyConstraint("user_id", "role", name="pk_user_roles"),
    )
    op.create_index("ix_user_roles_role", "user_roles", ["role"])
    op.create_table(
        "user_sites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_user_sites_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "site_id", name="pk_user_sites"),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("csrf_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("failure_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("failure_id", name="pk_login_failures"),
    )
    op.create_index(
        "ix_login_failures_username_failed_at", "login_failures", ["username", "failed_at"]
    )
    op.create_index(
        "ix_login_failures_address_failed_at", "login_failures", ["address", "failed_at"]
    )
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("cost", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("price", sa.BigInteger(), nullable=True))
    op.bulk_insert(
        role_table,
        [
            {
                "name": name,
                "description": description,
                "actions": actions,
                "financial": financial,
                "changed_at": now,
            }
            for name, description, actions, financial in DEFAULT_ROLES
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("price")
        batch.drop_column("cost")
    op.drop_table("login_failures")
    op.drop_table("sessions")
    op.drop_table("user_sites")
    op.drop_table("user_roles")
    op.drop_table("roles")
    op.drop_table("users")
