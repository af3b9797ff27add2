"""Who a route's access rule lets in, from its ``x-jxc-permission`` and the roles table.

The permission walk (``test_permissions.py``) proves that central refuses exactly the
callers this says it refuses; the fuzz and the route walk use the same answer to send a
refused caller only a few requests (``Requires`` refuses before reading anything else).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from central_api.models.people import roles

Grants = dict[str, tuple[set[str], bool]]
"""Role name -> (its actions, whether it sees the financial group)."""


@dataclass(frozen=True)
class Caller:
    name: str
    roles: tuple[str, ...] = ()
    site: bool = False
    anonymous: bool = False


def grants(engine: Engine) -> Grants:
    with engine.connect() as connection:
        rows = connection.execute(select(roles.c.name, roles.c.actions, roles.c.financial))
        return {row.name: (set(row.actions.split()), row.financial) for row in rows}


def allowed(caller: Caller, rule: str, granted: Grants) -> bool:
    if rule == "public":
        return True
    if caller.anonymous:
        return False
    if rule == "site":
        return caller.site
    if caller.site:
        return rule.endswith("+site")
    if rule == "signed-in":
        return True
    action = rule.removesuffix("+site")
    actions = set().union(*(granted[role][0] for role in caller.roles))
    return "*" in actions or action in actions
