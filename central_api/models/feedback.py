"""Feedback from the console's users (issue 20): a note about a page, who sent it with
which roles, and a screenshot if they attached one; the admin's tags and resolution.

The screenshot is kept in the row itself (at most ``MAX_SCREENSHOT_BYTES`` of PNG or
JPEG, ``central_api.services.feedback``): a few hundred kB per note, a handful of notes a
day, backed up with everything else; a file store would be a second thing to back up.
Lists never select it. See ``docs/console.md`` ("Feedback").
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, LargeBinary, String, Table, Text

from central_api.models.base import metadata

feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", String(16), primary_key=True),
    Column("page", String(500), nullable=False),
    Column("note", Text, nullable=False),
    Column("sender", String(64), nullable=False),
    Column("roles", String(400), nullable=False),
    # The sender's one site when their account is limited to exactly one; else NULL. An
    # admin limited to sites sees the notes of those sites (one of every site: all of them).
    Column("site_id", String(32), nullable=True),
    # The sender saw amounts: their screenshot may show some, so it is shown only to a
    # reader with the financial field group too.
    Column("financial", Boolean, nullable=False),
    Column("language", String(16), nullable=False),
    Column("screenshot", LargeBinary, nullable=True),
    Column("screenshot_type", String(32), nullable=True),
    Column("tags", String(400), nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolution", String(1000), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_created_at", "created_at"),
)
