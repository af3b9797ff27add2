"""People: users, the roles that grant them actions and field groups, their sessions.

Roles are data, not code: an admin edits their grants through ``/roles``. A role's
``actions`` is a space-separated list of action names (``items.write``) or ``*`` for every
action; ``financial`` grants the financial field group (cost, price, value, margin,
amounts). A user with no ``user_sites`` row sees every site; with rows, only those.

Sessions hold only the SHA-256 of the bearer token or cookie (random 256-bit values, so a
slow hash adds nothing), so a copy of the database logs nobody in.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from central_api.models.base import metadata

users = Table(
    "users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    # The console language the user chose (``zh-CN``, ``en``); NULL: the browser's.
    Column("language", String(8), nullable=True),
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("description", String(200), nullable=False),
    Column("actions", Text, nullable=False),
    Column("financial", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", Integer, ForeignKey(users.c.user_id, ondelete="CASCADE"), primary_key=True),
    # No cascade: a role that someone holds cannot be deleted from under them.
    Column("role", String(40), ForeignKey(roles.c.name), primary_key=True),
    Index(None, "role"),
)

user_sites = Table(
    "user_sites",
    metadata,
    Column("user_id", Integer, ForeignKey(users.c.user_id, ondelete="CASCADE"), primary_key=True),
    Column("site_id", String(32), primary_key=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey(users.c.user_id, ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("csrf_sha256", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index(None, "user_id"),
)
"""``kind`` is ``bearer`` (API token) or ``cookie`` (web session, with its CSRF token)."""

login_failures = Table(
    "login_failures",
    metadata,
    Column("failure_id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Index(None, "username", "failed_at"),
    Index(None, "address", "failed_at"),
)
