"""What the migrations that give the default roles new actions share.

A migration that adds actions lists them per role (``NEW_GRANTS``: role name -> actions
separated by spaces) and calls :func:`grant` on upgrade and :func:`revoke` on downgrade.
A role that holds ``*`` already, or that an installation deleted, is left alone; an action
a role holds already is not added twice. Kept apart from the application's code (which
changes) and written against a bare ``roles`` table, so an old migration keeps doing
exactly what it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

ROLES = sa.table(
    "roles",
    sa.column("name", sa.String),
    sa.column("actions", sa.Text),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)


def grant(connection: sa.Connection, grants: Mapping[str, str], now: datetime) -> None:
    """Add each role's actions in ``grants`` to what it holds."""
    for name, added in grants.items():
        held = connection.execute(
            sa.select(ROLES.c.actions).where(ROLES.c.name == name)
        ).scalar_one_or_none()
        if held is None or "*" in held.split():
            continue
        actions = held.split()
        wanted = actions + [action for action in added.split() if action not in actions]
        if wanted != actions:
            connection.execute(
                sa.update(ROLES)
                .where(ROLES.c.name == name)
                .values(actions=" ".join(wanted), changed_at=now)
            )


def revoke(connection: sa.Connection, grants: Mapping[str, str]) -> None:
    """Take every action named in ``grants`` from every role (the downgrade)."""
    gone = {action for added in grants.values() for action in added.split()}
    for name, held in connection.execute(sa.select(ROLES.c.name, ROLES.c.actions)).all():
        kept = [action for action in held.split() if action not in gone]
        connection.execute(
            sa.update(ROLES).where(ROLES.c.name == name).values(actions=" ".join(kept))
        )
