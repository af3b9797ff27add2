"""``/api/v1/users`` and ``/api/v1/roles``: people and their grants, for admins.

Roles are data: changing one's actions changes what each holder may do at their next
request. A role someone holds cannot be deleted, and no change may leave nobody able to
manage people (:class:`~central_api.errors.LockoutError`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from central_api.api.deps import ConnDep
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.people import (
    ActionOut,
    RoleIn,
    RoleName,
    RoleOut,
    UserIn,
    Username,
    UserOut,
    UserPatch,
)
from central_api.services.idempotency import IdempotentReplay
from central_api.services.people import (
    ALL_ACTIONS,
    create_user,
    delete_role,
    get_user,
    list_roles,
    list_users,
    put_role,
    update_user,
)
from jxc.paths import API_ROOT, below_api_root

MANAGE = Requires("users.manage")

users_router = APIRouter(prefix=below_api_root(f"{API_ROOT}/users"), tags=["people"])
roles_router = APIRouter(prefix=below_api_root(f"{API_ROOT}/roles"), tags=["people"])

_USER_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such user."},
    409: {"description": "The change would lock everyone (or you) out of managing people."},
    422: {"description": "Invalid field or unknown role; message names it."},
}


@users_router.get("", dependencies=[MANAGE])
def read_users(connection: ConnDep) -> list[UserOut]:
    """Every user with their roles and sites, by user name."""
    return [UserOut.model_validate(user) for user in list_users(connection)]


@users_router.post(
    "",
    dependencies=[MANAGE],
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {"description": "The user name is taken."},
        422: {"description": "Invalid field or unknown role; message names it."},
    },
)
def add_user(
    body: UserIn, connection: ConnDep, claim: IdempotencyDep, response: Response
) -> UserOut:
    """Add a user with a password, roles and (optionally) the sites they are limited to.

    With an ``Idempotency-Key`` a retry is answered with the user the first request made.
    """
    try:
        user = create_user(
            connection,
            username=body.username,
            password=body.password,
            role_names=body.roles,
            sites=body.sites,
            display_name=body.display_name,
            claim=claim,
        )
    except IdempotentReplay as replay:
        replayed(response)
        user = get_user(connection, replay.resource_id)
    return UserOut.model_validate(user)


@users_router.get("/{username}", dependencies=[MANAGE], responses=_USER_ERRORS)
def read_user(username: Username, connection: ConnDep) -> UserOut:
    return UserOut.model_validate(get_user(connection, username))


@users_router.patch("/{username}", dependencies=[MANAGE], responses=_USER_ERRORS)
def change_user(
    username: Username, body: UserPatch, connection: ConnDep, principal: PrincipalDep
) -> UserOut:
    """Change roles, sites, name, password, console language (null: the browser's) or
    disable; disabling ends the user's sessions."""
    given = body.model_fields_set
    sites = body.sites if "sites" in given else None
    user = update_user(
        connection,
        username,
        role_names=body.roles,
        sites=sites or None,
        all_sites="sites" in given and not body.sites,
        display_name=body.display_name,
        disabled=body.disabled,
        password=body.password,
        language=body.language,
        browser_language="language" in given and body.language is None,
        acting_user_id=principal.user_id,
    )
    return UserOut.model_validate(user)


@roles_router.get("", dependencies=[MANAGE])
def read_roles(connection: ConnDep) -> list[RoleOut]:
    """Every role with the actions and field groups it grants."""
    return [RoleOut.model_validate(role) for role in list_roles(connection)]


@roles_router.get("/actions", dependencies=[MANAGE])
def read_actions() -> list[ActionOut]:
    """Every action a role may grant (``*`` grants them all)."""
    return [ActionOut(name=name, description=text) for name, text in sorted(ALL_ACTIONS.items())]


@roles_router.put(
    "/{name}",
    dependencies=[MANAGE],
    responses={
        409: {"description": "No enabled user could manage people after this change."},
        422: {"description": "Unknown action or invalid name; message names it."},
    },
)
def write_role(name: RoleName, body: RoleIn, connection: ConnDep) -> RoleOut:
    """Create or replace a role's grants; holders get them at their next request."""
    role = put_role(
        connection,
        name,
        description=body.description,
        actions=body.actions,
        financial=body.financial,
    )
    return RoleOut.model_validate(role)


@roles_router.delete(
    "/{name}",
    dependencies=[MANAGE],
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "No such role."},
        409: {"description": "Someone holds the role."},
    },
)
def remove_role(name: RoleName, connection: ConnDep) -> None:
    """Delete a role nobody holds."""
    delete_role(connection, name)
