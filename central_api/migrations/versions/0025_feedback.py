"""Feedback from the console (issue 20): one table; the ``feedback.manage`` grant.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04

Sending a note needs only a signed-in user, so no role is given anything for that.
``admin`` holds ``*`` in the default roles, which grants ``feedback.manage`` already; an
admin role whose actions were narrowed by hand is given it here, as the issue asks that
an admin sees the inbox. No other role gets it: notes name their senders.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {"admin": "feedback.manage"}


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.String(16), nullable=False),
        sa.Column("page", sa.String(500), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(400), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=True),
        sa.Column("financial", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("screenshot", sa.LargeBinary(), nullable=True),
        sa.Column("screenshot_type", sa.String(32), nullable=True),
        sa.Column("tags", sa.String(400), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(1000), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])

    now = datetime.now(UTC)
    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_index("ix_feedback_created_at", table_name="feedback")
    op.drop_table("feedback")
