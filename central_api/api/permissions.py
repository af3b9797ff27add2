"""What each route requires, declared on the route, and a start-up check that none forgot.

A route states its rule among its dependencies::

    @router.put("/{code}", dependencies=[Requires("items.write")])

* ``Requires("items.write")``: a user whose roles grant the action; with ``site=True``
  also a site's own token (where an edge reads the data itself).
* ``SIGNED_IN``: any signed-in user.
* ``PUBLIC``: anyone (health, sign-in, a site's token exchange).
* ``SITE_ONLY``: a site's token; the sync routes check it themselves
  (``central_api.api.deps.TokenSiteDep``), this only says so.

:func:`guard_routes` runs when the app is made: a route without exactly one rule stops
central from starting, so a new route cannot be reachable by accident. It also writes the
rule into the OpenAPI document as ``x-jxc-permission``, where the permission test reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from central_api.core.principal import (
    Principal,
    PrincipalDep,
    defer_rule,
    get_principal,
    known_principal,
    oauth2_bearer,
    settle_principal,
)
from central_api.errors import PermissionDeniedError, SignInRequiredError

PERMISSION_KEY = "x-jxc-permission"


class Rule:
    """A route's access rule; an instance is used as a FastAPI dependency."""

    label: str
    needs_credential: bool = False
    """Whether an anonymous request is always refused: such a route's credential is then
    checked before its body is read (``central_api.api.credential_first``)."""

    def __call__(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _Requires(Rule):
    def __init__(self, action: str, *, site: bool = False) -> None:
        self.action = action
        self.site = site
        self.label = f"{action}+site" if site else action
        self.needs_credential = True

    async def __call__(  # type: ignore[override]
        self, request: Request, bearer: Annotated[str | None, Depends(oauth2_bearer)]
    ) -> Principal | None:
        """Async: a check of what is already known costs no trip through the thread pool.

        A principal that must still be looked up is looked up here, unless the route
        does its work in one trip (``principal_in_trip``): then the lookup and this
        check run in that trip, before the route's query (None is returned).
        """
        principal = known_principal(request, bearer)
        if principal is None:
            if defer_rule(request, self.check):
                return None
            principal = await get_principal(request, bearer)
        else:
            settle_principal(request, principal)
        return self.check(principal)

    def check(self, principal: Principal) -> Principal:
        """The rule itself: raises to refuse ``principal``."""
        if principal.is_anonymous:
            raise SignInRequiredError(
                "sign in first: send `Authorization: Bearer <token>` from POST /api/v1/auth/token"
            )
        if principal.is_site:
            if self.site:
                return principal
            raise PermissionDeniedError(
                f"a site's token may not do this; it needs a user allowed {self.action!r}"
            )
        if not principal.can(self.action):
            roles = ", ".join(sorted(principal.roles)) or "no role"
            raise PermissionDeniedError(
                f"user {principal.name!r} ({roles}) may not {self.action!r}; "
                "an admin can grant it through a role"
            )
        return principal


class _SignedIn(Rule):
    label = "signed-in"
    needs_credential = True

    async def __call__(self, principal: PrincipalDep) -> Principal:  # type: ignore[override]
        if principal.is_anonymous:
            raise SignInRequiredError(
                "sign in first: POST /api/v1/auth/token or /api/v1/auth/session"
            )
        if not principal.is_user:
            raise PermissionDeniedError("only a user may do this, not a site's token")
        return principal


class _Public(Rule):
    label = "public"

    async def __call__(self) -> None:  # type: ignore[override]
        """Nothing to check; async, so it costs no trip through the thread pool."""


class _SiteOnly(Rule):
    label = "site"

    async def __call__(self) -> None:  # type: ignore[override]
        """The route's ``TokenSiteDep`` checks the token; async, so ingest pays no thread hop."""


def Requires(action: str, *, site: bool = False) -> Any:  # noqa: N802
    """The route needs a user whose roles grant ``action`` (or, with ``site``, a site)."""
    return Depends(_Requires(action, site=site))


SIGNED_IN = Depends(_SignedIn())
PUBLIC = Depends(_Public())
SITE_ONLY = Depends(_SiteOnly())

SignedInDep = Annotated[Principal, SIGNED_IN]


class RouteWithoutRuleError(RuntimeError):
    """A route declares no access rule (or more than one); central refuses to start."""


def route_rule(route: Any) -> Rule | None:
    """The one rule among a route's dependencies (its routers' included), if any."""
    dependant = getattr(route, "dependant", None)
    calls = [
        dep.call for dep in getattr(dependant, "dependencies", ()) if isinstance(dep.call, Rule)
    ]
    found = list({id(call): call for call in calls}.values())
    if len(found) > 1:
        raise RouteWithoutRuleError(
            f"{sorted(route.methods or ())} {route.path} declares {len(found)} access "
            "rules; keep one"
        )
    return found[0] if found else None


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route of ``app`` as served, through included routers.

    FastAPI from 0.12x keeps included routers as branches (``iter_route_contexts`` walks
    them, each route with its routers' dependencies); older ones copy routes into
    ``app.routes``.
    """
    try:
        from fastapi.routing import iter_route_contexts  # noqa: PLC0415
    except ImportError:  # pragma: no cover - older FastAPI
        yield from (route for route in app.routes if isinstance(route, APIRoute))
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def guard_routes(app: FastAPI) -> None:
    """Refuse to start if a route lacks its rule; show each rule in the OpenAPI document."""
    rules: dict[tuple[str, str], str] = {}
    missing = []
    for route in api_routes(app):
        rule = route_rule(route)
        methods = sorted(route.methods or ())
        if rule is None:
            missing.append(f"{','.join(methods)} {route.path}")
            continue
        for method in methods:
            rules[route.path_format, method.lower()] = rule.label
    if missing:
        raise RouteWithoutRuleError(
            "these routes declare no access rule (Requires(...), SIGNED_IN, PUBLIC or "
            f"SITE_ONLY in their dependencies): {'; '.join(missing)}"
        )
    default_openapi = app.openapi

    def openapi_with_rules() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            for (path, method), label in rules.items():
                operation = schema.get("paths", {}).get(path, {}).get(method)
                if operation is not None:
                    operation[PERMISSION_KEY] = label
        return app.openapi_schema or default_openapi()

    app.openapi = openapi_with_rules  # type: ignore[method-assign]
